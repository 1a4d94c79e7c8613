"""Float training and quantization-aware fine-tuning, both deterministic for a seed."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from gruq.errors import GruqError
from gruq.fakequant import Simulation, single_thread
from gruq.genome import Genome, validate
from gruq.model import Checkpoint, GRUClassifier, calibrate
from gruq.qat import Population, block_genomes
from gruq.tasks.base import Split, Task

Progress = Callable[[int, int, dict], None]  # (epoch, epochs, metrics)

FINETUNE_LR = 3e-3  # Adam, cosine decay over the epochs (measured better than 1e-3 on smnist and ecg)
FINETUNE_BATCH = 128  # at most: small training sets get smaller batches (see finetune_batch)
FINETUNE_GROUP = 16  # at most, genomes fine-tuned together (any grouping gives the same weights: speed, memory)


def _batches(
    split: Split, batch: int, gen: torch.Generator, samples: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled mini-batches of one epoch; with `samples`, only the first `samples`
    sequences of this epoch's permutation (a fresh seeded subset each epoch)."""
    order = torch.randperm(len(split), generator=gen)
    if samples is not None:
        order = order[:samples]
    X, y = torch.as_tensor(split.X), torch.as_tensor(split.y)
    for i in range(0, len(order), batch):
        idx = order[i : i + batch]
        yield X[idx], y[idx]


@torch.no_grad()
def float_accuracy(model: GRUClassifier, split: Split) -> float:
    logits = model(torch.as_tensor(split.X))
    return float((logits.argmax(1).numpy() == split.y).mean())


def train_float(
    task: Task,
    epochs: int | None = None,
    seed: int = 0,
    lr: float = 3e-3,
    batch: int | None = None,
    progress: Progress | None = None,
    layers: int = 1,
) -> Checkpoint:
    """Train the float GRU (`layers` stacked layers); keep the epoch with the best validation accuracy.

    Adam with a cosine learning-rate decay and gradient clipping: recurrent
    nets on short budgets are sensitive to both.
    """
    epochs, batch = epochs or task.epochs, batch or task.batch
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = GRUClassifier(task.features, task.hidden, task.classes, layers)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    loss_fn = nn.CrossEntropyLoss()
    best, best_acc, start = copy.deepcopy(model.state_dict()), -1.0, time.perf_counter()
    for epoch in range(epochs):
        model.train()
        for xb, yb in _batches(task.train, batch, gen):
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        sched.step()
        model.eval()
        acc = float_accuracy(model, task.val)
        if acc > best_acc:
            best, best_acc = copy.deepcopy(model.state_dict()), acc
        if progress:
            progress(epoch + 1, epochs, {"val": acc})
    model.load_state_dict(best)
    model.eval()
    meta = {
        "task": task.name,
        "layers": layers,
        "epochs": epochs,
        "seed": seed,
        "seconds": round(time.perf_counter() - start, 1),
        "val_accuracy": float_accuracy(model, task.val),
        "test_accuracy": float_accuracy(model, task.test),
    }
    return Checkpoint(model=model, calibration=calibrate(model, task.train.X), meta=meta)


def finetune(
    ckpt: Checkpoint,
    genome: Genome,
    train: Split,
    epochs: int,
    seed: int = 0,
    lr: float = FINETUNE_LR,
    batch: int | None = None,
    progress: Progress | None = None,
    samples: int | None = None,
    select: Split | None = None,
) -> Checkpoint:
    """Quantization-aware fine-tuning of a copy of the float model under `genome`:
    `finetune_many` for one genome (the same weights as in any group), with its
    progress reported as numbers rather than lists."""
    report = None
    if progress:
        report = lambda e, n, m: progress(e, n, {k: v[0] for k, v in m.items()})  # noqa: E731
    return finetune_many(ckpt, [genome], train, epochs, [seed], lr, batch, report, samples, select)[0]


def finetune_many(
    ckpt: Checkpoint,
    genomes: Sequence[Genome],
    train: Split,
    epochs: int,
    seeds: Sequence[int],
    lr: float = FINETUNE_LR,
    batch: int | None = None,
    progress: Progress | None = None,
    samples: int | None = None,
    select: Split | None = None,
    group: int | None = None,
) -> list[Checkpoint]:
    """Quantization-aware fine-tuning of one copy of the float model per genome, `group` genomes at a time
    (default: as many as keep a step in cache, `gruq.qat.block_genomes`, at most FINETUNE_GROUP).

    Genome i trains its own copy of the weights with its own Adam state on its
    own seeded shuffle (`seeds[i]`): straight-through rounding through the
    quantized cell (`gruq.qat`, bit for bit the same weights whether a genome
    is trained alone or with any others, so the grouping is only a matter of
    speed). Activation ranges stay those calibrated on the float model
    (recalibrating after fine-tuning measured worse); weight scales follow the
    weights. Adam at `lr` with a cosine decay over the epochs and gradient
    clipping at norm 1; `batch` None: `finetune_batch`. One torch thread.

    `samples` caps the sequences seen per epoch: each epoch trains on the first
    `samples` of its seeded shuffle (a different subset every epoch), which
    bounds the cost on large training splits. None, or a value of at least the
    split's size, trains on the whole split.

    `select` (a held-out split, never the one reported): keep the weights of
    the epoch, 0 (no fine-tuning) to `epochs`, with the best quantized accuracy
    on it, computed exactly (ties: the later epoch). None: the last epoch.

    `progress(epoch, epochs, metrics)` after each epoch of each group, with
    per-genome lists: "loss" (mean training loss) and, with `select`, "select".
    Returns one Checkpoint per genome, in order; with 0 epochs, `ckpt` itself.
    """
    genomes = [validate(g, ckpt.model.layers) for g in genomes]
    if len(seeds) != len(genomes):
        raise GruqError(f"fine-tuning needs one seed per genome; got {len(seeds)} for {len(genomes)}")
    if samples is not None and samples < 1:
        raise GruqError(f"fine-tuning samples per epoch must be at least 1; got {samples}")
    if epochs <= 0:
        return [ckpt for _ in genomes]
    if batch is None:
        batch = finetune_batch(len(train) if samples is None else min(samples, len(train)))
    group = group or min(FINETUNE_GROUP, block_genomes(batch, ckpt.model.hidden))
    out: list[Checkpoint] = []
    with single_thread():
        for i in range(0, len(genomes), group):
            models = _qat(
                ckpt, genomes[i : i + group], train, epochs, seeds[i : i + group], lr, batch, progress, samples, select
            )
            out += [
                Checkpoint(model=m, calibration=ckpt.calibration, meta={**ckpt.meta, "finetuned": list(g)})
                for m, g in zip(models, genomes[i : i + group])
            ]
    return out


def finetune_batch(sequences: int) -> int:
    """Default fine-tuning batch for `sequences` per epoch: FINETUNE_BATCH, but at
    least 8 steps per epoch (a 240-sequence training set gets batches of 30), and
    at least 16 sequences per batch."""
    return max(1, min(FINETUNE_BATCH, max(16, -(-sequences // 8))))


def _qat(
    ckpt: Checkpoint,
    genomes: list[Genome],
    train: Split,
    epochs: int,
    seeds: Sequence[int],
    lr: float,
    batch: int,
    progress: Progress | None,
    samples: int | None,
    select: Split | None,
) -> list[GRUClassifier]:
    """One group: every genome steps on its own batch of its own shuffle, all in one batched pass."""
    pop = Population(ckpt.model, ckpt.calibration, genomes)
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    keep = [_BestEpoch(ckpt, g, select) for g in genomes] if select is not None else None
    if keep:
        for p, k in enumerate(keep):
            k.offer(pop.model(p))
    for epoch in range(epochs):
        rate = lr * (1 + math.cos(math.pi * epoch / epochs)) / 2  # CosineAnnealingLR, stepped per epoch
        total, seen = torch.zeros(len(genomes), dtype=torch.float64), 0
        for parts in zip(*(_batches(train, batch, g, samples) for g in gens)):
            X = torch.stack([xb for xb, _ in parts])
            y = torch.stack([yb for _, yb in parts])
            total += pop.step(X, y, rate).to(torch.float64) * y.shape[1]
            seen += y.shape[1]
        metrics: dict = {"loss": (total / seen).tolist()}
        if keep:
            metrics["select"] = [k.offer(pop.model(p)) for p, k in enumerate(keep)]
        if progress:
            progress(epoch + 1, epochs, metrics)
    models = [pop.model(p) for p in range(len(genomes))]
    if keep:
        for m, k in zip(models, keep):
            m.load_state_dict(k.state)
    return models


class _BestEpoch:
    """The weights with the best quantized accuracy on a held-out split so far (exact path)."""

    def __init__(self, ckpt: Checkpoint, genome: Genome, split: Split) -> None:
        self.calibration, self.genome, self.split = ckpt.calibration, genome, split
        self.best = -1.0
        self.state: dict = {}

    @torch.no_grad()
    def offer(self, model: GRUClassifier) -> float:
        model.eval()
        sim = Simulation(model, self.calibration, [self.genome])
        pred = sim.forward(torch.as_tensor(self.split.X))[0].argmax(dim=1).numpy()
        acc = float((pred == self.split.y).mean())
        if acc >= self.best:
            self.best, self.state = acc, copy.deepcopy(model.state_dict())
        return acc


def seed_for(genome: Genome, seed: int) -> int:
    """A per-genome fine-tuning seed: same genome and run seed, same result."""
    return int(np.random.SeedSequence([seed, *genome]).generate_state(1)[0])
