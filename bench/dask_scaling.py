"""Speed-up of a search on a local Dask cluster of 2 workers against 1, and where scaling ends.

The search has fine-tuning in the loop (smnist, 1 epoch of quantization-aware
training per candidate: seconds per genome), so scoring dominates:

    python -m gruq search --task smnist --pop 8 --gens 2 --seed 0 --finetune-epochs 1 \
        --chunk-size 1 --scheduler tcp://127.0.0.1:PORT

is run in this process against a cluster of 1, then 2 single-threaded workers
(`dask scheduler` and `dask worker --nthreads 1` processes on 127.0.0.1, the
same as `--scheduler local:N`). The cluster's start is not timed (a cluster
outlives many runs); everything after it is: connecting, installing the
evaluator, each worker loading the task, the search, the store's writes.
speedup = seconds(1 worker) / seconds(2 workers); both fronts must be equal.

On a machine shared with other jobs, two processes need not get twice the
CPU of one: `cpu_ceiling` measures it (iterations of a pure-Python loop in 2
processes against 1, just before the runs): the speed-up cannot exceed it.

For the estimate of how far one run scales it also measures the per-chunk
cost (from the 1-worker run: its seconds / chunks scored) and Dask's per-task
overhead (round trips of empty tasks through the same 2-worker cluster, one
at a time, and a burst of 200 as the search submits them).

Run: `python bench/dask_scaling.py [--pop 8 --gens 2 --task smnist]`; prints
one JSON object with the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make `gruq` importable from the checkout
    sys.path.insert(0, str(ROOT))

from gruq.search import dask_map, run  # noqa: E402
from gruq.search.config import SearchConfig  # noqa: E402


def timed_search(address: str, db: Path, settings: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    cfg = SearchConfig(scheduler=address, **settings)
    started = time.perf_counter()
    result = run.start(db, cfg, progress=False)
    return time.perf_counter() - started, result


def _spin(seconds: float, out: Any) -> None:
    started, n = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        n += 1
    out.put(n)


def cpu_ceiling(seconds: float = 4.0) -> float:
    """Work done by 2 busy processes / by 1, now: the most any 2-worker speed-up can be."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    totals = []
    for k in (1, 2):
        q = ctx.Queue()
        procs = [ctx.Process(target=_spin, args=(seconds, q)) for _ in range(k)]
        for p in procs:
            p.start()
        totals.append(sum(q.get() for _ in procs))
        for p in procs:
            p.join()
    return totals[1] / totals[0]


def _noop(x: int) -> int:
    return x


def task_overhead(address: str, n: int = 200) -> dict[str, float]:
    """Seconds per empty task: one at a time (latency) and a burst of n (the scheduler's throughput)."""
    from distributed import Client

    with Client(address, timeout=10, set_as_default=False) as client:
        client.submit(_noop, -1, pure=False).result()
        started = time.perf_counter()
        for i in range(20):
            client.submit(_noop, i, pure=False).result()
        latency = (time.perf_counter() - started) / 20
        started = time.perf_counter()
        client.gather(client.map(_noop, range(n), pure=False))
        burst = (time.perf_counter() - started) / n
    return {"round_trip_s": latency, "per_task_in_burst_s": burst}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="smnist")
    p.add_argument("--pop", type=int, default=8)
    p.add_argument("--gens", type=int, default=2)
    p.add_argument("--finetune-epochs", type=int, default=1)
    args = p.parse_args(argv)
    settings = {
        "task": args.task,
        "pop": args.pop,
        "gens": args.gens,
        "seed": 0,
        "finetune_epochs": args.finetune_epochs,
        "chunk_size": 1,
    }
    out: dict[str, Any] = {"settings": settings, "cpus": os.cpu_count(), "load_before": os.getloadavg()}
    out["cpu_ceiling"] = cpu_ceiling()
    seconds, results = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            with dask_map._local_cluster(workers) as address:
                _wait_workers(address, workers)
                seconds[workers], results[workers] = timed_search(address, Path(tmp) / f"w{workers}.db", settings)
                if workers == 2:
                    out["overhead"] = task_overhead(address)
            print(f"{workers} worker(s): {seconds[workers]:.1f} s", file=sys.stderr)
    chunks = results[1]["evaluations"]  # chunk size 1: one chunk per genome scored
    per_chunk = seconds[1] / chunks
    overhead = out["overhead"]["per_task_in_burst_s"]
    out.update(
        {
            "seconds_1_worker": seconds[1],
            "seconds_2_workers": seconds[2],
            "speedup": seconds[1] / seconds[2],
            "identical_front": results[1]["front"] == results[2]["front"],
            "chunks_scored": chunks,
            "seconds_per_chunk": per_chunk,
            # the scheduler hands out about 1/overhead tasks per second; W workers each ask
            # for one every per_chunk seconds: beyond per_chunk/overhead workers it is the bottleneck
            "workers_where_overhead_dominates": per_chunk / overhead,
            "chunks_per_generation": math.ceil(args.pop / settings["chunk_size"]),
            "load_after": os.getloadavg(),
        }
    )
    return out


def _wait_workers(address: str, n: int) -> None:
    from distributed import Client

    with Client(address, timeout=10, set_as_default=False) as client:
        client.wait_for_workers(n, timeout=120)


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
