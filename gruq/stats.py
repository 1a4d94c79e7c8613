"""Uncertainty of accuracies: how far a number measured on N sequences can be trusted.

An accuracy is k right answers out of n sequences; every figure gruq shows
carries n and a 95% interval so that a difference of one sequence is not
read as a gain. Three tools, all pure functions of counts or 0/1 vectors:

    wilson(k, n)                   interval of one accuracy (Wilson score)
    paired_diff(a, b)              interval of acc(a) - acc(b) on the SAME sequences
                                   (seeded paired bootstrap; exact, deterministic)
    unpaired_diff(pa, na, pb, nb)  interval of a difference when only the two
                                   accuracies are known (Newcombe's hybrid score)

`within_noise` says whether a difference's interval contains 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile
BOOTSTRAP = 10_000  # resamples of a paired bootstrap
BOOTSTRAP_SEED = 0  # fixed: the same data always give the same interval


def wilson(k: int | float, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k / n (as fractions).

    Unlike the normal approximation it stays inside [0, 1] and is sound near
    100%, where small tasks live. n = 0 gives (0, 1): nothing is known.
    """
    if n <= 0:
        return (0.0, 1.0)
    p = float(k) / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    lo = 0.0 if k <= 0 else max(0.0, min(p, centre - half))  # exact ends: no rounding past the estimate
    hi = 1.0 if k >= n else min(1.0, max(p, centre + half))
    return (lo, hi)


def wilson_acc(accuracy: float, n: int) -> tuple[float, float]:
    """`wilson` of an accuracy given as a fraction of n sequences."""
    return wilson(round(accuracy * n), n)


def standard_error(accuracy: float, n: int) -> float:
    """Binomial standard error of an accuracy measured on n sequences."""
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / n) if n > 0 else float("inf")


def paired_diff(
    a: Sequence[bool] | np.ndarray, b: Sequence[bool] | np.ndarray, reps: int = BOOTSTRAP, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """95% percentile interval of mean(a) - mean(b), a and b right/wrong on the same sequences.

    Pairing matters: two related models err on mostly the same sequences,
    so their difference is far less noisy than either accuracy. Only the
    sequences where they disagree move the difference, so the bootstrap
    resamples those counts (a multinomial over the n sequences), seeded.
    """
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_diff needs two vectors of the same length; got {a.shape} and {b.shape}")
    n = len(a)
    if n == 0:
        return (-1.0, 1.0)
    only_a = int((a & ~b).sum())
    only_b = int((b & ~a).sum())
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, [only_a / n, only_b / n, 1 - (only_a + only_b) / n], size=reps)
    diffs = (draws[:, 0] - draws[:, 1]) / n
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return (float(lo), float(hi))


def unpaired_diff(pa: float, na: int, pb: float, nb: int) -> tuple[float, float]:
    """95% interval of pa - pb from two independent accuracies (Newcombe's method 10).

    Used where per-sequence results are not at hand (a live run stores
    accuracies only); it is wider than the paired interval, so "within noise"
    by it is a cautious statement.
    """
    la, ua = wilson_acc(pa, na)
    lb, ub = wilson_acc(pb, nb)
    d = pa - pb
    lo = d - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2)
    hi = d + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)
    return (float(max(-1.0, lo)), float(min(1.0, hi)))


def within_noise(interval: tuple[float, float]) -> bool:
    """True when a difference's interval contains 0: the data cannot tell the two apart."""
    return interval[0] <= 0.0 <= interval[1]


def pct_interval(interval: tuple[float, float], digits: int = 1) -> str:
    """An interval of fractions as "[93.1, 96.2]%"."""
    lo, hi = interval
    return f"[{100 * lo:.{digits}f}, {100 * hi:.{digits}f}]%"


def pct_ci(accuracy: float, n: int | None, unit: str = "") -> str:
    """An accuracy with its 95% Wilson interval in the compact form of tables and labels,
    "97.0 (91.5-99.0)" (`unit` "%": "97.0% (91.5-99.0)"): short enough for a chart label or an
    option, yet no figure goes without its uncertainty. Unknown n gives the figure alone."""
    text = f"{100 * accuracy:.1f}{unit}"
    if not n:
        return text
    lo, hi = wilson_acc(accuracy, n)
    return f"{text} ({100 * lo:.1f}-{100 * hi:.1f})"
