"""The arithmetic floor of population-batched fine-tuning (issue 12's r16 <= 4): can it be reached here?

Per sequence and time step, counting the multiply-adds of the matrix products
(2 flops each; the head's once-per-sequence product is left out):

    float nn.GRU training step:   2 3H (F+H) forward + 2 3H (F+H) weight gradients + 2 3H H hidden gradient
    one genome's QAT step today:  2 K 4H forward ([x|1|h] @ w4) + 2 K 4H (dw4) + 2 3H H (dh),  K = F+1+H rounded to 4

A genome's QAT step needs at least the float step's products (the same weights,
the same gradients), so 16 genomes need at least 16 times the float epoch's
matrix flops whatever the kernels. Measured, in CPU seconds on one thread (CPU
time depends far less on the machine's load than wall time):

    float_epoch_cpu     one float training epoch (as bench/qat_cost.py)
    peak_gflops         this core's float32 GEMM rate (512^3 sgemm, one thread)
    matmul_only_cpu     the 16-genome epoch's matrix products alone, today's shapes
                        and groups (`block_genomes`), on random data
    batched_epoch_cpu   the real 16-genome fine-tuning epoch (`finetune_many`)

and derived: floor_r16_at_peak = 16 x float matrix flops / peak / float_epoch_cpu
(no elementwise work at all, every product at peak), matmul_only_r16 =
matmul_only_cpu / float_epoch_cpu, r16_cpu = batched_epoch_cpu / float_epoch_cpu.

    python bench/qat_floor.py [--tasks smnist har ecg] [--samples N]   (one JSON object)
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

import torch  # noqa: E402
from torch import nn  # noqa: E402

from gruq.errors import GruqError  # noqa: E402

GENOMES = 16


def step_flops(features: int, hidden: int) -> dict[str, int]:
    """Matrix flops per sequence and time step: the float training step, and one genome's QAT step today."""
    F, H = features, hidden
    K = -(-(F + 1 + H) // 4) * 4  # gruq.qat.Population.K
    return {
        "float": 2 * 3 * H * (F + H) * 2 + 2 * 3 * H * H,
        "qat_genome": 2 * K * 4 * H * 2 + 2 * 3 * H * H,
    }


def _cpu(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Least CPU seconds of `repeats` calls of fn."""
    best = float("inf")
    for _ in range(repeats):
        c = time.process_time()
        fn()
        best = min(best, time.process_time() - c)
    return best


def peak_gflops(n: int = 512) -> float:
    """The best of 10 short runs: on a shared machine other processes evict the caches now and then."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return 2 * n**3 * 3 / _cpu(lambda: [a @ b for _ in range(3)], 10) / 1e9


def _matmul_only(P: int, N: int, T: int, F: int, H: int, batches: int, groups: int) -> float:
    """CPU seconds of the epoch's three products a step (gruq.qat's shapes), on random data."""
    K, Np = -(-(F + 1 + H) // 4) * 4, -(-N // 16) * 16
    xh, w4, a = torch.randn(P, Np, K), torch.randn(P, K, 4 * H), torch.empty(P, Np, 4 * H)
    d, whT, g, dw = torch.randn(P, Np, 4 * H), torch.randn(P, 3 * H, H), torch.randn(P, Np, H), torch.zeros(P, K, 4 * H)

    def steps() -> None:
        for _ in range(T):
            torch.bmm(xh, w4, out=a)
            g.baddbmm_(d[..., : 3 * H], whT)
            dw.baddbmm_(xh.transpose(1, 2), d)

    return _cpu(steps) * batches * groups


def qat_floor(task: str, samples: int | None = None, seed: int = 0) -> dict[str, Any]:
    from bench.qat_cost import random_genomes
    from gruq.evaluate import load
    from gruq.fakequant import single_thread
    from gruq.qat import block_genomes
    from gruq.train import FINETUNE_GROUP, _batches, finetune_batch, finetune_many

    data, ckpt = load(task)
    train, H, F, T = data.train, ckpt.model.hidden, ckpt.model.gru.input_size, data.steps
    sequences = len(train) if samples is None else min(samples, len(train))
    N = finetune_batch(sequences)
    batches, P = -(-sequences // N), min(FINETUNE_GROUP, block_genomes(N, H))
    flops = step_flops(F, H)

    def float_epoch() -> None:
        model = copy.deepcopy(ckpt.model).train()
        opt, loss_fn = torch.optim.Adam(model.parameters(), lr=3e-3), nn.CrossEntropyLoss()
        for xb, yb in _batches(train, N, torch.Generator().manual_seed(seed), samples):
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

    pop = random_genomes(GENOMES, seed)
    with single_thread():
        float_epoch()
        f_cpu = _cpu(float_epoch)
        peak = peak_gflops()
        mm = _matmul_only(P, N, T, F, H, batches, -(-GENOMES // P))
        batched = _cpu(lambda: finetune_many(ckpt, pop, train, 1, list(range(GENOMES)), samples=samples), 1)
    seq_steps = sequences * T
    float_flops = flops["float"] * seq_steps
    return {
        "task": task,
        "sequences": sequences,
        "batch": N,
        "steps": T,
        "hidden": H,
        "features": F,
        "genomes_per_group": P,
        "flops_per_sequence_step": flops,
        "float_epoch_cpu": f_cpu,
        "float_gflops": float_flops / f_cpu / 1e9,
        "peak_gflops": peak,
        "matmul_only_cpu": mm,
        "batched_epoch_cpu": batched,
        "floor_r16_at_peak": GENOMES * float_flops / (peak * 1e9) / f_cpu,
        "matmul_only_r16": mm / f_cpu,
        "r16_cpu": batched / f_cpu,
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Arithmetic floor of fine-tuning 16 genomes together.")
    p.add_argument("--tasks", nargs="+", default=["smnist", "har", "ecg"])
    p.add_argument("--samples", type=int, default=None, help="training sequences per epoch (default: all)")
    args = p.parse_args(argv)
    try:
        print(json.dumps({t: qat_floor(t, args.samples) for t in args.tasks}))
    except GruqError as exc:
        print(f"qat_floor: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
