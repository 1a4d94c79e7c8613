"""`python -m gruq search` / `runs` and the launcher, as real processes.

Specification: --json prints exactly one JSON object on stdout; a run killed
with kill -9 and resumed ends with the uninterrupted run's result; every bad
input exits with status 2 and one line on stderr, storing nothing and
changing no file; the app's launcher starts, cancels and resumes detached
runs that the store shows at once.

The processes score genomes with the synthetic evaluator, through the
GRUQ_EVALUATOR hook (see gruq.search.backend).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_search_fake import FakeEvaluator, make

import gruq.store.connection as connection
from gruq.cli import main
from gruq.errors import GruqError
from gruq.search import launch, run
from gruq.search.backend import ENV_HOOK, Backend
from gruq.search.config import SearchConfig
from gruq.store import RunStore, individuals, list_runs, result, run_detail

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def fake_evaluator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Processes started here (and by the launcher) score with the synthetic evaluator."""
    monkeypatch.setenv(ENV_HOOK, "test_search_fake:make")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(TESTS)]))
    monkeypatch.delenv("GRUQ_FAKE_DELAY", raising=False)


def gruq(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gruq", *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=120
    )


def in_process(db: Path, **settings: Any) -> dict[str, Any]:
    """The uninterrupted reference run, in this process."""
    cfg = SearchConfig(task="fake", **settings)
    return run.start(db, cfg, backend_factory=lambda c: Backend(make("fake"), None), progress=False)


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def status(db: Path, run_id: int) -> str:
    return run_detail(db, run_id)["status"]


# -- the JSON contract --------------------------------------------------------------


def test_search_prints_one_json_object_and_runs_lists_the_run(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    out = gruq(
        "search",
        "--task",
        "fake",
        "--pop",
        "8",
        "--gens",
        "3",
        "--seed",
        "5",
        "--max-size-pct",
        "70",
        "--pin",
        "add_h=8",
        "--bits-range",
        "lin_hn=3-6",
        "--db",
        str(db),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    [line] = out.stdout.splitlines()
    res = json.loads(line)
    assert set(res) == {"run_id", "evaluations", "hypervolume", "front"} and len(res["hypervolume"]) == 3
    keys = {"bits", "accuracy", "size_bytes", "bops", "model", "check"}
    assert res["front"] and all(set(m) == keys for m in res["front"])
    assert all(isinstance(m["size_bytes"], int) for m in res["front"])  # whole bytes, as evaluate prints them
    assert "run 1" in out.stderr  # the progress bar
    # another process, same seed: the same result
    assert res == in_process(
        tmp_path / "ref.db", pop=8, gens=3, seed=5, max_size_pct=70, pins={"add_h": 8}, bits_ranges={"lin_hn": (3, 6)}
    )

    listed = gruq("runs", "--db", str(db), "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == {
        "runs": [
            {"run_id": 1, "task": "fake", "status": "finished", "generations_done": 3, "generations": 3, "seed": 5}
        ]
    }


def test_kill_9_after_two_generations_then_resume_gives_the_uninterrupted_result(tmp_path: Path) -> None:
    db, log = tmp_path / "s.db", tmp_path / "scored.txt"
    settings = {"pop": 12, "gens": 6, "seed": 2, "chunk_size": 4}
    args = [
        "search",
        "--task",
        "fake",
        "--pop",
        "12",
        "--gens",
        "6",
        "--seed",
        "2",
        "--chunk-size",
        "4",
        "--db",
        str(db),
        "--json",
    ]
    env = {**os.environ, "GRUQ_FAKE_DELAY": "0.1", "GRUQ_FAKE_LOG": str(log)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gruq", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    wait_for(lambda: db.exists() and bool(list_runs(db)) and list_runs(db)[0]["generations_done"] >= 2)
    proc.kill()
    proc.wait()
    proc.stdout.close()  # type: ignore[union-attr]
    detail = run_detail(db, 1)
    assert detail["status"] == "running" and not detail["alive"] and detail["generations_done"] < 6

    committed = {",".join(map(str, i["bits"])) for i in individuals(db, 1)}
    log.write_text("")
    resumed = gruq("search", "--resume", "1", "--db", str(db), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == {**in_process(tmp_path / "ref.db", **settings), "run_id": 1}
    assert not committed & set(log.read_text().split())  # nothing stored was scored again
    assert status(db, 1) == "finished"


# -- bad input: exit 2, one line, nothing lost ------------------------------------------


def one_error_line(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own checks
        code = exc.code
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gruq: error: "), captured.err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bits-range", "lin_hn=6-3"], "lin_hn=6-3 is reversed"),
        (["--bits-range", "lin_hn=2-9"], "outside the widths gruq supports, 2-8"),
        (["--bits-range", "lin_hn:2-4"], "--bits-range takes OP=LO-HI"),
        (["--bits-range", "lin_hn=2-4", "--bits-range", "lin_hn=3-5"], "gives lin_hn twice"),
        (["--pin", "add_h=9"], "--pin add_h=9 is outside"),
        (["--bits-range", "add_h=6-8", "--pin", "add_h=4"], "outside its --bits-range 6-8"),
        (["--pin", "adh=4"], "unknown operator 'adh'"),
        (["--pin", "l1.lin_xq=4"], "unknown operator 'l1.lin_xq'"),
        (["--pin", "l1.lin_xr=4"], "names layer 1, but this model has 1 GRU layer: allowed l0.lin_xr, or lin_xr"),
        (["--max-size-kb", "0.5"], r"--max-size-kb 0.5 \(500 bytes\) is below the smallest size"),
        (["--max-size-kb", "5", "--max-size-pct", "50"], "not allowed with argument"),
        (["--min-accuracy", "97"], "--min-accuracy is a fraction from 0 to 1"),
        (["--pop", "3"], "--pop must be an integer of at least 4"),
        (["--gens", "0"], "--gens must be an integer of at least 1"),
        (["--pop", "many"], "invalid int value"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--objective", "speed"], "invalid choice"),
    ],
)
def test_bad_search_settings_exit_2_with_one_line_and_store_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    db = tmp_path / "s.db"
    line = one_error_line(capsys, ["search", "--task", "fake", "--db", str(db), "--json", *args])
    assert re.search(message, line), line
    assert not db.exists()


def test_run_level_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = tmp_path / "s.db"
    assert main(["search", "--task", "fake", "--pop", "4", "--gens", "1", "--db", str(db), "--json"]) == 0
    capsys.readouterr()
    assert "no run 7" in one_error_line(capsys, ["search", "--resume", "7", "--db", str(db), "--json"])
    assert "drop --task, --pop" in one_error_line(
        capsys, ["search", "--resume", "1", "--task", "fake", "--pop", "8", "--db", str(db)]
    )
    assert "needs --task" in one_error_line(capsys, ["search", "--db", str(db)])
    assert "unknown task 'nope'" in one_error_line(capsys, ["search", "--task", "nope", "--db", str(db)])
    assert "no gruq store" in one_error_line(capsys, ["runs", "--db", str(tmp_path / "none.db"), "--json"])
    assert "is finished, not queued" in one_error_line(capsys, ["search", "--run-id", "1", "--db", str(db)])
    assert len(list_runs(db)) == 1


@pytest.mark.parametrize("content", [b"not a database at all\n" * 50, b"SQLite format 3\x00" + b"\x07" * 5000])
def test_a_damaged_store_exits_2_and_is_left_byte_identical(
    tmp_path: Path, capsys: pytest.CaptureFixture, content: bytes
) -> None:
    db = tmp_path / "s.db"
    db.write_bytes(content)
    line = one_error_line(capsys, ["search", "--task", "fake", "--pop", "4", "--gens", "1", "--db", str(db)])
    assert "not" in line or "corrupt" in line
    one_error_line(capsys, ["runs", "--db", str(db)])
    assert db.read_bytes() == content
    out = gruq("search", "--task", "fake", "--pop", "4", "--gens", "1", "--db", str(db), "--json")
    assert out.returncode == 2 and out.stdout == "" and len(out.stderr.strip().splitlines()) == 1
    assert db.read_bytes() == content


def test_a_locked_store_exits_2_and_keeps_its_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "s.db"
    main(["search", "--task", "fake", "--pop", "4", "--gens", "1", "--db", str(db), "--json"])
    before = capsys.readouterr().out
    monkeypatch.setattr(connection, "BUSY_TIMEOUT_S", 0.1)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE runs SET seed = seed")
    try:
        assert "locked" in one_error_line(capsys, ["search", "--task", "fake", "--pop", "4", "--db", str(db)])
        assert "locked" in one_error_line(capsys, ["runs", "--db", str(db), "--json"])
        assert "locked" in one_error_line(capsys, ["search", "--resume", "1", "--db", str(db), "--json"])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert main(["search", "--resume", "1", "--db", str(db), "--json"]) == 0
    assert capsys.readouterr().out == before


# -- the launcher (the app's API) ----------------------------------------------------------


def test_launch_records_a_queued_run_at_once_and_its_process_finishes_it(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    run_id = launch.launch(db, {"task": "fake", "pop": 8, "gens": 3, "seed": 4})
    assert status(db, run_id) in ("queued", "running")
    wait_for(lambda: status(db, run_id) in ("finished", "failed"))
    assert status(db, run_id) == "finished", launch.log_path(db, run_id).read_text()
    assert result(db, run_id) == {**in_process(tmp_path / "ref.db", pop=8, gens=3, seed=4), "run_id": run_id}
    assert "run 1" in launch.log_path(db, run_id).read_text()
    assert launch.cancel(db, run_id) == "finished"  # nothing to cancel
    with pytest.raises(GruqError, match="has finished"):
        launch.resume(db, run_id)


def test_launch_refuses_impossible_settings_before_storing_anything(tmp_path: Path) -> None:
    with pytest.raises(GruqError, match="is reversed"):
        launch.launch(tmp_path / "app.db", {"task": "fake", "bits_ranges": {"lin_hn": [6, 3]}})
    with pytest.raises(GruqError, match="unknown search setting"):
        launch.launch(tmp_path / "app.db", {"task": "fake", "generations": 3})
    assert not (tmp_path / "app.db").exists()


def test_cancel_stops_a_launched_run_and_resume_finishes_it_identically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "app.db"
    settings = {"pop": 8, "gens": 6, "seed": 9, "chunk_size": 4}
    monkeypatch.setenv("GRUQ_FAKE_DELAY", "0.1")
    run_id = launch.launch(db, {"task": "fake", **settings})
    wait_for(lambda: run_detail(db, run_id)["generations_done"] >= 1)
    assert launch.cancel(db, run_id) in ("running", "cancelled")
    wait_for(lambda: status(db, run_id) == "cancelled")
    detail = run_detail(db, run_id)
    assert "SIGTERM" in detail["error"] and detail["generations_done"] < 6 and not detail["alive"]

    monkeypatch.delenv("GRUQ_FAKE_DELAY")
    launch.resume(db, run_id)
    wait_for(lambda: status(db, run_id) in ("finished", "failed"))
    assert result(db, run_id) == {**in_process(tmp_path / "ref.db", **settings), "run_id": run_id}


def test_a_queued_run_cancelled_before_its_process_starts_never_runs(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    run_id = run.create(
        db, SearchConfig(task="fake", pop=4, gens=2), backend_factory=lambda c: Backend(FakeEvaluator(), None)
    )
    assert launch.cancel(db, run_id) == "cancelled"
    with pytest.raises(run.RunCancelled, match="cancelled before it started"):
        run.execute(db, run_id, launched=True, backend_factory=lambda c: Backend(FakeEvaluator(), None))
    assert run_detail(db, run_id)["generations_done"] == 0


def test_a_running_run_whose_process_died_is_marked_cancelled(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    run_id = run.create(
        db, SearchConfig(task="fake", pop=4, gens=2), backend_factory=lambda c: Backend(FakeEvaluator(), None)
    )
    with RunStore(db) as store:
        store.claim(run_id, pid=2**22 + 12345, allowed=("queued",))  # no such process
    assert launch.cancel(db, run_id) == "cancelled"
