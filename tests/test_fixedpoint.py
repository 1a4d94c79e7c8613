"""gruq.fixedpoint against exact rational arithmetic.

Every primitive is specified by its exact rational meaning: a code c in a
format with f fraction bits stands for c * 2^-f; rounding is round-half-up
(floor(v + 1/2)) applied once to the exact rational value; saturation clamps to
the format's range. Python's `fractions.Fraction` is the oracle.
"""

from __future__ import annotations

import math
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from gruq.fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    Format,
    activation_lut,
    align_add,
    ceil_log2,
    frac_bits,
    quantize,
    requantize,
    round_shift,
    saturate,
    sigmoid,
)

HALF = Fraction(1, 2)


def pow2(k: int) -> Fraction:
    return Fraction(2) ** k


def round_half_up(q: Fraction) -> int:
    return math.floor(q + HALF)


def clamp(v: int, fmt: Format) -> int:
    return max(fmt.lo, min(fmt.hi, v))


def exact_code(q: Fraction, fmt: Format) -> int:
    """The code of the exact real q in fmt: round-half-up of q * 2^f, saturated."""
    return clamp(round_half_up(q * pow2(fmt.frac)), fmt)


formats = st.builds(Format, bits=st.integers(2, 32), frac=st.integers(-12, 40), signed=st.booleans())
small_formats = st.builds(Format, bits=st.integers(2, 8), frac=st.integers(-6, 12), signed=st.booleans())


# -- Format -----------------------------------------------------------------


@pytest.mark.parametrize("bits", range(1, 33))
def test_signed_format_is_twos_complement(bits):
    fmt = Format(bits, 0, signed=True)
    assert (fmt.lo, fmt.hi) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    assert fmt.levels == fmt.hi - fmt.lo + 1 == 2**bits


@pytest.mark.parametrize("bits", range(1, 33))
def test_unsigned_format_starts_at_zero(bits):
    fmt = Format(bits, 5, signed=False)
    assert (fmt.lo, fmt.hi) == (0, 2**bits - 1)
    assert fmt.levels == fmt.hi - fmt.lo + 1 == 2**bits


def test_format_range_does_not_depend_on_fraction_bits():
    assert (Format(4, -3).lo, Format(4, -3).hi) == (Format(4, 11).lo, Format(4, 11).hi) == (-8, 7)


def test_int32_bounds():
    assert (INT32_MIN, INT32_MAX) == (Format(32, 0).lo, Format(32, 0).hi)


def test_frac_bits_leaves_one_sign_bit_above_the_exponent():
    # |v| <= 2^e fits a signed b-bit format with f = b - 1 - e fraction bits
    assert frac_bits(8, 0) == 7
    assert frac_bits(8, 3) == 4
    assert frac_bits(2, -2) == 3


# -- round_shift ------------------------------------------------------------


@given(v=st.integers(), s=st.integers(-10, 40))
@example(v=-1, s=1)  # -0.5 rounds up to 0
@example(v=1, s=1)  # 0.5 rounds up to 1
@example(v=-3, s=1)  # -1.5 rounds up to -1
@example(v=2**200 + 2**39, s=40)
@example(v=-(2**200) - 2**39, s=40)
def test_round_shift_is_round_half_up_of_the_exact_quotient(v, s):
    assert round_shift(v, s) == round_half_up(Fraction(v) / pow2(s))


@given(v=st.lists(st.integers(-(2**61), 2**61), min_size=1, max_size=20), s=st.integers(1, 40))
def test_round_shift_on_int64_arrays_matches_python_ints(v, s):
    out = round_shift(np.array(v, dtype=np.int64), s)
    assert out.dtype == np.int64
    assert out.tolist() == [round_half_up(Fraction(x) / pow2(s)) for x in v]


@given(v=st.lists(st.integers(-(2**50), 2**50), min_size=1, max_size=20), s=st.integers(-10, 0))
def test_round_shift_by_a_non_positive_amount_is_an_exact_left_shift(v, s):
    out = round_shift(np.array(v, dtype=np.int64), s)
    assert out.tolist() == [x * 2**-s for x in v]


def test_round_shift_of_int64_arrays_by_64_bits_or_more_rounds_to_zero():
    # |v| < 2^63 <= 2^(s-1): every quotient lies in [-1/2, 1/2), which rounds half up to 0.
    v = np.array([0, 5, -5, 2**62, -(2**63)], dtype=np.int64)
    for s in (63, 64, 70):
        assert round_shift(v, s).tolist() == [round_half_up(Fraction(int(x)) / pow2(s)) for x in v]


# -- saturate / requantize --------------------------------------------------


@given(v=st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=20), fmt=formats)
def test_saturate_clamps_into_the_format(v, fmt):
    out = saturate(np.array(v, dtype=np.int64), fmt)
    assert out.tolist() == [clamp(x, fmt) for x in v]


@given(v=st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=20), frac_in=st.integers(-12, 60), fmt=formats)
@example(v=[-3], frac_in=1, fmt=Format(8, 0))  # -1.5 -> -1
@example(v=[255], frac_in=1, fmt=Format(8, 0))  # 127.5 -> 128 -> saturates to 127
@example(v=[-257], frac_in=1, fmt=Format(8, 0))  # -128.5 -> -128
def test_requantize_rounds_once_then_saturates(v, frac_in, fmt):
    assume(-20 <= frac_in - fmt.frac <= 62)  # shifts of int64 codes: engine ranges
    out = requantize(np.array(v, dtype=np.int64), frac_in, fmt)
    assert out.tolist() == [exact_code(Fraction(x) / pow2(frac_in), fmt) for x in v]


def test_requantize_of_a_python_int_scalar():
    assert int(requantize(5, 1, Format(4, 0))) == 3  # 2.5 -> 3
    assert int(requantize(-5, 1, Format(4, 0))) == -2  # -2.5 -> -2
    assert int(requantize(1000, 0, Format(4, 0))) == 7


# -- align_add --------------------------------------------------------------

int32s = st.integers(INT32_MIN, INT32_MAX)


@given(
    a=st.lists(int32s, min_size=1, max_size=10),
    b=st.data(),
    frac_a=st.integers(-8, 30),
    frac_b=st.integers(-8, 30),
    fmt=formats,
)
@example(a=[1], b=None, frac_a=1, frac_b=2, fmt=Format(8, 0))
def test_align_add_is_the_exact_sum_rounded_once(a, b, frac_a, frac_b, fmt):
    # Engine ranges: int32 operands, scales at most 30 bits apart, so the
    # aligned exact sum stays inside int64.
    assume(abs(frac_a - frac_b) <= 30)
    assume(fmt.frac - max(frac_a, frac_b) <= 0)
    if b is None:  # the explicit example: 0.5 + 0.25 = 0.75 -> 1
        bs = [1]
    else:
        bs = b.draw(st.lists(int32s, min_size=len(a), max_size=len(a)))
    out = align_add(np.array(a, dtype=np.int64), frac_a, np.array(bs, dtype=np.int64), frac_b, fmt)
    want = [exact_code(Fraction(x) / pow2(frac_a) + Fraction(y) / pow2(frac_b), fmt) for x, y in zip(a, bs)]
    assert out.tolist() == want


def test_align_add_rounds_the_sum_not_each_operand():
    # 0.5 + 0.5 at frac 1 into an integer format: the exact sum is 1. Rounding
    # each operand first (round-half-up) would give 1 + 1 = 2.
    assert int(align_add(np.int64(1), 1, np.int64(1), 1, Format(8, 0))) == 1
    # 0.25 + 0.25 -> 0.5 -> rounds up to 1; each alone would round to 0.
    assert int(align_add(np.int64(1), 2, np.int64(1), 2, Format(8, 0))) == 1


# -- quantize ---------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)


@given(x=finite, fmt=formats)
@example(x=0.5, fmt=Format(8, 0))
@example(x=-0.5, fmt=Format(8, 0))
@example(x=2.5, fmt=Format(8, 0))
@example(x=-2.5, fmt=Format(8, 0))
@example(x=0.49999999999999994, fmt=Format(8, 0))  # the largest double below 1/2
@example(x=1e30, fmt=Format(8, 0))  # beyond int64 once scaled
@example(x=-1e30, fmt=Format(8, 0))
def test_quantize_is_the_exact_value_rounded_half_up_and_saturated(x, fmt):
    out = quantize(np.array([x]), fmt)
    assert out.dtype == np.int64
    assert int(out[0]) == exact_code(Fraction(x), fmt)


def test_quantize_just_below_one_half_rounds_down():
    # Round-half-up of 0.49999999999999994 is 0; floor(x + 0.5) in float64
    # rounds the sum up to 1.0 first and returns 1.
    x = math.nextafter(0.5, 0.0)
    assert int(quantize(np.array([x]), Format(8, 0))[0]) == 0
    assert int(quantize(np.array([x / 8]), Format(8, 3))[0]) == 0


def test_quantize_saturates_huge_values_to_the_nearest_bound():
    fmt = Format(8, 4)
    out = quantize(np.array([1e30, -1e30, 2.0**70, -(2.0**70), sys.float_info.max]), fmt)
    assert out.tolist() == [fmt.hi, fmt.lo, fmt.hi, fmt.lo, fmt.hi]


@given(xs=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=30), fmt=small_formats)
def test_quantize_works_elementwise_on_float32_arrays(xs, fmt):
    x32 = np.array(xs, dtype=np.float32)
    out = quantize(x32, fmt)
    assert out.shape == x32.shape
    assert out.tolist() == [exact_code(Fraction(float(v)), fmt) for v in x32]


def test_quantize_keeps_codes_of_representable_values():
    fmt = Format(6, 3)
    codes = np.arange(fmt.lo, fmt.hi + 1)
    assert quantize(codes / 8.0, fmt).tolist() == codes.tolist()


# -- ceil_log2 ----------------------------------------------------------------


def exact_ceil_log2(x: float) -> int:
    q = Fraction(x)
    k = q.numerator.bit_length() - q.denominator.bit_length()
    while pow2(k) < q:
        k += 1
    while pow2(k - 1) >= q:
        k -= 1
    return k


@given(x=st.floats(min_value=0.0, exclude_min=True, allow_infinity=False, allow_subnormal=True))
@example(x=5e-324)  # the smallest subnormal
@example(x=2.2250738585072014e-308)  # the smallest normal
@example(x=sys.float_info.max)
def test_ceil_log2_is_exact(x):
    assert ceil_log2(x) == exact_ceil_log2(x)


@pytest.mark.parametrize("k", [-1074, -1073, -1030, -1022, -1021, -60, -1, 0, 1, 2, 31, 52, 53, 1023])
def test_ceil_log2_at_and_around_powers_of_two(k):
    x = math.ldexp(1.0, k)
    assert ceil_log2(x) == k
    assert ceil_log2(math.nextafter(x, math.inf)) == k + 1
    below = math.nextafter(x, 0.0)
    if below > math.ldexp(1.0, k - 1):  # with subnormal spacing it may be 2^(k-1) itself
        assert ceil_log2(below) == k
    elif below > 0:
        assert ceil_log2(below) == k - 1


@pytest.mark.parametrize("x", [0.0, -0.0, -1.0, -8.0])
def test_ceil_log2_of_non_positive_values_is_zero(x):
    assert ceil_log2(x) == 0


def test_ceil_log2_of_ordinary_values():
    assert [ceil_log2(v) for v in (0.3, 0.5, 0.75, 1.0, 1.5, 3.0, 4.0, 4.5, 100.0)] == [-1, -1, 0, 0, 1, 2, 2, 3, 7]


# -- activation look-up tables ----------------------------------------------


def ref_lut(fn, fmt_in: Format, fmt_out: Format) -> list[int]:
    out = []
    with np.errstate(over="ignore"):
        for code in range(fmt_in.lo, fmt_in.hi + 1):
            real = float(fn(np.float64(math.ldexp(code, -fmt_in.frac))))
            out.append(exact_code(Fraction(real), fmt_out))
    return out


in_formats = st.builds(Format, bits=st.integers(2, 8), frac=st.integers(-4, 10), signed=st.just(True))
out_bits = st.integers(2, 8)


@settings(max_examples=60)
@given(fmt_in=in_formats, b=out_bits)
def test_sigmoid_lut_entries_are_rounded_sigmoid_of_each_code(fmt_in, b):
    fmt_out = Format(b, b, signed=False)  # sig_r / sig_z: unsigned, scale 2^-b
    with np.errstate(over="ignore"):
        lut = activation_lut(sigmoid, fmt_in, fmt_out)
    assert lut.dtype == np.int64
    assert len(lut) == fmt_in.levels <= 256
    assert lut.tolist() == ref_lut(sigmoid, fmt_in, fmt_out)
    assert np.all(np.diff(lut) >= 0), "sigmoid table must be monotone"
    assert lut.min() >= fmt_out.lo and lut.max() <= fmt_out.hi


@settings(max_examples=60)
@given(fmt_in=in_formats, b=out_bits)
def test_tanh_lut_entries_are_rounded_tanh_of_each_code(fmt_in, b):
    fmt_out = Format(b, b - 1, signed=True)  # tanh_n: signed, scale 2^-(b-1)
    lut = activation_lut(np.tanh, fmt_in, fmt_out)
    assert len(lut) == fmt_in.levels
    assert lut.tolist() == ref_lut(np.tanh, fmt_in, fmt_out)
    assert np.all(np.diff(lut) >= 0), "tanh table must be monotone"
    assert lut.min() >= fmt_out.lo and lut.max() <= fmt_out.hi


@given(fmt_in=small_formats, fmt_out=small_formats)
def test_lut_entry_k_is_for_input_code_lo_plus_k(fmt_in, fmt_out):
    identity = activation_lut(lambda v: v, fmt_in, fmt_out)
    want = [exact_code(Fraction(c) / pow2(fmt_in.frac), fmt_out) for c in range(fmt_in.lo, fmt_in.hi + 1)]
    assert identity.tolist() == want


def test_sigmoid_table_saturates_at_one():
    # sigmoid of a large input is ~1, i.e. 2^b at scale 2^-b: one past the
    # unsigned b-bit range, so it saturates to 2^b - 1.
    lut = activation_lut(sigmoid, Format(4, 0), Format(2, 2, signed=False))
    assert lut[-1] == 3
    assert lut[0] == 0
    assert lut[8] == 2  # input code 0: sigmoid(0) = 1/2 -> code 2 of 0..3


def test_tanh_table_is_odd_away_from_the_saturated_end():
    fmt_in, fmt_out = Format(6, 3), Format(5, 4)
    lut = activation_lut(np.tanh, fmt_in, fmt_out)
    zero = -fmt_in.lo
    assert lut[zero] == 0
    # tanh(-v) = -tanh(v); round-half-up breaks the symmetry only at exact halves
    for k in range(1, fmt_in.hi + 1):
        assert abs(lut[zero + k] + lut[zero - k]) <= 1
