"""The integer shifts of one genome's cell, derived from its formats.

The integer engine computes these amounts on the fly from the formats; the
model file and the C kernel store them as constants. `shifts` is the one place
that derives them, so the two exports agree, and `check_ranges` proves that
every intermediate value of the kernel fits a signed 64-bit integer (where
numpy's int64 and C's int64_t agree exactly, with no wrap-around).

Conventions, the engine's (gruq.fixedpoint):
- an aligning shift `shl_a`/`shl_b` >= 0 multiplies an operand by 2^shl before an add;
- a requantizing shift `shr` rounds half up and divides by 2^shr when > 0,
  and multiplies exactly by 2^-shr when < 0; the result is then saturated.
"""

from __future__ import annotations

import numpy as np

from gruq.errors import GruqError
from gruq.fixedpoint import Format
from gruq.scheme import Formats

# The additions (two operands aligned to the finer scale, then one rounding):
# name -> (operand a, operand b); an operand is a linear accumulator or an op output.
ADDS: dict[str, tuple[str, str]] = {
    "add_r": ("lin_xr", "lin_hr"),
    "add_z": ("lin_xz", "lin_hz"),
    "add_n": ("lin_xn", "mul_rn"),
    "add_h": ("mul_zn", "mul_zh"),
}
# The products (exact product, then one rounding): name -> (operand a, operand b).
MULS: dict[str, tuple[str, str]] = {
    "mul_rn": ("sig_r", "lin_hn"),
    "mul_zn": ("sub_z", "tanh_n"),
    "mul_zh": ("sig_z", "h"),
}
# Activations: table name -> the op whose codes index it.
LUTS: dict[str, str] = {"sig_r": "add_r", "sig_z": "add_z", "tanh_n": "add_n"}

MAX_MAGNITUDE_LOG2 = 62  # every intermediate |v| <= 2^62: room for the rounding half in int64
INT32_LIMIT = (1 << 31) - 1
MAX_KERNEL_WIDTH = 65535  # the kernel's int32 dot products are exact up to this many columns


def operand_frac(fmt: Formats, name: str) -> int:
    """Fraction bits of an operand: an accumulator, the state h, or an op output."""
    if name in fmt.acc_frac:
        return fmt.acc_frac[name]
    if name == "h":
        return fmt.h.frac
    return fmt.out[name].frac


def shifts(fmt: Formats) -> dict[str, dict[str, int]]:
    """Every shift amount of the cell, per consuming operator."""
    plan: dict[str, dict[str, int]] = {}
    for name, (a, b) in ADDS.items():
        fa, fb = operand_frac(fmt, a), operand_frac(fmt, b)
        frac = max(fa, fb)
        plan[name] = {"shl_a": frac - fa, "shl_b": frac - fb, "shr": frac - fmt.out[name].frac}
    for name, (a, b) in MULS.items():
        plan[name] = {"shr": operand_frac(fmt, a) + operand_frac(fmt, b) - fmt.out[name].frac}
    plan["sub_z"] = {"one": 1 << fmt.out["sig_z"].frac, "shr": fmt.out["sig_z"].frac - fmt.out["sub_z"].frac}
    return plan


def _bound_log2(fmt: Format) -> int:
    """k with |code| <= 2^k for every code of `fmt`."""
    return fmt.bits


def check_ranges(fmt: Formats, features: int, hidden: int) -> None:
    """Refuse (GruqError) a scheme whose integer arithmetic could leave int64.

    Bounds are worst cases (all operands at their format's extremes), so a pass
    holds for every input. Accumulators are saturated to int32, so |acc| <= 2^31.
    """
    plan = shifts(fmt)
    acc_log2 = 31
    bound: dict[str, int] = {name: acc_log2 for name in fmt.acc_frac}
    bound["h"] = _bound_log2(fmt.h)
    bound.update({name: _bound_log2(f) for name, f in fmt.out.items()})
    # The dot products before saturation: <= (features or hidden) * 2^8 * 2^8 + 2^31.
    widest = max(features, hidden, 1)
    if widest > MAX_KERNEL_WIDTH:
        raise GruqError(f"cannot export a model wider than {MAX_KERNEL_WIDTH} features or hidden units")

    def need(log2: int, what: str) -> None:
        if log2 > MAX_MAGNITUDE_LOG2:
            raise GruqError(
                f"cannot export this scheme: {what} could exceed 2^{MAX_MAGNITUDE_LOG2} "
                "(its formats are too far apart for 64-bit integer arithmetic)"
            )

    def requant(log2: int, shr: int, what: str) -> None:
        if shr > MAX_MAGNITUDE_LOG2:
            raise GruqError(
                f"cannot export this scheme: {what} shifts right by {shr} bits (at most {MAX_MAGNITUDE_LOG2})"
            )
        need(log2 + max(0, -shr) + (1 if shr > 0 else 0), what)

    for name, (a, b) in ADDS.items():
        p = plan[name]
        ea, eb = bound[a] + p["shl_a"], bound[b] + p["shl_b"]
        need(max(ea, eb), f"{name}'s aligned operands")
        requant(max(ea, eb) + 1, p["shr"], name)
    for name, (a, b) in MULS.items():
        requant(bound[a] + bound[b], plan[name]["shr"], name)
    requant(fmt.out["sig_z"].bits + 1, plan["sub_z"]["shr"], "sub_z")


def _magnitude(f: Format) -> int:
    """The largest |code| of format f."""
    return max(abs(f.lo), abs(f.hi))


def accumulator_bounds(im) -> dict[str, int]:
    """The largest |accumulator| each linear operator can produce for any input
    codes, from the model's own weights and biases (at most 2^31: saturation)."""
    from gruq.ops import INPUT_LINEAR, LINEAR, OPS

    out = {}
    for op in LINEAR:
        name = OPS[op]
        v = _magnitude(im.fmt.x) if op in INPUT_LINEAR else _magnitude(im.fmt.h)
        w = np.abs(np.asarray(im.weights[name], dtype=np.int64)).sum(axis=1) * v
        b = np.abs(np.asarray(im.biases[name], dtype=np.int64))
        out[name] = int(min(int((w + b).max()), 1 << 31))
    return out


def _requant_bound(bound: int, shr: int) -> int:
    """The largest |v| requant handles before its shift: v + 2^(shr-1), or v * 2^-shr.
    A shift that int32 cannot express (C's 1 << s needs s <= 30) counts as unbounded."""
    if not -30 <= shr <= 31:
        return 1 << 63
    return bound + (1 << (shr - 1)) if shr > 0 else bound << -shr


def wide_ops(im) -> dict[str, bool]:
    """Per add, product and sub_z: True when its intermediate values can leave
    int32 for some input (the kernel then computes it in int64), False when
    int32 is exact. Bounds are worst cases over every input code, from the
    model's weights, so the narrow path never differs from the engine."""
    fmt, plan = im.fmt, shifts(im.fmt)
    bound: dict[str, int] = dict(accumulator_bounds(im))
    bound["h"] = _magnitude(fmt.h)
    bound.update({name: _magnitude(f) for name, f in fmt.out.items()})
    wide = {}
    for name, (a, b) in ADDS.items():
        p = plan[name]
        total = (bound[a] << p["shl_a"]) + (bound[b] << p["shl_b"])
        too_far = max(p["shl_a"], p["shl_b"]) > 30
        wide[name] = too_far or _requant_bound(total, p["shr"]) > INT32_LIMIT
    for name, (a, b) in MULS.items():
        wide[name] = _requant_bound(bound[a] * bound[b], plan[name]["shr"]) > INT32_LIMIT
    sz = plan["sub_z"]
    wide["sub_z"] = _requant_bound(max(sz["one"], abs(sz["one"] - fmt.out["sig_z"].hi)), sz["shr"]) > INT32_LIMIT
    return wide
