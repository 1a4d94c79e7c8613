"""The fast scoring path's cost per layer: a stacked model against one layer.

    stacked_cost_ratio = seconds(L-layer model) / (seconds(bottom) + (L - 1) x seconds(upper))

bottom: a one-layer model of the task's shape; upper: a one-layer model whose
input is H wide (what layers above the first read: the layer below's h). All
have random weights calibrated on their data (the cost depends on the shapes,
not the weights) and score the same number of random genomes (17 genes per
layer, seeded) on the task's validation split (upper: random sequences of the
same count and length, H features) with `gruq.evaluate.logits`, the way the
search does. Interleaved, `repeats` times each; the minimum CPU time (all
threads of this process) of each is kept. Target: about 1 (each layer costs what
that layer costs alone: stacking adds no overhead).

Run: `python bench/stacked_cost.py [--task vowels] [--layers 2] [--genomes 32] [--repeats 3]`
prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))


def measure(task: str, layers: int, genomes: int, repeats: int) -> dict:
    import torch

    from gruq import tasks
    from gruq.evaluate import logits
    from gruq.model import Checkpoint, GRUClassifier, calibrate

    data = tasks.load(task)
    gen = np.random.default_rng(0)
    H, (N, T, F) = data.hidden, data.val.X.shape
    wide = gen.standard_normal((N, T, H)).astype(np.float32)
    runs = {}
    for name, features, L, X in (
        ("bottom", F, 1, data.val.X),
        ("upper", H, 1, wide),
        ("stacked", F, layers, data.val.X),
    ):
        torch.manual_seed(0)
        model = GRUClassifier(features, H, data.classes, L).eval()
        ckpt = Checkpoint(model, calibrate(model, X), {})
        pop = [tuple(int(b) for b in gen.integers(2, 9, 17 * L)) for _ in range(genomes)]
        runs[name] = (ckpt, pop, X)
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, (ckpt, pop, X) in runs.items():
            start = time.process_time()
            logits(ckpt, pop, X)
            best[name] = min(best[name], time.process_time() - start)
    return {
        "task": data.name,
        "layers": layers,
        "genomes": genomes,
        "sequences": N,
        "cpu_seconds": {k: round(v, 3) for k, v in best.items()},
        "stacked_cost_ratio": round(best["stacked"] / (best["bottom"] + (layers - 1) * best["upper"]), 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="vowels")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--genomes", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    print(json.dumps(measure(a.task, a.layers, a.genomes, a.repeats)))


if __name__ == "__main__":
    main()
