"""Checks on the paths a user gives, before anything is opened, created or computed.

Why a module of its own: every command takes paths (--db, --task x.npz,
--checkpoint, --out), and the ways a path can fail are the same everywhere:
empty, a name longer than the file system allows (ENAMETOOLONG), a parent that
is a regular file, a named pipe or a device where a file is expected (opening a
FIFO blocks forever), a read-only or full file system. Each is refused here
with one line, so nothing hangs, nothing prints a traceback, and a refused
command creates nothing. `staged_dir` writes a folder of files so that the
target is either complete or untouched.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gruq.errors import GruqError

NAME_MAX = 255  # bytes per path component (Linux, macOS); pathconf refines it where it can
PATH_MAX = 4096


def shown(path: str | Path) -> str:
    """A path fit for a one-line message: very long names are cut in the middle."""
    parts = []
    for part in str(path).split(os.sep):
        parts.append(part if len(part) <= 48 else f"{part[:20]}...({len(os.fsencode(part))} bytes)")
    return os.sep.join(parts)


def _at(flag: str, p: str | Path) -> str:
    """The subject of a message: "--db PATH", or just the path when no flag is named."""
    return f"{flag} {shown(p)}" if flag else shown(p)


def kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a file" if stat.S_ISREG(mode) else "not a regular file"


def checked(path: str | os.PathLike, flag: str = "") -> Path:
    """`path` as a Path, or a GruqError if no file could ever have it: empty, a NUL
    byte, a name or path too long, or a parent that is not a folder."""
    text = os.fspath(path) if not isinstance(path, str) else path
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if text.strip() == "":
        raise GruqError(f"{flag or 'the path'} is empty; give a path")
    if "\0" in text:
        raise GruqError(f"{_at(flag, repr(text))} contains a NUL byte")
    p = Path(text).expanduser()
    limit = _name_max(p)
    for part in p.parts:
        if len(os.fsencode(part)) > limit:
            raise GruqError(f"{_at(flag, p)}: a name of {len(os.fsencode(part))} bytes; the file system allows {limit}")
    if len(os.fsencode(str(p))) >= PATH_MAX:
        raise GruqError(f"{_at(flag, p)} is longer than the file system allows ({PATH_MAX} bytes)")
    try:
        os.stat(p)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            _check_parents(p, flag)
        elif exc.errno == errno.ENAMETOOLONG:
            raise GruqError(f"{_at(flag, p)} is longer than the file system allows") from None
        else:
            raise GruqError(f"{_at(flag, p)}: {exc.strerror}") from None
    return p


def input_file(path: str | os.PathLike, flag: str = "") -> Path:
    """An existing regular file (never a folder, pipe or device)."""
    p = checked(path, flag)
    mode = _mode(p)
    if mode is None:
        raise GruqError(f"{_at(flag, p)}: no such file")
    if not stat.S_ISREG(mode):
        raise GruqError(f"{_at(flag, p)} is {kind(mode)}, not a file")
    return p


def file_or_absent(path: str | os.PathLike, flag: str = "") -> Path:
    """A regular file or nothing yet: what a store (--db) may be. A pipe, a device or a
    folder is refused without being opened (opening a FIFO would block)."""
    p = checked(path, flag)
    mode = _mode(p)
    if mode is not None and not stat.S_ISREG(mode):
        raise GruqError(f"{_at(flag, p)} is {kind(mode)}, not a file")
    return p


def output_file(path: str | os.PathLike, flag: str = "") -> Path:
    """A file path gruq may (over)write: absent or a regular file, in a folder that
    exists or can be made, on a writable file system. Creates nothing."""
    p = file_or_absent(path, flag)
    _check_writable(_nearest_existing(p.parent), p, flag)
    if _mode(p) is not None and not os.access(p, os.W_OK):
        raise GruqError(f"{_at(flag, p)}: {_why_not_writable(p)}")
    return p


def output_dir(path: str | os.PathLike, flag: str = "") -> Path:
    """A folder gruq may write into: absent or a folder, on a writable file system. Creates nothing."""
    p = checked(path, flag)
    mode = _mode(p)
    if mode is not None and not stat.S_ISDIR(mode):
        raise GruqError(f"{_at(flag, p)} exists and is {kind(mode)}, not a folder")
    _check_writable(_nearest_existing(p if mode is not None else p.parent), p, flag)
    return p


@contextmanager
def staged_dir(out: Path, flag: str = "--out") -> Iterator[Path]:
    """Yield an empty temporary folder beside `out`; when the block ends without an
    error, its files replace those of `out` (created if absent), each by an atomic
    rename. On any error the temporary folder is removed and `out` is untouched:
    never a half-written export. OSErrors become one-line GruqErrors."""
    out = Path(out)
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name[:40]}.", suffix=".partial", dir=parent))
    except OSError as exc:
        raise GruqError(f"{_at(flag, out)}: cannot write there ({exc.strerror or exc})") from None
    try:
        yield tmp
        if out.is_dir():
            for item in tmp.iterdir():
                dest = out / item.name
                if dest.is_dir() and not dest.is_symlink():
                    shutil.rmtree(dest)  # a folder (e.g. a build of an earlier export) is replaced whole
                os.replace(item, dest)
            tmp.rmdir()
        else:
            os.rename(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise GruqError(f"{_at(flag, out)}: cannot write the files ({exc.strerror or exc}); nothing was left") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _name_max(p: Path) -> int:
    try:
        return int(os.pathconf(_nearest_existing(p), "PC_NAME_MAX"))
    except (OSError, ValueError, GruqError):
        return NAME_MAX


def _nearest_existing(p: Path) -> Path:
    """The closest ancestor of `p` (or `p`) that exists."""
    p = Path(os.path.abspath(p))
    for candidate in (p, *p.parents):
        try:
            os.stat(candidate)
            return candidate
        except OSError:
            continue
    return Path(p.anchor or "/")


def _check_parents(p: Path, flag: str) -> None:
    """The nearest existing ancestor of a missing path must be a folder."""
    for parent in Path(os.path.abspath(p)).parents:
        mode = _mode(parent)
        if mode is None:
            continue
        if not stat.S_ISDIR(mode):
            raise GruqError(f"{_at(flag, p)}: {shown(parent)} is {kind(mode)}, not a folder")
        return


def _mode(p: Path) -> int | None:
    """The file's mode, or None if it cannot be reached (absent)."""
    try:
        return os.stat(p).st_mode
    except OSError:
        return None


def _check_writable(folder: Path, target: Path, flag: str) -> None:
    mode = _mode(folder)
    if mode is not None and not stat.S_ISDIR(mode):
        raise GruqError(f"{_at(flag, target)}: {shown(folder)} is {kind(mode)}, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise GruqError(f"{_at(flag, target)}: cannot write in {shown(folder)} ({_why_not_writable(folder)})")


def _why_not_writable(p: Path) -> str:
    try:
        if os.statvfs(p).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        pass
    return "permission denied"
