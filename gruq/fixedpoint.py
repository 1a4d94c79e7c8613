"""Fixed-point primitives: formats, round-half-up shifts, saturation, LUTs.

Every tensor is two's-complement with a power-of-two scale: value = code * 2^-f.
These functions work on Python ints and numpy int64 arrays and are the single
definition of the arithmetic; the torch simulation mirrors them exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True)
class Format:
    """A fixed-point format: `bits` wide, `frac` fraction bits, signed or not."""

    bits: int
    frac: int
    signed: bool = True

    @property
    def lo(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def levels(self) -> int:
        return 1 << self.bits


def ceil_log2(x: float) -> int:
    """Exact ceil(log2(x)) for x > 0 (frexp avoids log2's rounding); 0 for x <= 0."""
    if not x > 0:
        return 0
    mantissa, exponent = math.frexp(x)  # x = mantissa * 2^exponent, 0.5 <= mantissa < 1
    return exponent - 1 if mantissa == 0.5 else exponent


def frac_bits(bits: int, exponent: int) -> int:
    """Fraction bits of a signed `bits`-wide format holding |v| <= 2^exponent."""
    return bits - 1 - exponent


def round_shift(v: np.ndarray | int, s: int) -> np.ndarray | int:
    """Round-half-up of v / 2^s for integer v; a negative s is an exact left shift.

    Computed as ((v >> (s-1)) + 1) >> 1, which equals (v + 2^(s-1)) >> s
    (floor(floor(a) / 2) = floor(a / 2)) but cannot overflow int64, and a
    shift of 63 or more leaves just the sign, as an exact shift would.
    """
    if s <= 0:
        return v << -s
    return ((v >> min(s - 1, 63)) + 1) >> 1


def saturate(v: np.ndarray, fmt: Format) -> np.ndarray:
    """Clamp integer codes into the range of `fmt`."""
    return np.clip(v, fmt.lo, fmt.hi)


def requantize(v: np.ndarray, frac_in: int, fmt: Format) -> np.ndarray:
    """Round integer codes at scale 2^-frac_in into `fmt`, saturating: one rounding."""
    return saturate(round_shift(v, frac_in - fmt.frac), fmt)


def quantize(x: np.ndarray, fmt: Format) -> np.ndarray:
    """Codes of real values x: exact round-half-up of x * 2^f, saturated.

    floor(y + 0.5) would round the largest double below 0.5 up (the sum is
    inexact); y - floor(y) is exact, so comparing it with 0.5 is not.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # huge values saturate below
        y = np.ldexp(np.asarray(x, dtype=np.float64), fmt.frac)
        fl = np.floor(y)
        return np.clip(fl + (y - fl >= 0.5), fmt.lo, fmt.hi).astype(np.int64)


def align_add(a: np.ndarray, frac_a: int, b: np.ndarray, frac_b: int, fmt: Format) -> np.ndarray:
    """a + b rounded once into `fmt`: the exact sum at the finer scale, then one shift."""
    frac = max(frac_a, frac_b)
    exact = (a << (frac - frac_a)) + (b << (frac - frac_b))
    return requantize(exact, frac, fmt)


def activation_lut(fn, fmt_in: Format, fmt_out: Format) -> np.ndarray:
    """Look-up table of fn over every code of fmt_in, as codes of fmt_out.

    Entry k is for input code fmt_in.lo + k. Built in float64 once per genome;
    inference only indexes it.
    """
    codes = np.arange(fmt_in.lo, fmt_in.hi + 1, dtype=np.int64)
    return quantize(fn(np.ldexp(codes.astype(np.float64), -fmt_in.frac)), fmt_out)


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))
