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
    if widest.bit_length() + 16 + 1 > MAX_MAGNITUDE_LOG2:
        raise GruqError("model too wide for 64-bit accumulation")

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
