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
"""

from __future__ import annotations

import math
import multiprocessing
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from gruq.genome import Genome
from gruq.search.backend import Evaluator

MapFn = Callable[..., Iterable]

_evaluator: Evaluator | None = None  # the evaluator of this process (main or pool worker)


def install(evaluator: Evaluator) -> None:
    global _evaluator
    _evaluator = evaluator


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
    if _evaluator is None:
        raise RuntimeError("no evaluator installed in this process")
    accuracies = [float(a) for a in _evaluator.accuracy(list(chunk))]
    if len(accuracies) != len(chunk):
        raise RuntimeError(f"evaluator returned {len(accuracies)} accuracies for {len(chunk)} genomes")
    bad = [a for a in accuracies if not (math.isfinite(a) and 0.0 <= a <= 1.0)]
    if bad:
        raise RuntimeError(f"evaluator returned accuracies outside 0..1: {bad[:3]}")
    return accuracies


def chunks(items: Sequence[Genome], size: int) -> list[list[Genome]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


@contextmanager
def mapper(evaluator: Evaluator, workers: int) -> Iterator[MapFn]:
    """A `map` for the toolbox: lazy and ordered, so a run can stop between chunks."""
    if workers <= 1:
        install(evaluator)
        try:
            yield map
        finally:
            install(None)  # type: ignore[arg-type]
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(evaluator,)) as pool:
        yield pool.imap
