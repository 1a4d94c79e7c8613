"""Reads for the app and the command line: the only way they see the store.

Each function opens a read-only connection, answers, and closes it, so a
reader never blocks a running search (WAL mode) and never changes the file.
Results are plain dicts and lists, ready for JSON or a DataFrame.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gruq.errors import GruqError
from gruq.genome import Genome
from gruq.store import pids
from gruq.store.connection import EmptyStore, connect, translated
from gruq.store.writer import parse_genome

_RUN_COLUMNS = "id, task, seed, generations, status, error, pid, created_at, started_at, finished_at, config"


@contextmanager
def reading(db: str | Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection, with SQLite's errors as `GruqError`s."""
    conn = connect(db, write=False)
    try:
        with translated(db):
            yield conn
    finally:
        conn.close()


def list_runs(db: str | Path) -> list[dict[str, Any]]:
    """Every run, newest first, with its progress (see `run_detail` for the keys).

    A store still being created (an empty database) has no runs yet.
    """
    try:
        with reading(db) as conn:
            rows = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id DESC").fetchall()
            return [_run_summary(conn, row) for row in rows]
    except EmptyStore:
        return []


def run_detail(db: str | Path, run_id: int) -> dict[str, Any]:
    """One run: run_id, task, seed, status, error, pid, alive, generations (planned),
    generations_done, evaluations, created_at, started_at, finished_at, config, objective,
    events (every change of status, oldest first: {"status", "at"}; empty in a store
    older than version 3 opened read-only)."""
    with reading(db) as conn:
        return _run_summary(conn, _run_row(conn, db, run_id))


def hypervolume_curve(db: str | Path, run_id: int) -> list[dict[str, Any]]:
    """Per finished generation: gen, hypervolume, seconds, evaluations (so far), finished_at."""
    with reading(db) as conn:
        _run_row(conn, db, run_id)
        rows = conn.execute(
            "SELECT gen, hypervolume, seconds, evaluations, finished_at FROM generations WHERE run_id = ? ORDER BY gen",
            (run_id,),
        )
        keys = ("gen", "hypervolume", "seconds", "evaluations", "finished_at")
        return [dict(zip(keys, row)) for row in rows]


def individuals(db: str | Path, run_id: int) -> list[dict[str, Any]]:
    """Every genome the run scored: bits, accuracy, size_bytes, bops, generation (first
    scored), feasible, on_front (latest front), finetuned_accuracy (or None)."""
    with reading(db) as conn:
        _run_row(conn, db, run_id)
        rows = conn.execute(
            "SELECT genome, accuracy, size_bytes, bops, generation, feasible, on_front, finetuned_accuracy "
            "FROM individuals WHERE run_id = ? ORDER BY generation, size_bytes, genome",
            (run_id,),
        )
        return [_individual(row) for row in rows]


def fronts(db: str | Path, run_id: int) -> dict[int, list[dict[str, Any]]]:
    """The feasible Pareto front after each generation: gen -> members (as in `individuals`),
    sorted by the run's cost objective."""
    with reading(db) as conn:
        objective = _objective(_run_row(conn, db, run_id))
        rows = conn.execute(
            "SELECT f.gen, i.genome, i.accuracy, i.size_bytes, i.bops, i.generation, i.feasible, i.on_front, "
            "i.finetuned_accuracy FROM fronts f JOIN individuals i ON i.run_id = f.run_id AND i.genome = f.genome "
            "WHERE f.run_id = ? ORDER BY f.gen",
            (run_id,),
        )
        out: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            out.setdefault(row[0], []).append(_individual(row[1:]))
        return {gen: _sorted_front(members, objective) for gen, members in out.items()}


def population(db: str | Path, run_id: int, gen: int | None = None) -> list[Genome]:
    """The population after generation `gen` (default: the latest), from its checkpoint."""
    with reading(db) as conn:
        _run_row(conn, db, run_id)
        sql = "SELECT state FROM checkpoints WHERE run_id = ?"
        args: tuple = (run_id,)
        if gen is not None:
            sql, args = sql + " AND gen = ?", (run_id, gen)
        row = conn.execute(sql + " ORDER BY gen DESC LIMIT 1", args).fetchone()
    if row is None:
        raise GruqError(f"run {run_id} has no finished generation {'' if gen is None else gen}".rstrip())
    return [tuple(g) for g in json.loads(row[0])["population"]]


def model_record(db: str | Path, run_id: int, genome: Genome) -> dict[str, Any] | None:
    """The recorded model of `genome` in run `run_id`: recipe (dict), weights_sha256,
    weights (bytes or None); None if none is recorded (or the store predates models)."""
    with reading(db) as conn:
        if not _has_models(conn):
            return None
        row = conn.execute(
            "SELECT recipe, weights_sha256, weights FROM models WHERE run_id = ? AND genome = ?",
            (run_id, ",".join(str(int(b)) for b in genome)),
        ).fetchone()
    if row is None:
        return None
    return {"recipe": json.loads(row[0]), "weights_sha256": row[1], "weights": row[2]}


def checkpoint_sha256(db: str | Path, run_id: int) -> str | None:
    """The sha256 of the float checkpoint run `run_id` quantized, if recorded (stores of v2 on)."""
    with reading(db) as conn:
        _run_row(conn, db, run_id)
        if not _has_models(conn):
            return None
        row = conn.execute("SELECT checkpoint_sha256 FROM runs WHERE id = ?", (run_id,)).fetchone()
    return row[0] if row else None


def result(db: str | Path, run_id: int) -> dict[str, Any]:
    """The `search --json` object: run_id, evaluations, hypervolume (one per generation),
    front (bits, accuracy, size_bytes, bops; finetuned_accuracy after front fine-tuning;
    model: which model the member's numbers belong to; check: the `gruq evaluate`
    command that re-derives the member's validation accuracy exactly, that is
    finetuned_accuracy when the front was fine-tuned, else accuracy)."""
    from gruq.scheme_model import for_run

    with reading(db) as conn:
        run_row = _run_row(conn, db, run_id)
        objective = _objective(run_row)
        config, task = json.loads(run_row[-1]), run_row[1]
        curve = [
            r[0] for r in conn.execute("SELECT hypervolume FROM generations WHERE run_id = ? ORDER BY gen", (run_id,))
        ]
        evaluations = conn.execute("SELECT count(*) FROM individuals WHERE run_id = ?", (run_id,)).fetchone()[0]
        rows = conn.execute(
            "SELECT genome, accuracy, size_bytes, bops, generation, feasible, on_front, finetuned_accuracy "
            "FROM individuals WHERE run_id = ? AND on_front = 1",
            (run_id,),
        )
        front = [_front_entry(_individual(row)) for row in rows]
    for m in front:
        recipe = for_run(config, task, tuple(m["bits"]), "finetuned_accuracy" in m)
        m["model"] = recipe.label
        m["check"] = recipe.command("val")
    return {
        "run_id": run_id,
        "evaluations": evaluations,
        "hypervolume": curve,
        "front": _sorted_front(front, objective),
    }


# -- helpers ------------------------------------------------------------------


def _run_row(conn: sqlite3.Connection, db: str | Path, run_id: int) -> tuple:
    row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise GruqError(f"no run {run_id} in {db}")
    return row


def _events(conn: sqlite3.Connection, run_id: int) -> list[dict[str, str]]:
    if not _has_table(conn, "run_events"):
        return []
    rows = conn.execute("SELECT status, at FROM run_events WHERE run_id = ? ORDER BY rowid", (run_id,))
    return [{"status": status, "at": at} for status, at in rows]


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _has_models(conn: sqlite3.Connection) -> bool:
    """False for a version-1 store opened read-only (not migrated: it records no models)."""
    return _has_table(conn, "models")


def _run_summary(conn: sqlite3.Connection, row: tuple) -> dict[str, Any]:
    run_id, task, seed, planned, status, error, pid, created, started, finished, config = row
    done, evaluations = conn.execute(
        "SELECT (SELECT count(*) FROM generations WHERE run_id = ?), "
        "(SELECT count(*) FROM individuals WHERE run_id = ?)",
        (run_id, run_id),
    ).fetchone()
    cfg = json.loads(config)
    return {
        "run_id": run_id,
        "task": task,
        "seed": seed,
        "status": status,
        "error": error,
        "pid": pid,
        "alive": status in ("queued", "running") and pids.alive(pid),
        "generations": planned,
        "generations_done": done,
        "evaluations": evaluations,
        "created_at": created,
        "started_at": started,
        "finished_at": finished,
        "config": cfg,
        "objective": cfg.get("objective", "size"),
        "events": _events(conn, run_id),
    }


def _objective(row: tuple) -> str:
    return json.loads(row[-1]).get("objective", "size")


def _individual(row: tuple) -> dict[str, Any]:
    genome, accuracy, size, bops, generation, feasible, on_front, finetuned = row
    return {
        "bits": list(parse_genome(genome)),
        "accuracy": accuracy,
        "size_bytes": size,
        "bops": bops,
        "generation": generation,
        "feasible": bool(feasible),
        "on_front": bool(on_front),
        "finetuned_accuracy": finetuned,
    }


def _front_entry(ind: dict[str, Any]) -> dict[str, Any]:
    entry = {k: ind[k] for k in ("bits", "accuracy", "size_bytes", "bops")}
    if ind["finetuned_accuracy"] is not None:
        entry["finetuned_accuracy"] = ind["finetuned_accuracy"]
    return entry


def _sorted_front(members: list[dict[str, Any]], objective: str) -> list[dict[str, Any]]:
    """By cost (size_bytes or bops), then accuracy descending, then bits: a stable, total order."""
    cost = "bops" if objective == "bops" else "size_bytes"
    return sorted(members, key=lambda m: (m[cost], -m["accuracy"], m["bits"]))
