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
        from gruq.errors import GruqError

        if name not in ("train", "val", "test"):
            raise GruqError(f"unknown split {name!r}; splits are train, val, test")
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
