"""The cost of quantization-aware fine-tuning, relative to float training (issue 12's benchmark).

    qat_cost_ratio         = seconds of one fine-tuning epoch of one genome / float_epoch_seconds
    qat_batched_cost_ratio = seconds of one epoch fine-tuning `genomes` (16) together / float_epoch_seconds

float_epoch_seconds: one training epoch of the float model, torch.nn.GRU
(`GRUClassifier`): forward, cross-entropy, backward, gradient clipping and an
Adam step per mini-batch. The fine-tuning epochs are `gruq.train.finetune_many`
exactly as the search and `evaluate --finetune-epochs` call it (no epoch
selection, so no scoring; the 16 genomes in cache-sized blocks of
`gruq.qat.block_genomes`, as the search fine-tunes a chunk). All three run in the same process and run, on the
same training sequences (the task's training split, or its first `samples`
sequences of each epoch's shuffle), with the same batch size
(`gruq.train.finetune_batch`) and one torch thread (what fine-tuning uses).
The float epoch is timed `repeats` times interleaved with the others and the
minimum kept; each fine-tuning figure is the minimum over `repeats` runs too.
The same ratios in CPU time are reported: on a busy machine wall times mostly
measure the other load.

The model is the task's checkpoint (assets/<task>.pt), or `checkpoint` (a
stacked or imported one: both epochs then train that model, L layers); the
genomes are random (2..8 bits per gene, 17 per layer, seeded), the first of
them is the single genome.

Run as a script: `python bench/qat_cost.py [--task smnist] [--checkpoint PATH]
[--genomes 16] [--samples N] [--repeats 1]` prints one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make `gruq` importable from the checkout
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from gruq.errors import GruqError  # noqa: E402
from gruq.genome import MAX_BITS, MIN_BITS, N_OPS, Genome  # noqa: E402

GENOMES = 16
REPEATS = 1


def random_genomes(n: int, seed: int = 0, layers: int = 1) -> list[Genome]:
    rng = np.random.default_rng(seed)
    return [tuple(int(b) for b in rng.integers(MIN_BITS, MAX_BITS + 1, N_OPS * layers)) for _ in range(n)]


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall, CPU) seconds of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def qat_cost(
    task: str,
    genomes: int = GENOMES,
    samples: int | None = None,
    repeats: int = REPEATS,
    seed: int = 0,
    checkpoint: str | None = None,
) -> dict[str, Any]:
    """Time a float epoch, a fine-tuning epoch of one genome and of `genomes` together, on `task`
    (its own model, or `checkpoint`'s)."""
    from gruq.evaluate import load
    from gruq.fakequant import single_thread
    from gruq.train import _batches, finetune_batch, finetune_many

    if genomes < 1 or repeats < 1:
        raise GruqError("qat_cost needs at least one genome and one repeat")
    data, ckpt = load(task, checkpoint)
    train = data.train
    sequences = len(train) if samples is None else min(samples, len(train))
    batch = finetune_batch(sequences)
    pop = random_genomes(genomes, seed, ckpt.model.layers)

    def float_epoch() -> None:
        model = copy.deepcopy(ckpt.model).train()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        loss_fn = nn.CrossEntropyLoss()
        for xb, yb in _batches(train, batch, torch.Generator().manual_seed(seed), samples):
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

    def qat(gs: list[Genome]) -> Callable[[], Any]:
        return lambda: finetune_many(ckpt, gs, train, 1, list(range(len(gs))), samples=samples)

    with single_thread():
        float_epoch(), qat(pop[:1])()  # warm up: first-call allocations, lazy imports, table caches
        floats, singles, groups = [], [], []
        for _ in range(repeats):
            floats.append(min((_timed(float_epoch) for _ in range(3)), key=lambda t: t[0]))
            singles.append(_timed(qat(pop[:1])))
            floats.append(_timed(float_epoch))
            groups.append(_timed(qat(pop)))
    f_wall, f_cpu = min(w for w, _ in floats), min(c for _, c in floats)
    s_wall, s_cpu = min(w for w, _ in singles), min(c for _, c in singles)
    g_wall, g_cpu = min(w for w, _ in groups), min(c for _, c in groups)
    try:
        load_avg = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load_avg = None
    return {
        "task": task,
        "qat_cost_ratio": s_wall / f_wall,
        "qat_batched_cost_ratio": g_wall / f_wall,
        "qat_cost_ratio_cpu": s_cpu / f_cpu,
        "qat_batched_cost_ratio_cpu": g_cpu / f_cpu,
        "float_epoch_seconds": f_wall,
        "qat_epoch_seconds": s_wall,
        "qat_batched_epoch_seconds": g_wall,
        "genomes": genomes,
        "sequences": sequences,
        "batch": batch,
        "steps": data.steps,
        "hidden": ckpt.model.hidden,
        "layers": ckpt.model.layers,
        "checkpoint": checkpoint,
        "threads": 1,
        "repeats": repeats,
        "load_average": load_avg,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Cost of a quantization-aware fine-tuning epoch relative to float.")
    p.add_argument("--task", default="smnist")
    p.add_argument("--checkpoint", default=None, help="the float model (a stacked one, say); default the task's")
    p.add_argument("--genomes", type=int, default=GENOMES)
    p.add_argument("--samples", type=int, default=None, help="training sequences per epoch (default: all)")
    p.add_argument("--repeats", type=int, default=REPEATS)
    args = p.parse_args(argv)
    try:
        print(json.dumps(qat_cost(args.task, args.genomes, args.samples, args.repeats, checkpoint=args.checkpoint)))
    except GruqError as exc:
        print(f"qat_cost: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
