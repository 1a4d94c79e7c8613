"""A warm process that starts the app's queued runs in well under a second.

A new run process spends seconds importing torch before it scores anything
(the app's first front took 7-12 s, most of it "queued"). The app therefore
starts one runner per store (`python -m gruq runner --db PATH`) that imports
everything a run needs once, then waits for queued runs in the store and
forks a child for each: the child is the run's process, as a spawned one
would be (its own session, its pid in the run row, its output in the run's
log), so it survives the app, a page reload and a server restart, and
Cancel signals it alone. Forking is safe here because the runner never runs
a torch operation, so no thread pool exists to be copied half-way.

It also loads the app's default task (vowels) and its checkpoint, which the
forked runs inherit. One runner per store (an exclusive lock
next to it); it exits when the app that started it is gone. Without a runner, `gruq.search.launch` spawns a
process per run, as before: the runner only makes starts fast.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from gruq.errors import GruqError
from gruq.store import pids

POLL_S = 0.1  # how often the runner looks for queued runs
PRELOAD = "vowels"  # the Launch page's default task


def lock_path(db: str | Path) -> Path:
    """The runner's lock file, next to the store: the runner's pid, then "ready" once warm."""
    db = Path(db)
    return db.with_name(f"{db.name}.runner")


def alive(db: str | Path) -> int | None:
    """The pid of the runner serving `db`, if one is running."""
    try:
        pid = int(lock_path(db).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if not pids.alive(pid):
        return None
    try:
        if b"runner" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return None
    except OSError:
        pass  # no /proc: trust the lock file
    return pid


def ready(db: str | Path) -> bool:
    """True once the store's runner has imported what a run needs."""
    try:
        return alive(db) is not None and "ready" in lock_path(db).read_text().split()
    except OSError:
        return False


def ensure(db: str | Path) -> int:
    """Start a runner for `db` unless one is running; returns its pid. It stops with this process."""
    pid = alive(db)
    if pid:
        return pid
    db = Path(db).resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with open(db.with_name(f"{db.name}.runner.log"), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gruq", "runner", "--db", str(db)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return proc.pid


def serve(db: str | Path, *, parent: int | None = None) -> int:
    """Run queued runs of `db` until `parent` (default: our parent process) is gone.

    Returns 0; 0 at once too if another runner already serves this store.
    """
    db = Path(db).resolve()
    parent = parent or os.getppid()
    lock = _lock(db)
    if lock is None:
        return 0
    _warm()
    _preload(PRELOAD)
    lock.write("ready\n")
    lock.flush()
    children: dict[int, int] = {}  # run id -> the child forked for it, until that child has ended
    try:
        while _parent_alive(parent):
            ended = _reap()
            children = {r: c for r, c in children.items() if c not in ended}
            for run_id, pid in _queued(db):
                if run_id not in children:  # a resumed run is queued again once its last child has ended
                    children[run_id] = _fork_run(db, run_id, pid, lock)
            time.sleep(POLL_S)
    finally:
        lock.close()
    return 0


def _lock(db: Path) -> IO[str] | None:
    db.parent.mkdir(parents=True, exist_ok=True)
    f = open(lock_path(db), "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


_THREADS = 1  # torch's own thread count, given back to each forked run


def _warm() -> None:
    """Import what every run needs (torch above all), so that a forked run starts at once.

    The runner itself computes on one thread (loading checkpoints runs a few
    torch operations), so no thread pool exists when it forks; each run then
    gets torch's default back."""
    global _THREADS
    import deap.tools  # noqa: F401
    import torch
    import tqdm  # noqa: F401

    _THREADS = torch.get_num_threads()
    torch.set_num_threads(1)

    import gruq.cli.search  # noqa: F401
    import gruq.evaluate  # noqa: F401
    import gruq.search.run  # noqa: F401


def _preload(task: str) -> None:
    """Load a task's data and checkpoint into this process's cache: forked runs inherit them.

    Only the app's default task: loading a large one (har) would hold up a launch for seconds."""
    from gruq.evaluate import load

    try:
        load(task, None)  # the very cache key Evaluator uses
    except Exception:  # noqa: BLE001 - a run of this task will report the problem itself
        pass


def _parent_alive(parent: int) -> bool:
    return os.getppid() == parent


def _reap() -> set[int]:
    """Collect ended run children (they would otherwise linger as zombies); their pids."""
    ended = set()
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended.add(pid)


def _queued(db: Path) -> list[tuple[int, int | None]]:
    """Queued runs left to this runner, or to no live process; with the pid they carry."""
    if not db.exists():
        return []
    from gruq.store.connection import connect, translated

    try:
        conn = connect(db, write=False)
    except GruqError:
        return []
    try:
        with translated(db):
            rows = conn.execute("SELECT id, pid FROM runs WHERE status = 'queued' ORDER BY id").fetchall()
        me = os.getpid()
        return [(int(r), pid) for r, pid in rows if pid is None or pid == me or not pids.alive(pid)]
    except GruqError:
        return []
    finally:
        conn.close()


def _fork_run(db: Path, run_id: int, previous: int | None, lock: IO[str]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child != 0:
        return child
    code = 1
    try:
        lock.close()  # the runner's lock stays the runner's
        os.setsid()  # the run survives the app and a Ctrl-C in its terminal
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(s, signal.SIG_DFL)
        import torch

        torch.set_num_threads(_THREADS)
        code = _run_child(db, run_id, previous)
    except BaseException:  # noqa: BLE001 - a forked child must never return into the runner's loop
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _run_child(db: Path, run_id: int, previous: int | None) -> int:
    from gruq.cli import main
    from gruq.search.launch import log_path
    from gruq.store import RunStore

    with RunStore(db) as store:
        if not store.take(run_id, os.getpid(), previous):
            return 0  # another process took it first
    log = os.open(log_path(db, run_id), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    return main(["search", "--run-id", str(run_id), "--db", str(db)])
