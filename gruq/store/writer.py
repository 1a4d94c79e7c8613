"""Writes to the store: what a run (and the launcher) records.

A run holds one `RunStore` for its lifetime. Every finished generation is
committed in a single transaction together with its checkpoint, so after a
crash the store holds whole generations only, and a resumed run starts from
the last one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gruq.errors import GruqError
from gruq.genome import Genome
from gruq.store.connection import connect, now, transaction, translated


def genome_text(genome: Sequence[int]) -> str:
    """The stored form of a genome: "8,8,...,8"."""
    return ",".join(str(int(b)) for b in genome)


def parse_genome(text: str) -> Genome:
    return tuple(int(b) for b in text.split(","))


@dataclass(frozen=True)
class Scored:
    """One scored genome, as a generation commits it."""

    genome: Genome
    accuracy: float
    size_bytes: float
    bops: int
    generation: int
    feasible: bool


@dataclass(frozen=True)
class RunRow:
    id: int
    task: str
    config: dict[str, Any]
    seed: int
    generations: int
    status: str
    error: str | None
    pid: int | None


class RunStore:
    """A read-write connection to a store, with the operations a run needs."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.conn = connect(self.path, write=True)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, with SQLite's errors translated."""
        with translated(self.path), transaction(self.conn) as conn:
            yield conn

    # -- runs ---------------------------------------------------------------

    def create_run(self, task: str, config: dict[str, Any], seed: int, generations: int) -> int:
        """Record a new run as 'queued' and return its id."""
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO runs (task, config, seed, generations, status, created_at) "
                "VALUES (?, ?, ?, ?, 'queued', ?)",
                (task, json.dumps(config, sort_keys=True), seed, generations, now()),
            )
            run_id = int(cur.lastrowid)
            c.execute(
                "INSERT INTO run_events (run_id, status, at) SELECT id, status, created_at FROM runs WHERE id = ?",
                (run_id,),
            )
            return run_id

    def run(self, run_id: int) -> RunRow:
        with translated(self.path):
            row = self.conn.execute(
                "SELECT id, task, config, seed, generations, status, error, pid FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
        if row is None:
            raise GruqError(f"no run {run_id} in {self.path}")
        return RunRow(row[0], row[1], json.loads(row[2]), row[3], row[4], row[5], row[6], row[7])

    def set_status(self, run_id: int, status: str, *, error: str | None = None, only_from: Iterable[str] = ()) -> bool:
        """Move a run to `status`; with `only_from`, only if it is in one of those. True if it moved."""
        ended = status in ("finished", "failed", "cancelled")
        sql = (
            "UPDATE runs SET status = ?, error = ?, finished_at = CASE WHEN ? THEN ? ELSE finished_at END WHERE id = ?"
        )
        at = now()
        args: list[Any] = [status, error, ended, at, run_id]
        allowed = tuple(only_from)
        if allowed:
            sql += f" AND status IN ({','.join('?' * len(allowed))})"
            args += allowed
        with self._tx() as c:
            moved = c.execute(sql, args).rowcount == 1
            if moved:
                _record_event(c, run_id, status, at)
            return moved

    def claim(self, run_id: int, pid: int, allowed: Sequence[str]) -> RunRow:
        """Mark the run 'running' in process `pid`, if its status is one of `allowed`.

        The check and the update are one transaction, so two processes cannot
        both claim a run.
        """
        at = now()
        with self._tx() as c:
            row = c.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise GruqError(f"no run {run_id} in {self.path}")
            if row[0] not in allowed:
                wanted = " or ".join(allowed)
                raise GruqError(f"run {run_id} is {row[0]}; only a run that is {wanted} can be started here")
            c.execute(
                "UPDATE runs SET status = 'running', pid = ?, error = NULL, finished_at = NULL, "
                "started_at = coalesce(started_at, ?) WHERE id = ?",
                (pid, at, run_id),
            )
            _record_event(c, run_id, "running", at)
        return self.run(run_id)

    def set_config(self, run_id: int, config: dict[str, Any]) -> None:
        """Replace a run's stored settings (a resume that computes elsewhere records where)."""
        with self._tx() as c:
            c.execute("UPDATE runs SET config = ? WHERE id = ?", (json.dumps(config, sort_keys=True), run_id))

    def take(self, run_id: int, pid: int, previous: int | None) -> bool:
        """Record `pid` as the process of a queued run if its process is still `previous` (a runner's
        child taking a run left to the runner); False if another process took it first. The run
        is still claimed, as ever, by `claim`."""
        with self._tx() as c:
            sql = "UPDATE runs SET pid = ? WHERE id = ? AND status = 'queued' AND pid IS ?"
            return c.execute(sql, (pid, run_id, previous)).rowcount == 1

    def set_pid(self, run_id: int, pid: int) -> None:
        """Record the process of a queued run (the launcher knows it before the run starts)."""
        with self._tx() as c:
            c.execute("UPDATE runs SET pid = ? WHERE id = ? AND status = 'queued'", (pid, run_id))

    # -- generations --------------------------------------------------------

    def commit_generation(
        self,
        run_id: int,
        gen: int,
        *,
        hypervolume: float,
        seconds: float,
        evaluations: int,
        scored: Sequence[Scored],
        front: Sequence[Genome],
        checkpoint: dict[str, Any],
    ) -> None:
        """Write one finished generation, its new individuals, its front and its checkpoint atomically."""
        front_texts = [genome_text(g) for g in front]
        with self._tx() as c:
            c.execute(
                "INSERT INTO generations (run_id, gen, hypervolume, seconds, evaluations, finished_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, gen, hypervolume, seconds, evaluations, now()),
            )
            c.executemany(
                "INSERT INTO individuals (run_id, genome, accuracy, size_bytes, bops, generation, feasible) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (run_id, genome_text(s.genome), s.accuracy, s.size_bytes, s.bops, s.generation, int(s.feasible))
                    for s in scored
                ],
            )
            c.executemany(
                "INSERT INTO fronts (run_id, gen, genome) VALUES (?, ?, ?)", [(run_id, gen, t) for t in front_texts]
            )
            c.execute("UPDATE individuals SET on_front = 0 WHERE run_id = ? AND on_front = 1", (run_id,))
            c.executemany(
                "UPDATE individuals SET on_front = 1 WHERE run_id = ? AND genome = ?",
                [(run_id, t) for t in front_texts],
            )
            c.execute(
                "INSERT INTO checkpoints (run_id, gen, state) VALUES (?, ?, ?)",
                (run_id, gen, json.dumps(checkpoint, separators=(",", ":"))),
            )

    def scored(self, run_id: int) -> dict[Genome, float]:
        """Accuracy of every genome this run has scored: the cache that prevents re-scoring."""
        with translated(self.path):
            rows = self.conn.execute("SELECT genome, accuracy FROM individuals WHERE run_id = ?", (run_id,))
            return {parse_genome(g): float(a) for g, a in rows}

    def generations_done(self, run_id: int) -> int:
        with translated(self.path):
            return int(self.conn.execute("SELECT count(*) FROM generations WHERE run_id = ?", (run_id,)).fetchone()[0])

    def latest_checkpoint(self, run_id: int) -> dict[str, Any] | None:
        with translated(self.path):
            row = self.conn.execute(
                "SELECT state FROM checkpoints WHERE run_id = ? ORDER BY gen DESC LIMIT 1", (run_id,)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def set_finetuned(self, run_id: int, accuracies: dict[Genome, float]) -> None:
        """Record the accuracy of front members after the final fine-tuning."""
        with self._tx() as c:
            c.executemany(
                "UPDATE individuals SET finetuned_accuracy = ? WHERE run_id = ? AND genome = ?",
                [(a, run_id, genome_text(g)) for g, a in accuracies.items()],
            )

    def set_checkpoint(self, run_id: int, sha256: str | None) -> None:
        """Record which float checkpoint (its sha256) the run quantizes; models rebuilt later check it."""
        with self._tx() as c:
            c.execute("UPDATE runs SET checkpoint_sha256 = ? WHERE id = ?", (sha256, run_id))

    def record_model(
        self, run_id: int, genome: Genome, recipe: dict[str, Any], weights_sha256: str, weights: bytes | None = None
    ) -> None:
        """Record the model behind a scheme's accuracy (see gruq.scheme_model). The first
        record of a genome's hash wins: a later one may only add the weights."""
        with self._tx() as c:
            c.execute(
                "INSERT INTO models (run_id, genome, recipe, weights_sha256, weights, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, genome) DO UPDATE SET "
                "weights = coalesce(models.weights, excluded.weights) "
                "WHERE models.weights_sha256 = excluded.weights_sha256",
                (run_id, genome_text(genome), json.dumps(recipe, sort_keys=True), weights_sha256, weights, now()),
            )

    def finetuned(self, run_id: int) -> dict[Genome, float]:
        with translated(self.path):
            rows = self.conn.execute(
                "SELECT genome, finetuned_accuracy FROM individuals "
                "WHERE run_id = ? AND finetuned_accuracy IS NOT NULL",
                (run_id,),
            )
            return {parse_genome(g): float(a) for g, a in rows}


def _record_event(c: sqlite3.Connection, run_id: int, status: str, at: str) -> None:
    """Log a change of status (in the caller's transaction): how long a run really ran
    is the sum of its stretches between a start and an end (gruq.views.progress)."""
    c.execute("INSERT INTO run_events (run_id, status, at) VALUES (?, ?, ?)", (run_id, status, at))
