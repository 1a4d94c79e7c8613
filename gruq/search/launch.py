"""Start, cancel and resume runs as detached processes: the app's handle on runs.

A run is its own OS process (`python -m gruq search --run-id ID --db PATH`),
in its own session so that it survives the app and a Ctrl-C in the app's
terminal; it writes to the store, which the app reads. Its terminal output
(progress bar, errors) goes to a log file next to the store.

If a warm runner serves the store (`gruq.search.runner`, started by the app),
a queued run is left to it: it forks the run's process at once instead of
paying a new interpreter's imports. Otherwise the run's process is spawned.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import gruq
from gruq.errors import GruqError
from gruq.search import runner
from gruq.search.config import SearchConfig
from gruq.search.run import BackendFactory, create
from gruq.store import RunStore, pids


def launch(
    db: str | Path, config: SearchConfig | dict[str, Any], *, backend_factory: BackendFactory | None = None
) -> int:
    """Check `config`, record the run as 'queued' (the app sees it at once), start its process.

    Returns the run id. A config that cannot run raises GruqError and stores nothing.
    """
    cfg = config if isinstance(config, SearchConfig) else SearchConfig.from_dict(config)
    run_id = create(db, cfg, backend_factory)
    _start(db, run_id)
    return run_id


def cancel(db: str | Path, run_id: int) -> str:
    """Ask run `run_id` to stop; returns its status afterwards.

    A queued run is cancelled at once (its process, if started, sees that and
    exits). A running one gets SIGTERM and marks itself 'cancelled' after the
    current chunk; if its process is gone, it is marked 'cancelled' here.
    Finished, failed and cancelled runs are left as they are.
    """
    with RunStore(db) as store:
        row = store.run(run_id)
        if row.status == "queued" and store.set_status(
            run_id, "cancelled", error="cancelled before it started", only_from=("queued",)
        ):
            if row.pid != runner.alive(db):  # never the runner itself: it just skips the run
                _terminate(row.pid)
            return "cancelled"
        row = store.run(run_id)
        if row.status != "running":
            return row.status
        if _terminate(row.pid):
            return "running"  # until the process has stopped cleanly
        store.set_status(run_id, "cancelled", error="its process had already stopped", only_from=("running",))
        return store.run(run_id).status


def resume(db: str | Path, run_id: int) -> int:
    """Continue a failed, cancelled or interrupted run in a new detached process.

    Returns the pid of the process that will run it (the runner's, if a runner takes it)."""
    with RunStore(db) as store:
        row = store.run(run_id)
        if row.status == "finished":
            raise GruqError(f"run {run_id} has finished; nothing to resume")
        if row.status in ("queued", "running") and pids.alive(row.pid):
            raise GruqError(f"run {run_id} is {row.status} in process {row.pid}")
        store.set_status(run_id, "queued", only_from=("failed", "cancelled", "running", "queued"))
    return _start(db, run_id)


def log_path(db: str | Path, run_id: int) -> Path:
    """Where a launched run's terminal output goes: next to the store."""
    db = Path(db)
    return db.with_name(f"{db.name}.run{run_id}.log")


def _start(db: str | Path, run_id: int) -> int:
    """Leave a queued run to the store's runner if one is running, else spawn its process.

    A run left to the runner carries the runner's pid until the runner's child
    takes it, so the app sees it alive at once."""
    pid = runner.alive(db)
    if not pid:
        return _spawn(db, run_id)
    with RunStore(db) as store:
        store.set_pid(run_id, pid)
    return pid


def _spawn(db: str | Path, run_id: int) -> int:
    db = Path(db).resolve()
    env = dict(os.environ)
    root = str(Path(gruq.__file__).resolve().parents[1])  # so `-m gruq` imports this gruq
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "gruq", "search", "--run-id", str(run_id), "--db", str(db)]
    try:
        with open(log_path(db, run_id), "ab") as log:
            proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
    except OSError as exc:
        with RunStore(db) as store:
            store.set_status(run_id, "failed", error=f"could not start its process: {exc}")
        raise GruqError(f"could not start run {run_id}: {exc}") from None
    with RunStore(db) as store:
        store.set_pid(run_id, proc.pid)
    return proc.pid


def _terminate(pid: int | None) -> bool:
    """SIGTERM to a live gruq process (the main one only: pool workers follow it)."""
    if not pids.alive(pid):
        return False
    try:
        os.kill(pid, signal.SIGTERM)  # type: ignore[arg-type]
    except ProcessLookupError:
        return False
    return True
