"""Opening a store safely: never write to a file that is not ours.

A store is an SQLite file in WAL mode, so that the app can read while a run
writes. Before opening a file read-write we check, read-only, that it is new
or empty, or already a gruq store of a version we understand and not
corrupt; anything else is refused with one line and the file is left
untouched. SQLite's own errors are translated into `GruqError`s.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from gruq.errors import GruqError
from gruq.paths import file_or_absent
from gruq.store import schema

SQLITE_HEADER = b"SQLite format 3\x00"
# How long to wait for another process's write lock before giving up. The run
# holds it for one short transaction per generation.
BUSY_TIMEOUT_S = 10.0


class EmptyStore(GruqError):
    """The file exists but holds no store yet (a writer may be creating it)."""


def now() -> str:
    """A timestamp for the store: ISO 8601, UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@contextmanager
def translated(path: str | Path) -> Iterator[None]:
    """Turn SQLite's exceptions about the file into one-line `GruqError`s naming it.

    Errors of gruq's own making (a broken constraint, misuse) stay as they are: bugs.
    """
    try:
        yield
    except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
        raise
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            raise GruqError(f"{path} is locked by another process; try again later (nothing was changed)") from None
        if "disk is full" in text:
            raise GruqError(
                f"the disk holding {path} is full; free some space (the store keeps its last commit)"
            ) from None
        raise GruqError(f"cannot use {path} as a gruq store: {text}") from None
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if "not a database" in text:
            raise GruqError(f"{path} is not an SQLite database, so not a gruq store (nothing was changed)") from None
        if "malformed" in text or "corrupt" in text:
            raise GruqError(f"{path} is a corrupt SQLite database ({text}); nothing was changed") from None
        raise GruqError(f"cannot use {path} as a gruq store: {text}") from None


def connect(path: str | Path, *, write: bool) -> sqlite3.Connection:
    """Open the store at `path`; with `write`, create it if it does not exist.

    The connection is in autocommit mode: writers group their statements with
    `transaction()`, so each one commits exactly when it means to.
    """
    path = Path(path)
    is_new = _probe_file(path, must_exist=not write)
    with translated(path):
        ours = not is_new and _check_existing(path, deep=write)
        if not write and not ours:
            raise EmptyStore(f"no gruq store at {path} yet (the database is empty)")
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            _configure(conn, writer=True)
            if not ours:
                _create_schema(conn)
            else:
                schema.migrate(conn)  # an older store is upgraded explicitly (v1 -> v2: scheme models)
        else:
            conn = _connect_read_only(path)
            _configure(conn, writer=False)
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT: takes the write lock up front (no upgrade deadlocks)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _probe_file(path: Path, *, must_exist: bool) -> bool:
    """True for a new (absent or empty) file; refuse anything that is not SQLite."""
    file_or_absent(path, "store")  # a folder, a FIFO or a device is refused unopened (reading a FIFO blocks)
    if not path.exists():
        if must_exist:
            raise GruqError(f"no gruq store at {path}")
        return True
    try:
        with path.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise GruqError(f"cannot read {path}: {exc.strerror}") from None
    if not header:
        return True  # an empty file is a valid, empty SQLite database
    if header != SQLITE_HEADER:
        raise GruqError(f"{path} is not an SQLite database, so not a gruq store (nothing was changed)")
    return False


def _connect_read_only(path: Path) -> sqlite3.Connection:
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)


def _check_existing(path: Path, *, deep: bool) -> bool:
    """True for a gruq store; False for an empty database. Refuse anything else:
    a foreign database, a store newer than this gruq, a corrupt one."""
    conn = _connect_read_only(path)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return False
        if "gruq_schema" not in tables:
            raise GruqError(f"{path} is an SQLite database but not a gruq store (nothing was changed)")
        row = conn.execute("SELECT max(version) FROM gruq_schema").fetchone()
        version = row[0] if row else None
        if version is None or version > schema.VERSION:
            raise GruqError(
                f"{path} is a gruq store of schema version {version}; this gruq reads version {schema.VERSION}"
            )
        if deep:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise GruqError(f"{path} is a corrupt gruq store ({verdict}); nothing was changed")
        return True
    finally:
        conn.close()


def _configure(conn: sqlite3.Connection, *, writer: bool) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    if writer:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise GruqError(f"cannot switch the store to WAL mode (SQLite kept {mode!r})")
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable across process crashes


def _create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables once; idempotent, so racing creators are harmless."""
    with transaction(conn):
        for statement in schema.DDL.split(";"):
            if statement.strip():
                conn.execute(statement)
        if conn.execute("SELECT count(*) FROM gruq_schema").fetchone()[0] == 0:
            conn.execute("INSERT INTO gruq_schema (version) VALUES (?)", (schema.VERSION,))
