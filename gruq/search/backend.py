"""Which evaluator scores genomes: the search knows its interface, not the model.

By default `gruq.evaluate.Evaluator` (post-training quantization, optional
fine-tuning per candidate) and `gruq.evaluate.finetune_front`, imported only
when a run needs them.

Test hook: if the environment variable GRUQ_EVALUATOR holds "module:callable",
that callable replaces `gruq.evaluate.Evaluator` (same signature:
`(task, split="val", finetune_epochs=0, seed=0)`), and the front is fine-tuned
by the evaluator's own `finetune_front(genomes, epochs)` if it has one. The
tests use it to run `python -m gruq search` as a real process with an instant,
synthetic evaluator. It is not meant for users.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gruq.errors import GruqError
from gruq.genome import Genome, ModelShape

ENV_HOOK = "GRUQ_EVALUATOR"

Finetune = Callable[[Sequence[Genome], int], list[float]]


class Evaluator(Protocol):
    """What the search needs from whatever scores genomes.

    `accuracy` must be deterministic and must not depend on which genomes
    share a batch: that is what makes runs reproducible and independent of
    the number of workers. It must be picklable to run in a process pool.
    """

    shape: ModelShape

    def accuracy(self, genomes: Sequence[Genome]) -> list[float]:
        """Validation accuracy (0..1) of each genome, scored together."""
        ...


@dataclass
class Backend:
    evaluator: Evaluator
    finetune: Finetune | None = None  # accuracies after fine-tuning the final front


def default_backend(cfg: Any) -> Backend:
    """The backend for a `SearchConfig`: the test hook if set, else gruq.evaluate."""
    spec = os.environ.get(ENV_HOOK)
    if spec:
        factory = _import(spec)
        evaluator = factory(cfg.task, split="val", finetune_epochs=cfg.finetune_epochs, seed=cfg.seed)
        return Backend(evaluator, getattr(evaluator, "finetune_front", None))
    from gruq.evaluate import Evaluator as RealEvaluator

    samples = getattr(cfg, "finetune_samples", None)
    checkpoint = getattr(cfg, "checkpoint", None)
    evaluator = RealEvaluator(
        cfg.task,
        split="val",
        finetune_epochs=cfg.finetune_epochs,
        seed=cfg.seed,
        finetune_samples=samples,
        checkpoint=checkpoint,
    )
    return Backend(evaluator, _RealFinetune(cfg.task, cfg.seed, samples, checkpoint))


def model_shape(task: str, checkpoint: str | None = None) -> ModelShape:
    """The shape of the model the evaluator of `task` scores (its float `checkpoint`,
    None: the task's own), loading the model only when it must.

    The task's own checkpoint is trained at the task's width with one layer, so
    pages that only need sizes and bit operations can skip importing torch and
    reading it: that import was most of a cold page load. Another checkpoint (an
    imported or stacked model) sets the hidden size and the layer count, so it is read.
    """
    spec = os.environ.get(ENV_HOOK)
    if spec:
        return _import(spec)(task, split="val").shape
    if checkpoint:
        from gruq.evaluate import load

        return load(task, checkpoint)[0].shape
    from gruq import tasks

    return tasks.load(task).shape


@dataclass
class _RealFinetune:
    """Fine-tunes the final front through `gruq.scheme_model` and keeps, per genome,
    what the store records about each model (recipe, weights sha256, weights), in `models`."""

    task: str
    seed: int
    samples: int | None = None
    checkpoint: str | None = None
    models: dict = field(default_factory=dict)  # genome -> (recipe dict, weights sha256, weights bytes)

    def __call__(self, genomes: Sequence[Genome], epochs: int) -> list[float]:
        from gruq.evaluate import accuracies, load, tuned_many
        from gruq.scheme_model import FineTuning, SchemeModel, base_identity, to_blob, weights_sha256

        data, base = load(self.task, self.checkpoint)
        sha0 = base_identity(self.task, self.checkpoint)
        models = tuned_many(base, list(genomes), data, epochs, self.seed, self.samples)  # the front together
        out = []
        for g, ckpt in zip(genomes, models):
            recipe = SchemeModel(
                self.task, g, self.checkpoint, sha0, FineTuning(epochs, self.seed, self.samples, where="front")
            )
            sha = weights_sha256(ckpt)
            self.models[tuple(g)] = (recipe.pinned(sha).to_dict(), sha, to_blob(ckpt))
            out.append(float(accuracies(ckpt, [g], data.val)[0]))
        return out


def _import(spec: str) -> Callable[..., Evaluator]:
    module, _, name = spec.partition(":")
    if not module or not name:
        raise GruqError(f"{ENV_HOOK} must be 'module:callable'; got {spec!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise GruqError(f"{ENV_HOOK}={spec!r} cannot be imported: {exc}") from None
