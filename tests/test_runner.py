"""The warm runner: the app's queued runs start in a forked child, not a new interpreter.

Specification: with a runner serving a store, a launched run is taken by a
child of the runner (no process is spawned) and ends with the serial run's
result; the run survives the runner's death (kill -9); Cancel stops a run in
the middle of a long chunk, long before the chunk would have ended; a
cancelled run resumed through the runner ends with the serial result; one
runner per store; a runner exits when the process that started it is gone.
Real processes, synthetic evaluator (GRUQ_EVALUATOR).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_search_fake import make

from gruq.search import launch, run, runner
from gruq.search.backend import ENV_HOOK, Backend
from gruq.search.config import SearchConfig
from gruq.store import result, run_detail

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def serial(tmp: Path, **settings: Any) -> dict[str, Any]:
    cfg = SearchConfig(task="fake", **settings)
    return run.start(tmp / "serial.db", cfg, backend_factory=lambda c: Backend(make("fake"), None), progress=False)


def status(db: Path, run_id: int) -> str:
    return run_detail(db, run_id)["status"]


@pytest.fixture()
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[Path, int]]]:
    """Start a runner for a fresh store, with the given synthetic delay per chunk; stopped after the test."""
    monkeypatch.setenv(ENV_HOOK, "test_search_fake:make")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(TESTS)]))
    started: list[int] = []

    def start(delay: float = 0.0) -> tuple[Path, int]:
        monkeypatch.setenv("GRUQ_FAKE_DELAY", str(delay))
        db = tmp_path / "app.db"
        pid = runner.ensure(db)
        started.append(pid)
        wait_for(lambda: runner.alive(db) == pid)
        return db, pid

    yield start
    for pid in started:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def no_spawn(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(db: Any, run_id: int) -> int:
        raise AssertionError("a run was spawned although a runner serves the store")

    monkeypatch.setattr(launch, "_spawn", refuse)


def test_a_launched_run_is_forked_by_the_runner_and_ends_like_the_serial_run(
    tmp_path: Path, serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, runner_pid = serve()
    no_spawn(monkeypatch)
    settings = {"pop": 8, "gens": 3, "seed": 4}
    run_id = launch.launch(db, {"task": "fake", **settings})
    wait_for(lambda: status(db, run_id) in ("finished", "failed"))
    assert status(db, run_id) == "finished", launch.log_path(db, run_id).read_text()
    assert result(db, run_id) == {**serial(tmp_path, **settings), "run_id": run_id}
    child = run_detail(db, run_id)["pid"]
    assert child not in (None, runner_pid, os.getpid())
    assert "run 1" in launch.log_path(db, run_id).read_text()  # its output went to the run's log


def test_a_run_survives_its_runner_and_a_resume_through_the_runner_ends_identically(
    tmp_path: Path, serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, runner_pid = serve(delay=0.15)
    settings = {"pop": 8, "gens": 6, "seed": 9, "chunk_size": 2}
    run_id = launch.launch(db, {"task": "fake", **settings})
    wait_for(lambda: run_detail(db, run_id)["generations_done"] >= 1)
    os.kill(runner_pid, signal.SIGKILL)
    os.waitpid(runner_pid, 0)
    assert run_detail(db, run_id)["alive"]
    assert launch.cancel(db, run_id) in ("running", "cancelled")
    wait_for(lambda: status(db, run_id) == "cancelled")
    assert run_detail(db, run_id)["generations_done"] < 6

    db, _ = serve(delay=0.0)  # a new runner (the app restarted)
    no_spawn(monkeypatch)
    launch.resume(db, run_id)
    wait_for(lambda: status(db, run_id) in ("finished", "failed"))
    assert result(db, run_id) == {**serial(tmp_path, **settings), "run_id": run_id}


def test_cancel_stops_a_run_in_the_middle_of_a_long_chunk(tmp_path: Path, serve) -> None:
    db, _ = serve(delay=60.0)  # one chunk would take a minute
    run_id = launch.launch(db, {"task": "fake", "pop": 8, "gens": 2})
    wait_for(lambda: status(db, run_id) == "running")
    time.sleep(0.3)
    asked = time.monotonic()
    launch.cancel(db, run_id)
    wait_for(lambda: status(db, run_id) == "cancelled", timeout=30)
    took = time.monotonic() - asked
    print(f"cancel took effect after {took:.2f} s")
    assert took < 10 and not run_detail(db, run_id)["alive"]
    assert "SIGTERM" in run_detail(db, run_id)["error"]


def test_one_runner_per_store_and_it_exits_with_its_parent(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    code = "import sys, time; from gruq.search import runner; runner.ensure(sys.argv[1]); time.sleep(60)"
    parent = subprocess.Popen([sys.executable, "-c", code, str(db)], env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_for(lambda: runner.alive(db) is not None)
        pid = runner.alive(db)
        assert runner.serve(db, parent=os.getpid()) == 0  # the store is served already: returns at once
        assert runner.ensure(db) == pid
    finally:
        parent.kill()
        parent.wait()
    wait_for(lambda: runner.alive(db) is None, timeout=30)
