"""Float training and quantization-aware fine-tuning, both deterministic for a seed."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from gruq.errors import GruqError
from gruq.fakequant import Simulation, single_thread
from gruq.genome import Genome, validate
from gruq.model import Checkpoint, GRUClassifier, calibrate
from gruq.tasks.base import Split, Task

Progress = Callable[[int, int, dict], None]  # (epoch, epochs, metrics)

FINETUNE_LR = 3e-3  # Adam, cosine decay over the epochs (measured better than 1e-3 on smnist and ecg)
FINETUNE_BATCH = 128  # at most: small training sets get smaller batches (see finetune_batch)


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
) -> Checkpoint:
    """Train the float GRU; keep the epoch with the best validation accuracy.

    Adam with a cosine learning-rate decay and gradient clipping: recurrent
    nets on short budgets are sensitive to both.
    """
    epochs, batch = epochs or task.epochs, batch or task.batch
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = GRUClassifier(task.features, task.hidden, task.classes)
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
    """Quantization-aware fine-tuning of a copy of the float model under `genome`.

    Straight-through rounding through the exact simulation; activation ranges
    stay those calibrated on the float model (recalibrating after fine-tuning
    measured worse), weight scales follow the weights. Deterministic for a seed.
    Adam at `lr` with a cosine decay; `batch` None: `finetune_batch`.

    `samples` caps the sequences seen per epoch: each epoch trains on the first
    `samples` of its seeded shuffle (a different subset every epoch), which
    bounds the cost on large training splits. None (the default), or a value
    of at least the split's size, trains on the whole split, as before.

    `select` (a held-out split, never the one reported): keep the weights of
    the epoch, 0 (no fine-tuning) to `epochs`, with the best quantized
    accuracy on it (ties: the later epoch). None (the default): the last epoch.
    """
    genome = validate(genome)
    if samples is not None and samples < 1:
        raise GruqError(f"fine-tuning samples per epoch must be at least 1; got {samples}")
    if epochs <= 0:
        return ckpt
    if batch is None:
        batch = finetune_batch(len(train) if samples is None else min(samples, len(train)))
    with single_thread():
        model = _qat(ckpt, genome, train, epochs, seed, lr, batch, progress, samples, select)
    return Checkpoint(model=model, calibration=ckpt.calibration, meta={**ckpt.meta, "finetuned": list(genome)})


def finetune_batch(sequences: int) -> int:
    """Default fine-tuning batch for `sequences` per epoch: FINETUNE_BATCH, but at
    least 8 steps per epoch (a 240-sequence training set gets batches of 30), and
    at least 16 sequences per batch."""
    return max(1, min(FINETUNE_BATCH, max(16, -(-sequences // 8))))


def _qat(
    ckpt: Checkpoint,
    genome: Genome,
    train: Split,
    epochs: int,
    seed: int,
    lr: float,
    batch: int,
    progress: Progress | None,
    samples: int | None = None,
    select: Split | None = None,
) -> GRUClassifier:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(ckpt.model)
    keep = _BestEpoch(ckpt, genome, select) if select is not None else None
    if keep:
        keep.offer(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        total, seen = 0.0, 0
        for xb, yb in _batches(train, batch, gen, samples):
            sim = Simulation(model, ckpt.calibration, [genome], ste=True)
            logits = (sim.forward(xb) * sim.logit_scale())[0]
            loss = loss_fn(logits, yb)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total += float(loss.detach()) * len(yb)
            seen += len(yb)
        sched.step()
        metrics = {"loss": total / seen}
        if keep:
            metrics["select"] = keep.offer(model)
        if progress:
            progress(epoch + 1, epochs, metrics)
    if keep:
        model.load_state_dict(keep.state)
    model.eval()
    return model


class _BestEpoch:
    """The weights with the best quantized accuracy on a held-out split so far."""

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
