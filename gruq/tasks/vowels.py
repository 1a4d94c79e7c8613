"""vowels: JapaneseVowels (UCI / UEA archive), shipped in sktime's datasets folder.

640 utterances of the vowel /ae/ by 9 male speakers; the task is the speaker
(9 classes, original labels "1".."9" -> 0..8). Each utterance is 7..29 frames
of 12 LPC cepstrum coefficients. The archive's 270 train / 370 test files are
pooled and re-split. The shipped .ts files are located with
importlib.util.find_spec and read by gruq.tasks.tsfile (sktime itself is never
imported; its loader `load_from_tsfile` gives identical arrays), so nothing is
ever downloaded.

Each channel is z-scored with statistics over all real frames of the train
split; then every utterance is LEFT-padded with zeros to 29 steps, so the
real frames come last and the final hidden state follows the real data.
Task.extra['lengths'] keeps each split's true lengths.

Splits (stratified, seeded; every speaker is in every split):
    train 240 / val 100 / test 300 utterances.
Defaults: hidden 32, 60 epochs.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from gruq.errors import GruqError
from gruq.tasks._files import package_file
from gruq.tasks.base import Split, Task
from gruq.tasks.split import Normaliser, check_seed, index_extra, rng, stratified_split
from gruq.tasks.tsfile import read_ts

SIZES = (240, 100, 300)
STEPS = 29
CHANNELS = 12
SOURCE = "JapaneseVowels (UEA archive), the .ts files shipped in sktime/datasets/data; speaker id, 9 classes"
INSTALL = "pip install sktime"


def _read(part: str) -> tuple[list[np.ndarray], np.ndarray]:
    path = package_file(
        "sktime", "datasets", "data", "JapaneseVowels", f"JapaneseVowels_{part}.ts", task="vowels", install=INSTALL
    )
    data = read_ts(path)
    if data.class_labels != tuple("123456789"):
        raise GruqError(f"task 'vowels': {path} has class labels {' '.join(data.class_labels)}, not 1..9")
    return data.sequences, data.labels.astype(np.int64) - 1  # each sequence (length, 12)


@lru_cache(maxsize=1)
def _pooled() -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    seq_train, y_train = _read("TRAIN")
    seq_test, y_test = _read("TEST")
    sequences = tuple(seq_train + seq_test)
    y = np.concatenate([y_train, y_test])
    lengths = [len(s) for s in sequences]
    if (
        len(sequences) != 640
        or any(s.shape[1] != CHANNELS for s in sequences)
        or min(lengths) < 1
        or max(lengths) > STEPS
        or set(np.unique(y)) != set(range(9))
        or not all(np.isfinite(s).all() for s in sequences)
    ):
        raise GruqError("task 'vowels': sktime's JapaneseVowels files have an unexpected layout")
    return sequences, y


def _left_pad(sequences: list[np.ndarray], norm: Normaliser) -> np.ndarray:
    X = np.zeros((len(sequences), STEPS, CHANNELS), dtype=np.float32)
    for i, s in enumerate(sequences):
        X[i, STEPS - len(s) :] = norm(s)
    return X


def load(seed: int = 0) -> Task:
    seed = check_seed(seed)
    sequences, y = _pooled()
    parts = stratified_split(y, SIZES, rng(seed))
    norm = Normaliser.fit(np.concatenate([sequences[i] for i in parts[0]]))
    train, val, test = (Split(X=_left_pad([sequences[i] for i in idx], norm), y=y[idx]) for idx in parts)
    lengths = {name: tuple(len(sequences[i]) for i in idx) for name, idx in zip(("train", "val", "test"), parts)}
    return Task(
        name="vowels",
        train=train,
        val=val,
        test=test,
        classes=9,
        hidden=32,
        epochs=60,
        source=SOURCE,
        extra={
            "seed": seed,
            **norm.to_extra(),
            "index": index_extra(parts),
            "lengths": lengths,
            "padding": "left, zeros, after normalisation",
        },
    )
