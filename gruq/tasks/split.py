"""Seeded stratified splits and per-channel normalisation, shared by every task.

Splits are a pure function of the labels and the seed: `rng(seed)` is a numpy
Generator seeded with `seed`, and the default seed 0 gives the canonical
splits. Class proportions are kept in every split (largest-remainder
apportionment), every class with at least one sequence per split appears in
every split, and the sequences inside each split come in a seeded random order
(never sorted by class).

Normalisation statistics are always fitted on the training split alone and
then applied unchanged to validation and test data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gruq import limits


def check_seed(seed: object) -> int:
    """The seed as a plain int from 0 to 2^32-1 (gruq.limits.SEED_MAX), or a GruqError."""
    return limits.check_seed(seed)


def rng(seed: int) -> np.random.Generator:
    """The generator every split of a task draws from (seed 0: canonical splits)."""
    return np.random.default_rng(check_seed(seed))


def _apportion(weights: np.ndarray, n: int) -> np.ndarray:
    """Split the integer n in proportion to integer weights (largest remainder).

    Exact integer arithmetic; ties go to the lower index. The result never
    exceeds the weights when n <= weights.sum().
    """
    weights = np.asarray(weights, dtype=np.int64)
    total = int(weights.sum())
    if n == 0 or total == 0:
        return np.zeros_like(weights)
    num = weights * n
    base = num // total
    rem = num % total
    short = n - int(base.sum())
    order = np.argsort(-rem, kind="stable")
    base[order[:short]] += 1
    return base


def _ensure_every_class(alloc: np.ndarray, sizes: Sequence[int]) -> None:
    """Move sequences between splits (in place) so that each class with at least
    one sequence per split shows up in every non-empty split, keeping every
    class total and every split size unchanged."""
    n_classes, n_splits = alloc.shape
    for _ in range(n_classes * n_splits):
        changed = False
        for s in range(n_splits):
            if sizes[s] == 0:
                continue
            for c in np.flatnonzero(alloc[:, s] == 0):
                if alloc[c].sum() < n_splits:
                    continue
                donor = int(np.argmax(alloc[c]))  # split where class c is most plentiful
                if alloc[c, donor] < 2:
                    continue
                # a class that can spare one sequence in split s, moved to the donor split
                spare = alloc[:, s].copy()
                spare[c] = 0
                other = int(np.argmax(spare))
                if spare[other] < 2:
                    continue
                alloc[c, donor] -= 1
                alloc[c, s] += 1
                alloc[other, s] -= 1
                alloc[other, donor] += 1
                changed = True
        if not changed:
            return


def stratified_split(y: np.ndarray, sizes: Sequence[int], gen: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Indices of disjoint, stratified parts of sizes `sizes` (sum <= len(y)).

    Each part keeps the class proportions of y as closely as integers allow;
    indices inside a part are in random order. With sum(sizes) < len(y) the
    rest is left out (a stratified subsample).
    """
    y = np.asarray(y)
    sizes = [int(s) for s in sizes]
    if any(s < 0 for s in sizes) or sum(sizes) > len(y):
        raise ValueError(f"split sizes {sizes} do not fit {len(y)} sequences")
    _, inverse = np.unique(y, return_inverse=True)
    counts = np.bincount(inverse)
    kept = _apportion(counts, sum(sizes))  # per-class totals over all parts
    alloc = np.zeros((len(counts), len(sizes)), dtype=np.int64)
    left = kept.copy()
    for s, size in enumerate(sizes[:-1]):
        alloc[:, s] = _apportion(left, size)
        left -= alloc[:, s]
    alloc[:, -1] = left
    _ensure_every_class(alloc, sizes)
    parts: list[list[np.ndarray]] = [[] for _ in sizes]
    for c in range(len(counts)):
        members = gen.permutation(np.flatnonzero(inverse == c))
        start = 0
        for s in range(len(sizes)):
            parts[s].append(members[start : start + alloc[c, s]])
            start += alloc[c, s]
    return tuple(gen.permutation(np.concatenate(p)).astype(np.int64) for p in parts)


def stratified_subsample(y: np.ndarray, n: int, gen: np.random.Generator) -> np.ndarray:
    """Indices of a stratified random subset of at most n sequences (all of them,
    shuffled, if there are no more than n)."""
    return stratified_split(y, [min(int(n), len(y))], gen)[0]


@dataclass(frozen=True)
class Normaliser:
    """Per-channel z-score with statistics from training data."""

    mean: np.ndarray  # (F,) float64
    std: np.ndarray  # (F,) float64, never 0

    @classmethod
    def fit(cls, X_train: np.ndarray) -> Normaliser:
        """Fit on training values of shape (..., F): statistics over all but the last axis."""
        flat = np.asarray(X_train, dtype=np.float64).reshape(-1, np.shape(X_train)[-1])
        mean = flat.mean(axis=0)
        std = flat.std(axis=0)
        std = np.where(std > 1e-8, std, 1.0)  # a constant channel is only centred
        return cls(mean=mean, std=std)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, dtype=np.float64) - self.mean) / self.std).astype(np.float32)

    def to_extra(self) -> dict:
        return {"mean": tuple(float(v) for v in self.mean), "std": tuple(float(v) for v in self.std)}


def index_extra(parts: Sequence[np.ndarray]) -> dict:
    """Task.extra['index']: positions of each split's sequences in the pooled source data."""
    return {name: tuple(int(i) for i in idx) for name, idx in zip(("train", "val", "test"), parts)}
