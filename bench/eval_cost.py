"""The cost of scoring genomes, relative to the float model (issue 3's benchmark).

    eval_cost_ratio = population_seconds / (genomes x float_seconds)

population_seconds: time to score the genomes (32 by default) on a task's
validation split, the way the search does (`gruq.evaluate.logits`, then the
argmax); float_seconds: one forward pass of the float torch.nn.GRU classifier
(`GRUClassifier.forward` under `torch.no_grad`) on the same split. Both are
measured in the same process and run, interleaved, `repeats` times each; each
figure is the minimum over its repeats (the least disturbed by other load).
Target: 2 or less. The same ratio in CPU time (all threads of the process) is
reported too: on a busy machine wall times mostly measure the other load.

The genomes are random (2..8 bits per gene, seeded). The model is the task's
checkpoint (assets/<task>.pt) when it exists, otherwise a random model of the
task's shape calibrated on its training data (the cost does not depend on the
weights, only on the shapes). A task whose data cannot be loaded falls back to
random data of the task's usual shape.

Run as a script: `python bench/eval_cost.py [--task vowels] [--genomes 32]
[--repeats 5]` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make `gruq` importable from the checkout
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from gruq.errors import GruqError  # noqa: E402
from gruq.genome import MAX_BITS, MIN_BITS, N_OPS, Genome  # noqa: E402
from gruq.model import Calibration, Checkpoint, GRUClassifier, calibrate  # noqa: E402

# (validation sequences, steps, features, hidden, classes) when a task's data cannot be loaded
SHAPES = {
    "smnist": (1000, 28, 28, 64, 10),
    "vowels": (100, 29, 12, 32, 9),
    "har": (2000, 128, 6, 64, 6),
    "ecg": (1000, 140, 1, 32, 5),
}
GENOMES = 32
REPEATS = 5


def random_genomes(n: int = GENOMES, seed: int = 0) -> list[Genome]:
    rng = np.random.default_rng(seed)
    return [tuple(int(b) for b in rng.integers(MIN_BITS, MAX_BITS + 1, N_OPS)) for _ in range(n)]


def measure(
    task_shape_or_data: Any, model: GRUClassifier, calib: Calibration, genomes: Sequence[Genome], repeats: int = REPEATS
) -> dict[str, Any]:
    """Time the float forward pass and the scoring of `genomes` on the same sequences.

    `task_shape_or_data` is the validation inputs X (N, T, F), or their shape
    (N, T, F) for random inputs in [-1, 1]. Returns float_seconds,
    population_seconds (each the minimum over `repeats` interleaved runs) and
    eval_cost_ratio = population_seconds / (len(genomes) * float_seconds).
    """
    from gruq.evaluate import logits

    if isinstance(task_shape_or_data, np.ndarray):
        X = np.ascontiguousarray(task_shape_or_data, dtype=np.float32)
    else:
        n, t, f = (int(v) for v in task_shape_or_data)
        X = np.random.default_rng(0).uniform(-1, 1, (n, t, f)).astype(np.float32)
    genomes = list(genomes)
    if not genomes or repeats < 1:
        raise GruqError("measure needs at least one genome and one repeat")
    ckpt = Checkpoint(model=model, calibration=calib, meta={})
    x = torch.as_tensor(X)
    model.eval()

    def timed(fn) -> tuple[float, float]:
        """(wall, CPU) seconds of fn(); CPU time counts every thread of the process."""
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - wall, time.process_time() - cpu

    def run_float() -> None:
        with torch.no_grad():
            model(x)

    def run_population() -> None:
        logits(ckpt, genomes, X).argmax(axis=2)

    run_float(), run_population()  # warm up: first-call allocations, lazy imports
    floats, pops = [], []
    for _ in range(repeats):
        floats.append(min((timed(run_float) for _ in range(3)), key=lambda t: t[0]))
        pops.append(timed(run_population))
    float_seconds, population_seconds = min(w for w, _ in floats), min(w for w, _ in pops)
    float_cpu, population_cpu = min(c for _, c in floats), min(c for _, c in pops)
    return {
        "float_seconds": float_seconds,
        "population_seconds": population_seconds,
        "eval_cost_ratio": population_seconds / (len(genomes) * float_seconds),
        # the same in CPU time: less sensitive to other load on the machine
        "float_cpu_seconds": float_cpu,
        "population_cpu_seconds": population_cpu,
        "eval_cost_ratio_cpu": population_cpu / (len(genomes) * float_cpu),
        "genomes": len(genomes),
        "sequences": int(X.shape[0]),
        "steps": int(X.shape[1]),
        "features": int(X.shape[2]),
        "hidden": model.hidden,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
    }


def _task_inputs(task: str) -> tuple[Any, GRUClassifier, Calibration, str]:
    """Validation inputs, model and calibration of `task`; and where the model came from."""
    from gruq import evaluate, tasks

    try:
        data = tasks.load(task)
    except GruqError:
        if task not in SHAPES:
            raise
        data = None
    if data is not None:
        try:
            _, ckpt = evaluate.load(task)
            return data.val.X, ckpt.model, ckpt.calibration, "checkpoint"
        except GruqError:
            torch.manual_seed(0)
            model = GRUClassifier(data.features, data.hidden, data.classes).eval()
            return data.val.X, model, calibrate(model, data.train.X), "random model"
    n, t, f, h, c = SHAPES[task]
    torch.manual_seed(0)
    model = GRUClassifier(f, h, c).eval()
    X = np.random.default_rng(1).uniform(-1, 1, (min(n, 1000), t, f)).astype(np.float32)
    return (n, t, f), model, calibrate(model, X), "random model, random data"


def eval_cost_ratio(task: str, genomes: int = GENOMES, repeats: int = REPEATS, seed: int = 0) -> dict[str, Any]:
    """`measure` on `task`'s validation split with `genomes` random genomes."""
    data, model, calib, source = _task_inputs(task)
    out = measure(data, model, calib, random_genomes(genomes, seed), repeats)
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {"task": task, **out, "model": source, "load_average": load}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Cost of scoring genomes relative to the float model.")
    p.add_argument("--task", default="vowels")
    p.add_argument("--genomes", type=int, default=GENOMES)
    p.add_argument("--repeats", type=int, default=REPEATS)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        print(json.dumps(eval_cost_ratio(args.task, args.genomes, args.repeats)))
    except GruqError as exc:
        print(f"eval_cost: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
