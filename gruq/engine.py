"""Integer-only inference: the reference of truth.

numpy int64 arrays throughout; no floating point inside the time loop (inputs
are quantized before it). Every rounding is a round-half-up shift and every
result is saturated to its format, exactly as the C kernel does.
"""

from __future__ import annotations

import numpy as np

from gruq.fixedpoint import Format, align_add, requantize, saturate
from gruq.ops import layer_prefix
from gruq.scheme import CellModel, IntegerModel

INT32 = Format(32, 0)


def _linear(im: CellModel, name: str, v: np.ndarray) -> np.ndarray:
    """W v + b in the int32 accumulator."""
    return saturate(v @ im.weights[name].T + im.biases[name], INT32)


def _lut(im: CellModel, name: str, codes: np.ndarray, fmt_in: Format) -> np.ndarray:
    return im.lut[name][codes - fmt_in.lo]


def step(im: CellModel, xt: np.ndarray, h: np.ndarray) -> dict[str, np.ndarray]:
    """One time step of one cell: the integer codes of all 17 operators (new h is add_h)."""
    f, o, a = im.fmt, im.fmt.out, im.fmt.acc_frac
    c: dict[str, np.ndarray] = {}
    for name in ("lin_xr", "lin_xz", "lin_xn"):
        c[name] = _linear(im, name, xt)
    for name in ("lin_hr", "lin_hz", "lin_hn"):
        c[name] = _linear(im, name, h)
    c["add_r"] = align_add(c["lin_xr"], a["lin_xr"], c["lin_hr"], a["lin_hr"], o["add_r"])
    c["sig_r"] = _lut(im, "sig_r", c["add_r"], o["add_r"])
    c["add_z"] = align_add(c["lin_xz"], a["lin_xz"], c["lin_hz"], a["lin_hz"], o["add_z"])
    c["sig_z"] = _lut(im, "sig_z", c["add_z"], o["add_z"])
    c["mul_rn"] = requantize(c["sig_r"] * c["lin_hn"], o["sig_r"].frac + a["lin_hn"], o["mul_rn"])
    c["add_n"] = align_add(c["lin_xn"], a["lin_xn"], c["mul_rn"], o["mul_rn"].frac, o["add_n"])
    c["tanh_n"] = _lut(im, "tanh_n", c["add_n"], o["add_n"])
    one = 1 << o["sig_z"].frac
    c["sub_z"] = requantize(one - c["sig_z"], o["sig_z"].frac, o["sub_z"])
    c["mul_zn"] = requantize(c["sub_z"] * c["tanh_n"], o["sub_z"].frac + o["tanh_n"].frac, o["mul_zn"])
    c["mul_zh"] = requantize(c["sig_z"] * h, o["sig_z"].frac + f.h.frac, o["mul_zh"])
    c["add_h"] = align_add(c["mul_zn"], o["mul_zn"].frac, c["mul_zh"], o["mul_zh"].frac, o["add_h"])
    return c


def run(im: IntegerModel, x_codes: np.ndarray, trace: bool = False):
    """Integer logits (N, C) for input codes (N, T, F).

    Each time step runs the one cell once per layer; layer k + 1's input is
    layer k's new h, as codes in add_h's format. With `trace`, also returns
    {operator: codes (N, T, H)} for every step (names `l{k}.op` for stacked layers).
    """
    x_codes = np.asarray(x_codes, dtype=np.int64)
    N, T, _ = x_codes.shape
    hs = [np.zeros((N, im.hidden), dtype=np.int64) for _ in im.cells]
    prefix = [layer_prefix(k, im.layers) for k in range(im.layers)]
    codes: dict[str, list[np.ndarray]] = {}
    for t in range(T):
        inp = x_codes[:, t]
        for k, cell in enumerate(im.cells):
            c = step(cell, inp, hs[k])
            hs[k] = inp = c["add_h"]
            if trace:
                for name, v in c.items():
                    codes.setdefault(prefix[k] + name, []).append(v)
    logits = saturate(hs[-1] @ im.head_weight.T + im.head_bias, INT32)
    if trace:
        return logits, {name: np.stack(v, axis=1) for name, v in codes.items()}
    return logits


def predict(im: IntegerModel, X: np.ndarray) -> np.ndarray:
    """Class predictions for float sequences X: quantize the input, run, argmax."""
    return run(im, im.quantize_input(X)).argmax(axis=1)
