"""Intervals of accuracies: Wilson for one, paired bootstrap and Newcombe for differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gruq.stats import paired_diff, pct_ci, standard_error, unpaired_diff, wilson, wilson_acc, within_noise


def test_wilson_matches_the_textbook_value():
    lo, hi = wilson(81, 100)  # the classic worked example: 81/100 -> 0.7222..0.8749
    assert lo == pytest.approx(0.7222, abs=1e-4) and hi == pytest.approx(0.8749, abs=1e-4)


@given(st.integers(1, 2000), st.data())
def test_wilson_contains_the_estimate_and_stays_in_0_1(n, data):
    k = data.draw(st.integers(0, n))
    lo, hi = wilson(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_shrinks_with_more_sequences():
    widths = [np.subtract(*wilson_acc(0.95, n)[::-1]) for n in (100, 500, 2000)]
    assert widths[0] > widths[1] > widths[2]
    assert standard_error(0.95, 500) == pytest.approx((0.95 * 0.05 / 500) ** 0.5)


def test_paired_difference_of_identical_models_is_exactly_zero():
    a = np.arange(300) % 7 != 0
    assert paired_diff(a, a) == (0.0, 0.0)


def test_paired_interval_is_narrower_than_the_unpaired_one_and_deterministic():
    a = np.arange(500) % 20 != 0  # 95%
    b = a.copy()
    b[[1, 2, 3, 4]] = False  # b misses 4 that a gets right ...
    b[[0, 20]] = True  # ... and gets 2 that a misses: they disagree on 6 sequences only
    paired = paired_diff(a, b)
    unpaired = unpaired_diff(a.mean(), 500, b.mean(), 500)
    assert paired == paired_diff(a, b)  # seeded
    assert paired[1] - paired[0] < unpaired[1] - unpaired[0]
    assert paired[0] <= a.mean() - b.mean() <= paired[1]
    assert within_noise(paired) and within_noise(unpaired)


def test_a_clear_difference_is_not_within_noise():
    a = np.ones(400, dtype=bool)
    b = np.arange(400) % 5 != 0  # 20 points worse
    assert not within_noise(paired_diff(a, b))
    assert not within_noise(unpaired_diff(1.0, 400, 0.8, 400))


def test_pct_ci_is_the_compact_accuracy_of_tables_and_labels():
    lo, hi = wilson_acc(0.97, 100)
    assert pct_ci(0.97, 100) == f"97.0 ({100 * lo:.1f}-{100 * hi:.1f})" == "97.0 (91.5-99.0)"
    assert pct_ci(0.97, 100, "%") == "97.0% (91.5-99.0)"
    assert pct_ci(1.0, 9, "%") == "100.0% (70.1-100.0)"  # the exact end, not past it
    assert pct_ci(0.97, None, "%") == pct_ci(0.97, 0, "%") == "97.0%"  # unknown n: the figure alone
