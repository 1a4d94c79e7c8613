"""What every task provides: fixed, seeded splits of real sequences."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gruq.genome import ModelShape


@dataclass(frozen=True)
class Split:
    """Sequences X (N, T, F) float32, normalised, and integer labels y (N,)."""

    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


SPLITS = ("train", "val", "test", "select", "holdout")
HALVES = ("select", "holdout")
HALVES_SEED = 0  # fixed: the halves are part of the task, like its splits


def test_halves(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the test split's two stratified halves (select: the first, smaller-or-equal one).

    Why: the float checkpoints chose their epoch on validation, and the search
    ranks genomes on validation, so validation accuracies of the final front
    are optimistically biased. The test split was never used to choose
    anything; `gruq reproduce` makes its final pick on the `select` half and
    reports only the `holdout` half. Everything else (the app, export,
    evaluate --split test) still reads the whole test split.
    """
    from gruq.tasks.split import rng, stratified_split

    n = len(y)
    return stratified_split(y, [n // 2, n - n // 2], rng(HALVES_SEED))


@dataclass(frozen=True)
class Task:
    """A sequence classification task and the model shape gruq uses for it.

    `hidden`, `epochs` and `batch` are the defaults for float training; `source` says
    where the data come from, for people reading `gruq tasks`.
    """

    name: str
    train: Split
    val: Split
    test: Split
    classes: int
    hidden: int
    epochs: int
    source: str = ""
    batch: int = 64
    extra: dict = field(default_factory=dict)
    layers: int = 1  # stacked GRU layers of the model in use (a checkpoint's; 1 by default)

    @property
    def steps(self) -> int:
        return int(self.train.X.shape[1])

    @property
    def features(self) -> int:
        return int(self.train.X.shape[2])

    @property
    def shape(self) -> ModelShape:
        return ModelShape(
            features=self.features, hidden=self.hidden, classes=self.classes, steps=self.steps, layers=self.layers
        )

    def split(self, name: str) -> Split:
        """A split by name: train, val, test, or one of the test split's two fixed halves,
        select and holdout (see `test_halves`)."""
        from gruq.errors import GruqError

        if name in HALVES:
            idx = test_halves(self.test.y)[HALVES.index(name)]
            return Split(self.test.X[idx], self.test.y[idx])
        if name not in ("train", "val", "test"):
            raise GruqError(f"unknown split {name!r}; splits are {', '.join(SPLITS)}")
        return getattr(self, name)

    def summary(self) -> dict:
        """The `gruq tasks --json` record."""
        return {
            "name": self.name,
            "steps": self.steps,
            "features": self.features,
            "classes": self.classes,
            "train": len(self.train),
            "val": len(self.val),
            "test": len(self.test),
        }
