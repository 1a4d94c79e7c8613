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
    product_gops        this core's product rate (G multiply-adds x 2 per second, one
                        thread, best of 10 runs) in float32, bfloat16, float16 (torch.mm)
                        and int8 (torch._int_mm, int32 accumulation: exact), at three
                        shapes m x k x n: "peak" 512^3; "step" N x (F+H) x 3H, one
                        genome's forward product of a time step (the recurrence makes
                        a step wait for the previous one); "sequence" (N T) x (F+H) x 3H,
                        every step's product in one call. A shape the kernel refuses
                        is reported as "refused: <its error>".
    matmul_only_cpu     the 16-genome epoch's matrix products alone, today's shapes
                        and groups (`block_genomes`), on random data
    batched_epoch_cpu   the real 16-genome fine-tuning epoch (`finetune_many`)

and derived: floor_r16_at_peak = 16 x float matrix flops / peak / float_epoch_cpu
(no elementwise work at all, every product at peak), matmul_only_r16 =
matmul_only_cpu / float_epoch_cpu, r16_cpu = batched_epoch_cpu / float_epoch_cpu.

Lower precision. The forward product multiplies integer codes by integer weight
codes, so int8 products with int32 sums could compute it exactly; the backward
products multiply a float gradient by codes and must stay float32 to give the
float32 gradients. Splitting the float step's flops (`flop_split`) into forward
2 3H (F+H) and backward 2 3H (F+H) + 2 3H H:

    floor_r16_int8_forward = 16 x (forward flops / int8 rate + backward flops / peak) / float_epoch_cpu

with the best int8 rate measured at any of the three shapes (a floor: the most
favourable rate). bfloat16 and float16 would round the gradients; their rates
are reported to show whether they could buy speed at all.
Efficiency: peak_fraction_for_r16_4 = floor_r16_at_peak / 4, the fraction of the
float32 peak the whole 16-genome epoch would have to sustain to reach r16 = 4;
float_epoch_peak_fraction = float_gflops / peak, what the float nn.GRU epoch
itself sustains.

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
DTYPES = ("float32", "bfloat16", "float16", "int8")
OPS_PER_RUN = 3 * 2 * 512**3  # one timed run: three 512^3 products, or as many ops of a smaller shape


def flop_split(features: int, hidden: int) -> dict[str, int]:
    """The float training step's matrix flops per sequence and time step, forward and backward.

    Forward [x|h] @ W (3H gate columns); backward the weight gradients (the same size)
    plus the hidden-state gradient through W_hh."""
    F, H = features, hidden
    return {"forward": 2 * 3 * H * (F + H), "backward": 2 * 3 * H * (F + H) + 2 * 3 * H * H}


def step_flops(features: int, hidden: int) -> dict[str, int]:
    """Matrix flops per sequence and time step: the float training step, and one genome's QAT step today."""
    F, H = features, hidden
    K = -(-(F + 1 + H) // 4) * 4  # gruq.qat.Population.K
    return {
        "float": sum(flop_split(F, H).values()),
        "qat_genome": 2 * K * 4 * H * 2 + 2 * 3 * H * H,
    }


def floor_r16(
    forward_flops: float,
    backward_flops: float,
    forward_gops: float,
    backward_gops: float,
    float_epoch_cpu: float,
    genomes: int = GENOMES,
) -> float:
    """Float epochs that `genomes` genomes' products take at the given rates (an epoch's flops, G ops/s)."""
    return genomes * (forward_flops / forward_gops + backward_flops / backward_gops) / 1e9 / float_epoch_cpu


def _cpu(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Least CPU seconds of `repeats` calls of fn."""
    best = float("inf")
    for _ in range(repeats):
        c = time.process_time()
        fn()
        best = min(best, time.process_time() - c)
    return best


def _product(dtype: str, m: int, k: int, n: int) -> Callable[[], Any]:
    """One m x k x n product in dtype: torch.mm, or torch._int_mm (int8 in, int32 out) for int8."""
    if dtype == "int8":
        ai, bi = torch.randint(-128, 128, (m, k), dtype=torch.int8), torch.randint(-128, 128, (k, n), dtype=torch.int8)
        return lambda: torch._int_mm(ai, bi)
    dt = getattr(torch, dtype)
    a, b = torch.randn(m, k).to(dt), torch.randn(k, n).to(dt)
    return lambda: torch.mm(a, b)


def product_gops(dtype: str, m: int, k: int, n: int, runs: int = 10) -> float | str:
    """G ops/s (2 per multiply-add) of an m x k x n product in dtype, or "refused: ..." if the kernel refuses it.

    The best of `runs` runs of about OPS_PER_RUN ops each (small shapes repeated): on a
    shared machine other processes evict the caches now and then."""
    try:
        fn = _product(dtype, m, k, n)
        fn()
    except (RuntimeError, NotImplementedError) as exc:
        return f"refused: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    ops = 2 * m * k * n
    calls = max(1, round(OPS_PER_RUN / ops))

    def run() -> None:
        for _ in range(calls):
            fn()

    return ops * calls / _cpu(run, runs) / 1e9


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
        shapes = {"peak": (512, 512, 512), "step": (N, F + H, 3 * H), "sequence": (N * T, F + H, 3 * H)}
        rates = {dt: {name: product_gops(dt, *mkn) for name, mkn in shapes.items()} for dt in DTYPES}
        peak = rates["float32"]["peak"]
        if not isinstance(peak, float):  # float32 products are the floor's unit: without them there is no floor
            raise GruqError(f"float32 products refused here: {peak}")
        mm = _matmul_only(P, N, T, F, H, batches, -(-GENOMES // P))
        batched = _cpu(lambda: finetune_many(ckpt, pop, train, 1, list(range(GENOMES)), samples=samples), 1)
    seq_steps = sequences * T
    float_flops = flops["float"] * seq_steps
    split = {part: f * seq_steps for part, f in flop_split(F, H).items()}
    int8 = [r for r in rates["int8"].values() if isinstance(r, float)]
    floor_at_peak = floor_r16(split["forward"], split["backward"], peak, peak, f_cpu)
    return {
        "task": task,
        "sequences": sequences,
        "batch": N,
        "steps": T,
        "hidden": H,
        "features": F,
        "genomes_per_group": P,
        "flops_per_sequence_step": flops,
        "float_flops_per_sequence_step": flop_split(F, H),
        "product_shapes": {name: list(mkn) for name, mkn in shapes.items()},
        "product_gops": rates,
        "float_epoch_cpu": f_cpu,
        "float_gflops": float_flops / f_cpu / 1e9,
        "peak_gflops": peak,
        "matmul_only_cpu": mm,
        "batched_epoch_cpu": batched,
        "floor_r16_at_peak": floor_at_peak,
        "floor_r16_int8_forward": (
            floor_r16(split["forward"], split["backward"], max(int8), peak, f_cpu) if int8 else None
        ),
        "peak_fraction_for_r16_4": floor_at_peak / 4,
        "float_epoch_peak_fraction": float_flops / f_cpu / 1e9 / peak,
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
