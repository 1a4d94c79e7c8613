"""Scoring genomes in chunks, in this process or in a pool of processes.

The evaluator scores a batch of genomes together (its fast path), so new
genomes are grouped into chunks of a fixed size and the chunks go through
the toolbox's `map`: the builtin `map` with one worker, a process pool's
`imap` with more. The chunk size does not depend on the number of workers,
so the same genomes meet in the same batches and results are identical
whatever the parallelism.

Pool workers are started with "spawn" (no fork of a process that may hold
torch threads) and receive the evaluator once, through the pool initializer:
it must be picklable, and it keeps whatever it loads lazily for the whole run.
A Dask scheduler (`gruq.search.dask_map`) is the third backend, with the same
chunks; this module only chooses it.
"""

from __future__ import annotations

import math
import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from gruq.genome import Genome
from gruq.search.backend import Evaluator

MapFn = Callable[..., Iterable]

# The evaluator of this thread: the main one, a pool worker's, or a Dask
# worker thread's (a Dask worker may serve several runs, one per task).
_local = threading.local()


def install(evaluator: Evaluator | None) -> None:
    _local.evaluator = evaluator


def _init_worker(evaluator: Evaluator) -> None:
    # Ctrl-C reaches the whole process group: let the main process decide.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One thread per worker: more oversubscribes the cores, and spinning
    # OpenMP threads then slow everything by an order of magnitude (measured).
    import torch

    torch.set_num_threads(1)
    install(evaluator)


def score_chunk(chunk: Sequence[Genome]) -> list[float]:
    """Accuracies of one chunk, checked: the search trusts nothing else."""
    evaluator = getattr(_local, "evaluator", None)
    if evaluator is None:
        raise RuntimeError("no evaluator installed in this process")
    accuracies = [float(a) for a in evaluator.accuracy(list(chunk))]
    if len(accuracies) != len(chunk):
        raise RuntimeError(f"evaluator returned {len(accuracies)} accuracies for {len(chunk)} genomes")
    bad = [a for a in accuracies if not (math.isfinite(a) and 0.0 <= a <= 1.0)]
    if bad:
        raise RuntimeError(f"evaluator returned accuracies outside 0..1: {bad[:3]}")
    return accuracies


def chunks(items: Sequence[Genome], size: int) -> list[list[Genome]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def where(workers: int = 1, scheduler: str | None = None) -> str:
    """Where a run's scoring happens, in words (the app shows it)."""
    if scheduler:
        from gruq.search.dask_map import describe

        return describe(scheduler)
    return "this machine, one process" if workers <= 1 else f"this machine, a pool of {workers} processes"


@contextmanager
def mapper(
    evaluator: Evaluator, workers: int, scheduler: str | None = None, should_stop: Callable[[], bool] = lambda: False
) -> Iterator[MapFn]:
    """A `map` for the toolbox: lazy and ordered, so a run can stop between chunks.

    `scheduler` (a Dask address) wins over `workers`; `should_stop` lets a
    backend that waits on other machines give up its wait when the run is cancelled.
    """
    if scheduler:
        from gruq.search import dask_map

        with dask_map.mapper(evaluator, scheduler, should_stop) as map_fn:
            yield map_fn
        return
    if workers <= 1:
        install(evaluator)
        try:
            yield map
        finally:
            install(None)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(evaluator,)) as pool:
        yield pool.imap
