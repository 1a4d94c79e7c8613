"""Scoring on Dask: real `dask scheduler` and `dask worker` processes on 127.0.0.1.

Specification: a search scored on a Dask cluster ends with exactly the front
of the serial run for the same seed (`tcp://` and `local:N`, synthetic and
real model); a worker killed with kill -9 mid-run has its chunks re-run
elsewhere and the front is unchanged; a scheduler killed mid-run fails the
run with a readable reason, keeps every stored generation, and `--resume`
on another scheduler ends with the identical front; an unreachable address
exits 2 with one line and creates nothing; a worker with another gruq
version is refused with one line. SIGTERM (or the app's Cancel) on a
`local:N` run, mid-run or while its cluster starts, ends the process
promptly with the run cancelled, every cluster process gone and no file left
behind, and the run resumes to the identical front.

The search runs as a real `python -m gruq` process where a process is
killed; the synthetic evaluator (tests/test_search_fake.py) is used except
in the real-model test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from test_search_fake import FakeEvaluator, make

from gruq.errors import GruqError
from gruq.search import dask_map, guided, launch, nsga2, run
from gruq.search.backend import ENV_HOOK, Backend
from gruq.search.config import SearchConfig
from gruq.store import list_runs, run_detail

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
PYTHONPATH = os.pathsep.join([str(ROOT), str(TESTS)])


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen
    workers: subprocess.Popen

    def worker_pids(self) -> list[int]:
        from distributed import Client

        with Client(self.address, timeout=10, set_as_default=False) as client:
            return sorted(client.run(os.getpid).values())


def _dask(kind: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dask", kind, *args, "--no-dashboard"],
        env={**os.environ, "PYTHONPATH": PYTHONPATH, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@contextmanager
def cluster(workers: int = 2, worker_args: tuple[str, ...] = ()) -> Iterator[Cluster]:
    """A scheduler and `workers` single-threaded workers (with a nanny each), all on loopback."""
    with tempfile.TemporaryDirectory() as tmp:
        info = Path(tmp) / "scheduler.json"
        sched = _dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(info))
        procs = [sched]
        try:
            wait_for(lambda: info.exists() and info.stat().st_size > 0)
            address = json.loads(info.read_text())["address"]
            work = _dask(
                "worker", address, "--nworkers", str(workers), "--nthreads", "1", "--host", "127.0.0.1", *worker_args
            )
            procs.append(work)
            c = Cluster(address, sched, work)
            wait_for(lambda: len(c.worker_pids()) == workers, timeout=120)
            yield c
        finally:
            for p in reversed(procs):
                with suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture(scope="module")
def shared() -> Iterator[Cluster]:
    with cluster(2) as c:
        yield c


@pytest.fixture(autouse=True)
def fake_evaluator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_HOOK, "test_search_fake:make")
    monkeypatch.setenv("PYTHONPATH", PYTHONPATH)
    monkeypatch.delenv("GRUQ_FAKE_DELAY", raising=False)


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def serial(tmp: Path, **settings: Any) -> dict[str, Any]:
    cfg = SearchConfig(task="fake", **settings)
    return run.start(tmp / "serial.db", cfg, backend_factory=lambda c: Backend(make("fake"), None), progress=False)


def gruq_proc(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gruq", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def gruq(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gruq", *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=300
    )


def done_generations(db: Path) -> int:
    return list_runs(db)[0]["generations_done"] if db.exists() and list_runs(db) else 0


def descendants(proc: subprocess.Popen) -> list[psutil.Process]:
    with suppress(psutil.Error):
        return psutil.Process(proc.pid).children(recursive=True)
    return []


def running(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (a zombie has died; only its reaping is left)."""
    alive = []
    for p in procs:
        with suppress(psutil.Error):
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
    return alive


def commands(procs: list[psutil.Process]) -> list[str]:
    text = []
    for p in procs:
        with suppress(psutil.Error):
            text.append(" ".join(p.cmdline()))
    return text


def worker_processes(procs: list[psutil.Process]) -> int:
    """How many Dask worker processes a nanny has started (multiprocessing's spawn)."""
    return sum("multiprocessing.spawn" in c for c in commands(procs))


SETTINGS = {"pop": 12, "gens": 5, "seed": 3, "chunk_size": 2}
ARGS = ["--task", "fake", "--pop", "12", "--gens", "5", "--seed", "3", "--chunk-size", "2", "--json"]


# -- addresses ---------------------------------------------------------------------------


def test_addresses_are_parsed_and_described() -> None:
    assert dask_map.parse("tcp://10.0.0.5:8786") == ("tcp", ("10.0.0.5", 8786))
    assert dask_map.parse("local:3") == ("local", 3)
    assert dask_map.describe("local:1") == "Dask LocalCluster of 1 worker on this machine"
    assert dask_map.describe("tcp://h:1") == "Dask scheduler tcp://h:1"
    for bad in ("localhost:8786", "tcp://h", "local:0", "tcp://h:99999", "udp://h:1"):
        with pytest.raises(GruqError, match="--scheduler"):
            dask_map.parse(bad)


def test_an_unreachable_scheduler_exits_2_with_one_line_and_creates_nothing(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: nobody answers
        db = tmp_path / "s.db"
        out = gruq("search", *ARGS, "--scheduler", f"tcp://127.0.0.1:{port}", "--db", str(db))
    assert out.returncode == 2 and out.stdout == ""
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("gruq: error: cannot reach a Dask scheduler at tcp://127.0.0.1:")
    assert not db.exists() and list(tmp_path.iterdir()) == []
    bad = gruq("search", *ARGS, "--scheduler", "somewhere", "--db", str(db))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and not db.exists()


def test_a_worker_that_differs_from_the_client_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "other_gruq.py").write_text("import gruq\ngruq.__version__ = '0.0.0-other'\n")
    preload = ("--preload", str(tmp_path / "other_gruq.py"))
    with cluster(1, preload) as c:
        out = gruq("search", *ARGS, "--scheduler", c.address, "--db", str(tmp_path / "s.db"))
    assert out.returncode == 2 and out.stdout == ""
    line = out.stderr.strip().splitlines()[-1]
    assert "is refused: it has gruq 0.0.0-other" in line and "install the same project" in line


def test_a_worker_that_differs_and_joins_mid_run_is_refused_and_the_run_goes_on(
    tmp_path: Path, shared: Cluster, capfd: pytest.CaptureFixture
) -> None:
    """It would fail every chunk it got (it used to fail the whole run): it leaves, with one line."""
    from gruq.search import scoring

    (tmp_path / "other_gruq.py").write_text("import gruq\ngruq.__version__ = '0.0.0-other'\n")
    chunks = scoring.chunks([(b,) * 17 for b in range(2, 9)] * 4, 2)
    with dask_map.mapper(FakeEvaluator(), shared.address) as map_fn:
        late = _dask(
            "worker",
            shared.address,
            "--nthreads",
            "1",
            "--host",
            "127.0.0.1",
            "--preload",
            str(tmp_path / "other_gruq.py"),
        )
        try:
            late.wait(timeout=120)  # refused, it closes (it used to stay, failing chunks)
        finally:
            with suppress(ProcessLookupError):
                os.killpg(late.pid, signal.SIGKILL)
        got = list(map_fn(scoring.score_chunk, chunks))
    assert got == [FakeEvaluator().accuracy(c) for c in chunks]
    said = [ln for ln in capfd.readouterr().err.splitlines() if "is refused" in ln]
    assert said and "it has gruq 0.0.0-other" in said[0] and said[0].endswith("the run goes on without it")


def test_a_changed_checkpoint_changes_the_fingerprint(tmp_path: Path) -> None:
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"one")
    ev = FakeEvaluator()
    ev.checkpoint = str(ckpt)  # type: ignore[attr-defined]
    before = dask_map.fingerprint(ev)
    ckpt.write_bytes(b"two")
    after = dask_map.fingerprint(ev)
    assert before["checkpoint"] != after["checkpoint"] and before["gruq"] == after["gruq"]
    assert "is refused" in (dask_map.mismatch("tcp://w:1", after, before) or "")
    assert dask_map.mismatch("tcp://w:1", after, after) is None


# -- identical fronts ----------------------------------------------------------------------


def test_a_dask_cluster_gives_the_serial_front(tmp_path: Path, shared: Cluster, monkeypatch) -> None:
    monkeypatch.setattr(guided, "EXPLORE_UNTIL", 30)  # the measured walk's rounds of scoring go through Dask too
    ref = serial(tmp_path, **SETTINGS)
    cfg = SearchConfig(task="fake", scheduler=shared.address, **SETTINGS)
    got = run.start(tmp_path / "d.db", cfg, backend_factory=lambda c: Backend(make("fake"), None), progress=False)
    assert got == ref


def test_local_n_starts_its_own_cluster_and_gives_the_serial_front(tmp_path: Path) -> None:
    out = gruq("search", *ARGS, "--scheduler", "local:2", "--db", str(tmp_path / "l.db"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == serial(tmp_path, **SETTINGS)
    assert run_detail(tmp_path / "l.db", 1)["config"]["scheduler"] == "local:2"


def test_a_real_model_on_dask_gives_the_serial_front(tmp_path: Path, shared: Cluster, monkeypatch) -> None:
    monkeypatch.delenv(ENV_HOOK)
    settings = {"pop": 8, "gens": 2, "seed": 1, "chunk_size": 3}
    ref = run.start(tmp_path / "r.db", SearchConfig(task="vowels", **settings), progress=False)
    got = run.start(
        tmp_path / "rd.db", SearchConfig(task="vowels", scheduler=shared.address, **settings), progress=False
    )
    assert got == ref and ref["front"]


# -- faults --------------------------------------------------------------------------------


def test_a_worker_killed_mid_run_has_its_chunks_rerun_and_the_front_is_unchanged(
    tmp_path: Path, shared: Cluster
) -> None:
    db = tmp_path / "k.db"
    proc = gruq_proc("search", *ARGS, "--scheduler", shared.address, "--db", str(db), GRUQ_FAKE_DELAY="0.4")
    wait_for(lambda: done_generations(db) >= 1)
    victim = shared.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert json.loads(out) == serial(tmp_path, **SETTINGS)
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)
    wait_for(lambda: len(shared.worker_pids()) == 2, timeout=120)  # the nanny restarted it


def test_a_lost_scheduler_fails_the_run_and_resume_elsewhere_gives_the_serial_front(
    tmp_path: Path, shared: Cluster
) -> None:
    db = tmp_path / "s.db"
    with cluster(1) as doomed:
        proc = gruq_proc("search", *ARGS, "--scheduler", doomed.address, "--db", str(db), GRUQ_FAKE_DELAY="0.3")
        wait_for(lambda: done_generations(db) >= 2)
        os.kill(doomed.scheduler.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and out == ""
    line = err.strip().splitlines()[-1]
    assert line.startswith("gruq: error: lost the Dask scheduler at " + doomed.address), err
    detail = run_detail(db, 1)
    assert detail["status"] == "failed" and "lost the Dask scheduler" in detail["error"]
    kept = detail["generations_done"]
    assert 2 <= kept < 5

    resumed = gruq("search", "--resume", "1", "--scheduler", shared.address, "--db", str(db), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == {**serial(tmp_path, **SETTINGS), "run_id": 1}
    assert run_detail(db, 1)["config"]["scheduler"] == shared.address  # where it computed last


# -- cancel --------------------------------------------------------------------------------

EXIT_BOUND_S = 30  # generous: a cancel took about 9 s before it was made fast; well under 1 s after


def stopped_within(proc: subprocess.Popen, seconds: float) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running {seconds} s after SIGTERM:\n{err[-2000:]}") from None


def test_sigterm_mid_run_on_local_n_cancels_kills_the_cluster_and_resume_gives_the_serial_front(
    tmp_path: Path, shared: Cluster
) -> None:
    db, scratch = tmp_path / "c.db", tmp_path / "tmp"
    scratch.mkdir()
    proc = gruq_proc(
        "search", *ARGS, "--scheduler", "local:2", "--db", str(db), GRUQ_FAKE_DELAY="0.5", TMPDIR=str(scratch)
    )
    wait_for(lambda: done_generations(db) >= 1, timeout=180)
    cluster_procs = descendants(proc)
    assert worker_processes(cluster_procs) == 2
    proc.send_signal(signal.SIGTERM)  # a chunk is being scored: the workers are busy
    out, err = stopped_within(proc, EXIT_BOUND_S)
    assert proc.returncode == 128 + signal.SIGTERM and out == ""
    assert err.strip().splitlines()[-1].startswith("gruq: run 1 cancelled after ")
    detail = run_detail(db, 1)
    assert detail["status"] == "cancelled" and detail["error"] == "cancelled by SIGTERM"
    wait_for(lambda: not running(cluster_procs), timeout=10)
    assert list(scratch.iterdir()) == []  # no scratch space left behind (Dask's own defaults to the temp dir)

    resumed = gruq("search", "--resume", "1", "--scheduler", shared.address, "--db", str(db), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == {**serial(tmp_path, **SETTINGS), "run_id": 1}


def test_a_cancel_while_the_local_cluster_starts_is_honoured(tmp_path: Path) -> None:
    """The app's Cancel (a SIGTERM) used to wait for the cluster to be up; with workers slow
    to start the run then failed, "no workers", a minute later."""
    slow = tmp_path / "slow_start.py"
    slow.write_text("import time\ntime.sleep(600)\n")  # every worker hangs in its preload
    db, scratch = tmp_path / "s.db", tmp_path / "tmp"
    scratch.mkdir()
    proc = gruq_proc(
        "search",
        *ARGS,
        "--scheduler",
        "local:2",
        "--db",
        str(db),
        TMPDIR=str(scratch),
        DASK_DISTRIBUTED__WORKER__PRELOAD=json.dumps([str(slow)]),
    )
    wait_for(lambda: worker_processes(descendants(proc)) == 2, timeout=120)
    cluster_procs = descendants(proc)
    assert run_detail(db, 1)["status"] == "running" and done_generations(db) == 0
    assert launch.cancel(db, 1) == "running"  # SIGTERM sent; the run marks itself cancelled
    out, err = stopped_within(proc, EXIT_BOUND_S)
    assert proc.returncode == 128 + signal.SIGTERM and out == "", err
    detail = run_detail(db, 1)
    assert detail["status"] == "cancelled" and detail["error"] == "cancelled by SIGTERM"
    wait_for(lambda: not running(cluster_procs), timeout=10)
    assert list(scratch.iterdir()) == []


def test_a_stop_landing_in_a_scheduler_call_stops_the_run_instead_of_failing_it() -> None:
    """A signal raises StopRequested wherever the run is waiting (gruq.search.run), also inside
    a round trip to the scheduler: that is the stop, not a lost scheduler."""

    class Interrupted:
        status = "running"

        def scheduler_info(self, **_: Any) -> dict:
            raise nsga2.StopRequested

    watch = dask_map._Watch(Interrupted(), "tcp://h:1", should_stop=lambda: True)
    watch.next_look = 0.0
    with pytest.raises(nsga2.StopRequested):
        watch.check()
