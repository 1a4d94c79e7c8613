"""Scoring on a Dask cluster: the toolbox's `map` over Dask workers.

`--scheduler tcp://HOST:PORT` connects to a running scheduler; `--scheduler
local:N` starts a local cluster for this run: `dask scheduler` and `dask
worker --nworkers N --nthreads 1` as processes on 127.0.0.1, the very commands
of the multi-machine recipe. (distributed's in-process LocalCluster was tried
first: its scheduler, living in the run's process, draws from Python's global
`random`, which the genetic algorithm owns, and the front changed. The client
alone draws nothing; a guard restores the generator if anything ever does.) Either way the search submits the same fixed chunks
as the builtin map and reads the results in submission order, so the front
does not depend on the backend. Dask re-runs the chunks of a worker that dies;
a lost scheduler fails the run with a readable reason (the store keeps every
whole generation, and `--resume` continues it, on any scheduler).

The evaluator reaches each worker once, in a worker plugin (Dask also hands
it to workers that join later), not with every chunk. The plugin compares the
worker's gruq version and checkpoint with the client's and refuses a worker
that differs: its results would silently differ too.

A stop request (`should_stop`, the run's SIGTERM or Cancel) is honoured at
any time, the cluster's start included: every wait polls it, and the run
stops with `StopRequested`. A local cluster is killed whole when the run ends
or stops (SIGKILL to its process groups): a graceful close took seconds.

`distributed` is imported only when a run uses it, so the CLI and the app
stay fast to start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

from gruq.errors import GruqError, SettingError

CONNECT_TIMEOUT_S = 10.0  # reaching the scheduler, at start and when submitting
WORKERS_TIMEOUT_S = 60.0  # a scheduler with no worker (all gone) for this long fails the run
CLOSE_TIMEOUT_S = 5.0  # closing the client
GONE_TIMEOUT_S = 2.0  # a killed local cluster's processes disappearing
POLL_S = 0.05  # how often a wait looks at the stop flag and the connection
MAX_LOCAL_WORKERS = 256
REFUSED_TOPIC = "gruq-refused-worker"  # the events a refused worker sends the run

_LOCAL = re.compile(r"local:(\d+)")
_TCP = re.compile(r"tcp://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):(\d{1,5})")


def parse(address: str) -> tuple[str, Any]:
    """("local", n_workers) or ("tcp", (host, port)); a SettingError names the accepted forms
    (its `problem` fact is the refusal without the flag, for the app's form)."""
    text = address.strip() if isinstance(address, str) else ""
    if m := _LOCAL.fullmatch(text):
        n = int(m[1])
        if not 1 <= n <= MAX_LOCAL_WORKERS:
            _refuse(f"takes local:N with 1 to {MAX_LOCAL_WORKERS} workers; got {address!r}", address)
        return "local", n
    if m := _TCP.fullmatch(text):
        port = int(m[2])
        if not 1 <= port <= 65535:
            _refuse(f"needs a port from 1 to 65535; got {address!r}", address)
        return "tcp", (m[1].strip("[]"), port)
    _refuse(f"takes tcp://HOST:PORT (a running Dask scheduler) or local:N; got {address!r}", address)


def _refuse(problem: str, address: object) -> NoReturn:
    raise SettingError(f"--scheduler {problem}", "scheduler", problem=problem, address=address)


def describe(address: str) -> str:
    """Where a run computes, in words (the app's Live page)."""
    kind, value = parse(address)
    if kind == "local":
        return f"Dask LocalCluster of {value} worker{'s' if value > 1 else ''} on this machine"
    return f"Dask scheduler {address.strip()}"


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse, with one line, a tcp:// scheduler that does not answer (before anything is stored)."""
    kind, value = parse(address)
    if kind != "tcp":
        return
    host, port = value
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise GruqError(
            f"cannot reach a Dask scheduler at {address.strip()} ({reason}); "
            "start one with `dask scheduler`, or check the address"
        ) from None


# -- what a worker must share with the client ---------------------------------------


def fingerprint(evaluator: Any) -> dict[str, str | None]:
    """gruq's version and a hash of the evaluator's checkpoint file, as this process sees them."""
    import gruq

    path = _checkpoint_file(evaluator)
    digest = None
    if path is not None and path.is_file():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return {"gruq": gruq.__version__, "checkpoint": digest}


def _checkpoint_file(evaluator: Any) -> Path | None:
    explicit = getattr(evaluator, "checkpoint", None)
    if explicit:
        return Path(explicit)
    task = getattr(evaluator, "task", None)
    if not isinstance(task, str) or type(evaluator).__module__ != "gruq.evaluate":
        return None
    from gruq.model import checkpoint_path

    return checkpoint_path(task)


def mismatch(worker: str, mine: dict[str, Any], expected: dict[str, Any]) -> str | None:
    """The one line that refuses a worker, or None if it matches the client."""
    if mine == expected:
        return None
    return (
        f"Dask worker {worker} is refused: it has gruq {mine['gruq']} with checkpoint {mine['checkpoint']}, "
        f"this run has gruq {expected['gruq']} with checkpoint {expected['checkpoint']}; "
        "install the same project (and assets/) on every machine"
    )


def _plugin_class() -> type:
    from distributed.diagnostics.plugin import WorkerPlugin

    class EvaluatorPlugin(WorkerPlugin):
        """Carries one run's evaluator to a worker, once, and checks the worker first."""

        idempotent = False

        def __init__(self, evaluator: Any, expected: dict[str, Any]) -> None:
            self.evaluator = evaluator
            self.expected = expected
            self.refused: str | None = None

        def setup(self, worker: Any) -> None:
            import torch

            torch.set_num_threads(1)  # one thread per worker process: more oversubscribes the cores
            self.refused = mismatch(worker.address, fingerprint(self.evaluator), self.expected)
            if self.refused:
                # a worker joining mid-run would fail every chunk it got: it leaves, the run says why
                worker.log_event(REFUSED_TOPIC, self.refused)
                worker.loop.add_callback(worker.close, reason="gruq: refused")
                raise GruqError(self.refused)  # at the start: the run stops with this one line

    return EvaluatorPlugin


def _on_worker(plugin_name: str, fn: Callable, chunk: Sequence) -> Any:
    """Run `fn(chunk)` on a Dask worker with the run's evaluator installed."""
    from distributed import Reschedule, get_worker

    from gruq.search import scoring

    plugin = get_worker().plugins.get(plugin_name)
    if plugin is None:
        raise GruqError("a Dask worker has not received this run's evaluator")
    if plugin.refused:
        raise Reschedule()  # a refused worker, closing: another one scores the chunk
    scoring.install(plugin.evaluator)
    return fn(chunk)


# -- the map ------------------------------------------------------------------------


@contextmanager
def mapper(evaluator: Any, address: str, should_stop: Callable[[], bool] = lambda: False) -> Iterator[Callable]:
    """A `map` for the toolbox that scores chunks on Dask workers, in order.

    Raises StopRequested if `should_stop()` turns true while the cluster starts."""
    with _quiet(), _client(address, should_stop) as client:
        client.subscribe_topic(REFUSED_TOPIC, _say_refused)
        name = _install(client, evaluator, should_stop)
        try:
            yield partial(_map, client, name, address, should_stop)
        finally:
            if parse(address)[0] == "tcp":  # a shared cluster keeps running; a local one is killed next
                with suppress(Exception):
                    if client.status == "running":
                        client.unregister_worker_plugin(name)


def _say_refused(event: tuple[float, str]) -> None:
    """One line on stderr (the run's log) for a worker refused mid-run."""
    sys.stderr.write(f"gruq: {event[1]}; the run goes on without it\n")


@contextmanager
def _client(address: str, should_stop: Callable[[], bool]) -> Iterator[Any]:
    from distributed import Client

    kind, value = parse(address)
    with _local_cluster(value, should_stop) if kind == "local" else _remote(address) as target:
        _stop_point(should_stop)
        try:
            client = Client(target, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise GruqError(f"cannot connect to the Dask scheduler at {address.strip()}: {exc}") from None
        try:
            _wait_for_workers(client, address, should_stop)
            yield client
        finally:
            with suppress(Exception):
                client.close(timeout=CLOSE_TIMEOUT_S)


@contextmanager
def _remote(address: str) -> Iterator[str]:
    check_reachable(address)
    yield address.strip()


@contextmanager
def _local_cluster(n: int, should_stop: Callable[[], bool]) -> Iterator[str]:
    """`dask scheduler` and `dask worker` processes on 127.0.0.1 for one run; killed after it.

    Their sessions are their own (a Ctrl-C reaches the run, which stops
    them), and Linux stops them if the run dies (parent-death signal). Their
    scratch space is in the run's temporary directory, so killing them
    leaves nothing behind.
    """
    with tempfile.TemporaryDirectory(prefix="gruq-dask-", ignore_cleanup_errors=True) as tmp:
        info = Path(tmp) / "scheduler.json"
        procs = [_start(tmp, "scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(info))]
        try:
            address = _scheduler_address(info, procs[0], should_stop)
            procs.append(
                _start(
                    tmp,
                    "worker",
                    address,
                    "--nworkers",
                    str(n),
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--death-timeout",
                    "30",
                )
            )
            yield address
        finally:
            _kill(procs)


def _start(scratch: str, kind: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ)
    env["DASK_TEMPORARY_DIRECTORY"] = scratch  # not /tmp/dask-scratch-space, shared and left behind
    # what this process imports, the workers import (gruq, and a test's evaluator module)
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*paths, *env.get("PYTHONPATH", "").split(os.pathsep)]))
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "dask", kind, *args, "--no-dashboard"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )


def _die_with_parent() -> None:
    with suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _scheduler_address(info: Path, proc: subprocess.Popen, should_stop: Callable[[], bool]) -> str:
    deadline = time.monotonic() + CONNECT_TIMEOUT_S * 3
    while time.monotonic() < deadline:
        _stop_point(should_stop)
        if proc.poll() is not None:
            raise GruqError(f"the local Dask scheduler exited at start (status {proc.returncode})")
        with suppress(OSError, ValueError, KeyError):
            return str(json.loads(info.read_text())["address"])
        time.sleep(0.05)
    raise GruqError("the local Dask scheduler did not start in time")


def _kill(procs: list[subprocess.Popen]) -> None:
    """SIGKILL the local cluster: each command's process group (a nanny's workers included).

    Not SIGTERM: a graceful close, one command after the other, took 0.7 to
    2.2 s each (measured at load 7-9, workers busy), and nothing in a run's
    own cluster outlives the run."""
    import psutil  # a dependency of distributed

    orphans = []  # the nanny's workers: not our children, so not waited for by proc.wait()
    for proc in procs:
        with suppress(psutil.Error):
            orphans += psutil.Process(proc.pid).children(recursive=True)
    for proc in procs:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    for proc in procs:
        proc.wait()
    deadline = time.monotonic() + GONE_TIMEOUT_S
    while time.monotonic() < deadline and any(_running(p) for p in orphans):
        time.sleep(0.01)


def _running(proc: Any) -> bool:
    """Whether a psutil process still runs (a zombie has died: only its parent's reaping is left)."""
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _stop_point(should_stop: Callable[[], bool]) -> None:
    if should_stop():
        from gruq.search.nsga2 import StopRequested  # the search's own; imported late, for a fast `describe`

        raise StopRequested


def _wait_for_workers(client: Any, address: str, should_stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WORKERS_TIMEOUT_S
    while not client.scheduler_info(n_workers=-1).get("workers"):
        _stop_point(should_stop)
        if time.monotonic() > deadline:
            raise GruqError(
                f"the Dask scheduler at {address.strip()} has no workers (waited {WORKERS_TIMEOUT_S:.0f} s); "
                "start some with `dask worker`"
            )
        time.sleep(POLL_S)


def _install(client: Any, evaluator: Any, should_stop: Callable[[], bool]) -> str:
    """Register the evaluator plugin on every worker; one line if a worker is refused."""
    name = f"gruq-evaluator-{uuid.uuid4().hex[:12]}"
    plugin = _plugin_class()(evaluator, fingerprint(evaluator))
    try:
        _stoppable(partial(client.register_plugin, plugin, name=name), should_stop)
    except GruqError:
        raise
    except Exception as exc:
        if should_stop():
            raise  # the stop (StopRequested), not a failed install
        first = (str(exc).strip().splitlines() or [""])[0]
        raise GruqError(f"cannot install the evaluator on the Dask workers: {type(exc).__name__}: {first}") from None
    return name


def _stoppable(fn: Callable[[], Any], should_stop: Callable[[], bool]) -> Any:
    """`fn()`, or StopRequested as soon as `should_stop()` turns true.

    For a call that waits on workers (installing the plugin: they import
    torch, seconds under load). It runs in a daemon thread that a stop
    abandons: the client it uses is closed next."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = exc

    thread = threading.Thread(target=call, name="gruq-dask-call", daemon=True)
    thread.start()
    while thread.is_alive():
        _stop_point(should_stop)
        thread.join(POLL_S)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _map(
    client: Any, name: str, address: str, should_stop: Callable[[], bool], fn: Callable, items: Iterable
) -> Iterator[Any]:
    """Submit every chunk at once; yield results in order. Each wait is bounded:
    by the stop flag, by the scheduler connection, and by the workers' presence."""
    rngs = random.getstate(), _numpy_state()  # the search's, which nothing here may consume
    futures = [client.submit(_on_worker, name, fn, item, pure=False) for item in items]
    watch = _Watch(client, address, should_stop)
    try:
        for i, fut in enumerate(futures):
            while not fut.done():
                if should_stop():
                    return
                watch.check()
                time.sleep(POLL_S)
            if fut.cancelled() or client.status != "running":
                raise _lost(address)
            result = fut.result()
            if i == len(futures) - 1:
                _restore(rngs)
            yield result
    finally:
        _restore(rngs)
        if client.status == "running":
            with suppress(Exception):
                client.cancel(futures)


def _numpy_state() -> Any:
    import numpy as np

    return np.random.get_state()


def _restore(rngs: tuple[Any, Any]) -> None:
    import numpy as np

    random.setstate(rngs[0])
    np.random.set_state(rngs[1])


class _Watch:
    """Notices a lost scheduler at once, and a cluster with no worker after a while."""

    def __init__(self, client: Any, address: str, should_stop: Callable[[], bool]) -> None:
        self.client, self.address, self.should_stop = client, address, should_stop
        self.next_look = time.monotonic() + 1.0
        self.without_workers_since: float | None = None

    def check(self) -> None:
        if self.client.status != "running":
            raise _lost(self.address)
        now = time.monotonic()
        if now < self.next_look:
            return
        self.next_look = now + 1.0
        try:
            workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
        except Exception:
            if self.should_stop():
                raise  # a signal's StopRequested landed in the call (gruq.search.run): a stop, not a loss
            raise _lost(self.address) from None
        if workers:
            self.without_workers_since = None
        elif self.without_workers_since is None:
            self.without_workers_since = now
        elif now - self.without_workers_since > WORKERS_TIMEOUT_S:
            raise GruqError(f"every Dask worker of {self.address.strip()} has been gone for {WORKERS_TIMEOUT_S:.0f} s")


def _lost(address: str) -> GruqError:
    return GruqError(
        f"lost the Dask scheduler at {address.strip()} mid-run; every finished generation is stored: "
        "resume with --resume ID (and --scheduler ADDRESS)"
    )


@contextmanager
def _quiet() -> Iterator[None]:
    """Dask's own logging would bury the run's one-line messages: keep only its errors' outcome."""
    loggers = [logging.getLogger(n) for n in ("distributed", "tornado")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
