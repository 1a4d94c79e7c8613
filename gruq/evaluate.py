"""Scoring genomes: accuracy, size and BOPs; verification against the engine.

`Evaluator` is what the search calls: picklable (it holds only names and
numbers, loading the task and checkpoint lazily in whichever process uses it)
and it scores a batch of genomes in one simulated forward pass per chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from gruq import engine, tasks
from gruq.errors import GruqError
from gruq.fakequant import Simulation, single_thread
from gruq.genome import Genome, ModelShape, bops, expand, size_bytes, validate
from gruq.model import Checkpoint, checkpoint_path, load_checkpoint
from gruq.scheme import build
from gruq.tasks.base import Split, Task
from gruq.train import finetune_many, seed_for

CHUNK = 64  # genomes per Simulation; its fast path then works in cache-sized blocks (bench/eval_cost.py)


@lru_cache(maxsize=8)
def load(task: str, checkpoint: str | None = None) -> tuple[Task, Checkpoint]:
    """A task's data and float checkpoint, cached per process; refuses a checkpoint
    made for another input width or class count. The hidden size and layer count are the model's."""
    data = tasks.load(task)
    path = Path(checkpoint) if checkpoint else checkpoint_path(task)
    ckpt = load_checkpoint(task, path)
    m = ckpt.model
    if (m.gru.input_size, m.head.out_features) != (data.features, data.classes):
        raise GruqError(
            f"checkpoint {path} takes {m.gru.input_size} features and {m.head.out_features} classes; "
            f"task {data.name} has {data.features} and {data.classes}"
        )
    return replace(data, hidden=m.hidden, layers=m.layers), ckpt


@torch.no_grad()
def logits(ckpt: Checkpoint, genomes: Sequence[Genome], X: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """Integer logits (P, N, C) of the simulation, `chunk` genomes per Simulation."""
    x = torch.as_tensor(X)
    out = [
        Simulation(ckpt.model, ckpt.calibration, genomes[i : i + chunk]).forward(x)
        for i in range(0, len(genomes), chunk)
    ]
    return torch.cat(out).numpy().astype(np.int64)


def accuracies(ckpt: Checkpoint, genomes: Sequence[Genome], split: Split) -> list[float]:
    """Accuracy of each genome on `split`, post-training quantization."""
    if not genomes:
        return []
    pred = logits(ckpt, list(genomes), split.X).argmax(axis=2)
    return [float(v) for v in (pred == split.y).mean(axis=1)]


SELECT = ("val",)  # splits fine-tuning may pick its best epoch on


def tuned(
    ckpt: Checkpoint,
    genome: Genome,
    task: Task,
    epochs: int,
    seed: int,
    samples: int | None = None,
    select: str | None = None,
) -> Checkpoint:
    """The checkpoint fine-tuned for `genome` (itself when epochs is 0); `samples`
    caps the training sequences per epoch; `select` ("val") keeps the epoch with
    the best validation accuracy (see `gruq.train.finetune_many`). The same
    model, bit for bit, as `tuned_many` gives this genome in any group."""
    return tuned_many(ckpt, [genome], task, epochs, seed, samples, select)[0]


def tuned_many(
    ckpt: Checkpoint,
    genomes: Sequence[Genome],
    task: Task,
    epochs: int,
    seed: int,
    samples: int | None = None,
    select: str | None = None,
) -> list[Checkpoint]:
    """`tuned` for many genomes, fine-tuned together (population-batched): each
    genome trains on its own seed, `seed_for(genome, seed)`, so its model depends
    only on the genome, the run seed and the settings, never on the group."""
    if select is not None and select not in SELECT:
        raise GruqError(f"fine-tuning selects its epoch on {' or '.join(SELECT)}, not {select!r}")
    genomes = [validate(g, ckpt.model.layers) for g in genomes]
    if epochs <= 0:
        return [ckpt for _ in genomes]
    return finetune_many(
        ckpt,
        genomes,
        task.train,
        epochs,
        [seed_for(g, seed) for g in genomes],
        samples=samples,
        select=task.split(select) if select else None,
    )


@dataclass
class Evaluator:
    """Validation (or other split) accuracy of genomes for one task."""

    task: str
    split: str = "val"
    finetune_epochs: int = 0
    seed: int = 0
    checkpoint: str | None = None
    finetune_samples: int | None = None  # training sequences per fine-tuning epoch (None: all)
    finetune_select: str | None = None  # "val": keep the fine-tuning epoch best on validation
    _shape: ModelShape | None = field(default=None, repr=False)

    def _load(self) -> tuple[Task, Checkpoint]:
        return load(self.task, self.checkpoint)

    @property
    def shape(self) -> ModelShape:
        if self._shape is None:
            self._shape = self._load()[0].shape
        return self._shape

    def accuracy(self, genomes: Sequence[Genome]) -> list[float]:
        data, ckpt = self._load()
        split = data.split(self.split)
        if self.finetune_epochs <= 0:
            return accuracies(ckpt, genomes, split)
        models = tuned_many(
            ckpt, genomes, data, self.finetune_epochs, self.seed, self.finetune_samples, self.finetune_select
        )
        # one small scoring per fine-tuned model: on one thread (the same accuracies), as the fine-tuning
        # ran; a thread pool per model cost more CPU and wall time than it saved (measured on vowels,
        # smnist and ecg at load 14-17, issue 12's fine-tuned launch)
        with single_thread():
            return [accuracies(m, [g], split)[0] for m, g in zip(models, genomes)]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_shape": None}


def evaluate(
    task: str,
    genome: Genome,
    split: str = "test",
    finetune_epochs: int = 0,
    seed: int = 0,
    checkpoint: str | None = None,
    finetune_samples: int | None = None,
    finetune_select: str | None = None,
) -> dict:
    """The `gruq evaluate` record for one genome: the model the options name
    (`gruq.scheme_model`), its accuracy on `split` with the number of sequences
    and a 95% Wilson interval, its size and BOPs."""
    from gruq.scheme_model import from_options
    from gruq.stats import wilson_acc

    data, _ = load(task, checkpoint)
    genome = expand(genome, data.layers)  # 17 genes are used for every layer
    part = data.split(split)  # an unknown split fails before any fine-tuning
    if finetune_select is not None and finetune_select not in SELECT:
        raise GruqError(f"fine-tuning selects its epoch on {' or '.join(SELECT)}, not {finetune_select!r}")
    recipe = from_options(task, genome, checkpoint, finetune_epochs, seed, finetune_samples, finetune_select)
    accuracy = recipe.accuracy(split)
    return {
        "task": data.name,
        "bits": list(genome),
        "split": split,
        "accuracy": accuracy,
        "sequences": len(part),
        "ci95": list(wilson_acc(accuracy, len(part))),
        "model": recipe.label,
        "size_bytes": size_bytes(genome, data.shape),
        "bops": bops(genome, data.shape),
    }


def verify(
    task: str,
    genome: Genome,
    split: str = "test",
    checkpoint: str | None = None,
    chunk: int = 256,
    progress=None,
    model=None,
) -> dict:
    """Run the integer engine and the simulation on a whole split; compare every code.

    Codes are compared for all 17 operators of every layer at every step of every sequence.
    `model`: the scheme's model (a `gruq.scheme_model.SchemeModel`, e.g. fine-tuned);
    default: post-training quantization of the checkpoint.
    """
    data, ckpt = load(task, checkpoint)
    genome = expand(genome, data.layers)
    if model is not None:
        ckpt = model.build()
    X = data.split(split).X
    im = build(genome, ckpt.model, ckpt.calibration)
    sim = Simulation(ckpt.model, ckpt.calibration, [genome])
    bad_codes = bad_logits = 0
    for i in range(0, len(X), chunk):
        xb = X[i : i + chunk]
        ref_logits, ref_codes = engine.run(im, im.quantize_input(xb), trace=True)
        with torch.no_grad():
            sim_logits, sim_codes = sim.forward(torch.as_tensor(xb), trace=True)
        bad_logits += int((sim_logits[0].numpy() != ref_logits).any(axis=1).sum())
        bad_codes += sum(int((sim_codes[n][0].numpy() != ref_codes[n]).sum()) for n in ref_codes)
        if progress:
            progress(min(i + chunk, len(X)), len(X))
    return {
        "model": model.label if model is not None else "post-training",
        "identical": bad_codes == 0 and bad_logits == 0,
        "sequences": len(X),
        "mismatched_codes": bad_codes,
        "mismatched_logits": bad_logits,
    }


def finetune_front(
    task: str,
    genomes: Sequence[Genome],
    epochs: int,
    seed: int = 0,
    samples: int | None = None,
    checkpoint: str | None = None,
) -> list[float]:
    """Validation accuracy of each genome after `epochs` of fine-tuning (the final front's option),
    the whole front fine-tuned together; `samples` caps the training sequences per epoch."""
    return Evaluator(task, "val", epochs, seed, checkpoint, finetune_samples=samples).accuracy(genomes)
