"""gruq.engine: integer-only inference, the reference of truth.

The engine is checked against an independent, deliberately slow reference of
DESIGN.md's cell written with exact rationals: every operator takes the exact
real values its operands stand for, computes the exact result, and rounds it
once (half up) into its format, saturating. Look-up tables are replaced by the
function itself, rounded the same way.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from conftest import small
from hypothesis import given, settings
from hypothesis import strategies as st

from gruq import engine
from gruq.fixedpoint import INT32_MAX, INT32_MIN, Format, align_add, requantize
from gruq.genome import homogeneous
from gruq.ops import LINEAR, OPS
from gruq.scheme import build

genomes = st.lists(st.integers(2, 8), min_size=17, max_size=17).map(tuple)


def code(q: Fraction, fmt: Format) -> int:
    """Round-half-up of the real q into fmt, saturated."""
    return max(fmt.lo, min(fmt.hi, math.floor(q * Fraction(2) ** fmt.frac + Fraction(1, 2))))


def real(c: int, frac: int) -> Fraction:
    return Fraction(int(c)) / Fraction(2) ** frac


def fn_code(fn, q: Fraction, fmt: Format) -> int:
    with np.errstate(over="ignore"):
        return code(Fraction(float(fn(np.float64(float(q))))), fmt)


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def reference(im, X: np.ndarray):
    """Codes of every operator (N, T, H) and the logits, from exact rationals."""
    f, o, a = im.fmt, im.fmt.out, im.fmt.acc_frac
    N, T, F = X.shape
    H = im.hidden
    xc = [[[code(Fraction(float(v)), f.x) for v in X[n, t]] for t in range(T)] for n in range(N)]
    trace = {name: np.zeros((N, T, H), dtype=np.int64) for name in OPS}
    logits = []
    for n in range(N):
        h = [0] * H
        for t in range(T):
            c = {}
            for op in LINEAR:
                name = OPS[op]
                src = xc[n][t] if name.startswith("lin_x") else h
                w, b = im.weights[name], im.biases[name]
                c[name] = [
                    max(INT32_MIN, min(INT32_MAX, sum(int(w[i, j]) * src[j] for j in range(len(src))) + int(b[i])))
                    for i in range(H)
                ]
            R = lambda name, k: real(c[name][k], o[name].frac if name in o else a[name])  # noqa: E731, B023
            for k in range(H):
                c.setdefault("add_r", []).append(code(R("lin_xr", k) + R("lin_hr", k), o["add_r"]))
                c.setdefault("sig_r", []).append(fn_code(sigmoid, R("add_r", k), o["sig_r"]))
                c.setdefault("add_z", []).append(code(R("lin_xz", k) + R("lin_hz", k), o["add_z"]))
                c.setdefault("sig_z", []).append(fn_code(sigmoid, R("add_z", k), o["sig_z"]))
                c.setdefault("mul_rn", []).append(code(R("sig_r", k) * R("lin_hn", k), o["mul_rn"]))
                c.setdefault("add_n", []).append(code(R("lin_xn", k) + R("mul_rn", k), o["add_n"]))
                c.setdefault("tanh_n", []).append(fn_code(np.tanh, R("add_n", k), o["tanh_n"]))
                c.setdefault("sub_z", []).append(code(1 - R("sig_z", k), o["sub_z"]))
                c.setdefault("mul_zn", []).append(code(R("sub_z", k) * R("tanh_n", k), o["mul_zn"]))
                c.setdefault("mul_zh", []).append(code(R("sig_z", k) * real(h[k], f.h.frac), o["mul_zh"]))
                c.setdefault("add_h", []).append(code(R("mul_zn", k) + R("mul_zh", k), o["add_h"]))
            for name in OPS:
                trace[name][n, t] = c[name]
            h = c["add_h"]
        logits.append(
            [
                max(
                    INT32_MIN,
                    min(INT32_MAX, sum(int(im.head_weight[i, j]) * h[j] for j in range(H)) + int(im.head_bias[i])),
                )
                for i in range(im.head_weight.shape[0])
            ]
        )
    return np.array(logits, dtype=np.int64), trace


TINY = small(features=2, hidden=4, classes=3, steps=4, n=5, seed=11, weight_scale=2.0)


def assert_matches_reference(im, X):
    logits, trace = engine.run(im, im.quantize_input(X), trace=True)
    want_logits, want_trace = reference(im, X)
    for name in OPS:
        assert np.array_equal(trace[name], want_trace[name]), name
    assert np.array_equal(logits, want_logits)


@pytest.mark.parametrize("b", [2, 3, 8])
def test_engine_equals_the_exact_rational_cell_for_homogeneous_genomes(b):
    assert_matches_reference(build(homogeneous(b), TINY.model, TINY.calib), TINY.X)


@settings(max_examples=15, deadline=None)
@given(g=genomes)
def test_engine_equals_the_exact_rational_cell_for_mixed_genomes(g):
    assert_matches_reference(build(g, TINY.model, TINY.calib), TINY.X)


# -- integer-only -------------------------------------------------------------


@pytest.mark.parametrize("b", [2, 8])
def test_engine_works_in_integers_only(b, models):
    for s in models.values():
        im = build(homogeneous(b), s.model, s.calib)
        x = im.quantize_input(s.X)
        assert x.dtype == np.int64
        logits, trace = engine.run(im, x, trace=True)
        assert logits.dtype == np.int64
        assert set(trace) == set(OPS)
        for name, v in trace.items():
            assert v.dtype == np.int64, name
        for arr in [*im.weights.values(), *im.biases.values(), *im.lut.values(), im.head_weight, im.head_bias]:
            assert arr.dtype == np.int64


def test_engine_trace_shapes(models):
    s = models["F3-H8-C4"]
    im = build(homogeneous(5), s.model, s.calib)
    N, T, _ = s.X.shape
    logits, trace = engine.run(im, im.quantize_input(s.X), trace=True)
    assert logits.shape == (N, 4)
    assert all(v.shape == (N, T, 8) for v in trace.values())
    assert np.array_equal(engine.run(im, im.quantize_input(s.X)), logits)


@settings(max_examples=25, deadline=None)
@given(g=genomes, which=st.sampled_from(["F3-H8-C4", "F1-H5-C2", "F6-H12-C5-big"]))
def test_every_code_lies_in_its_format(g, which, models):
    s = models[which]
    im = build(g, s.model, s.calib)
    logits, trace = engine.run(im, im.quantize_input(s.X), trace=True)
    for name, fmt in im.fmt.out.items():
        assert trace[name].min() >= fmt.lo and trace[name].max() <= fmt.hi, name
    for op in LINEAR:
        v = trace[OPS[op]]
        assert v.min() >= INT32_MIN and v.max() <= INT32_MAX
    # sigmoid and 1 - z are unsigned; tanh's codes are within +-1
    for name in ("sig_r", "sig_z", "sub_z"):
        assert trace[name].min() >= 0
    one = 1 << im.fmt.out["tanh_n"].frac
    assert np.abs(trace["tanh_n"]).max() <= one


@pytest.mark.parametrize("which", ["F3-H8-C4", "F1-H5-C2", "F6-H12-C5-big"])
def test_two_bits_saturate_and_the_codes_are_clamped_to_the_format(which, models):
    """At 2 bits the exact results leave the format: the engine must clamp them."""
    s = models[which]
    im = build(homogeneous(2), s.model, s.calib)
    _, c = engine.run(im, im.quantize_input(s.X), trace=True)
    o, a = im.fmt.out, im.fmt.acc_frac
    wide = lambda fmt: Format(62, fmt.frac, fmt.signed)  # noqa: E731 - same scale, no saturation
    unclamped = {
        "add_r": align_add(c["lin_xr"], a["lin_xr"], c["lin_hr"], a["lin_hr"], wide(o["add_r"])),
        "add_n": align_add(c["lin_xn"], a["lin_xn"], c["mul_rn"], o["mul_rn"].frac, wide(o["add_n"])),
        "add_h": align_add(c["mul_zn"], o["mul_zn"].frac, c["mul_zh"], o["mul_zh"].frac, wide(o["add_h"])),
        "mul_rn": requantize(c["sig_r"] * c["lin_hn"], o["sig_r"].frac + a["lin_hn"], wide(o["mul_rn"])),
        "sub_z": (1 << o["sig_z"].frac) - c["sig_z"],
    }
    saturated = set()
    for name, v in unclamped.items():
        fmt = o[name]
        if ((v > fmt.hi) | (v < fmt.lo)).any():
            saturated.add(name)
        assert np.array_equal(c[name], np.clip(v, fmt.lo, fmt.hi)), name
    assert saturated, "nothing saturates at 2 bits"
    # the state uses its top code, and sigmoid and tanh reach the ends of their tables
    assert (c["add_h"] == o["add_h"].hi).any()
    assert (c["sig_z"] == o["sig_z"].hi).any()
    assert (c["tanh_n"] == o["tanh_n"].lo).any() and (c["tanh_n"] == o["tanh_n"].hi).any()


def test_all_8_bits_approximate_the_float_model(models):
    for name, s in models.items():
        with torch.no_grad():
            want = s.model(torch.as_tensor(s.X)).numpy()
        err = {}
        for b in (2, 4, 6, 8):
            im = build(homogeneous(b), s.model, s.calib)
            got = engine.run(im, im.quantize_input(s.X)) * 2.0**-im.fmt.logit_frac
            err[b] = float(np.abs(got - want).mean())
        assert err[8] < 0.1 * want.std(), name
        assert err[8] < err[6] < err[4] < err[2], (name, err)


def test_predict_is_the_argmax_of_the_logits(models):
    s = models["F3-H8-C4"]
    im = build(homogeneous(6), s.model, s.calib)
    assert np.array_equal(engine.predict(im, s.X), engine.run(im, im.quantize_input(s.X)).argmax(axis=1))


def test_the_state_starts_at_zero_and_a_zero_input_sequence_is_deterministic(models):
    s = models["F3-H8-C4"]
    im = build(homogeneous(4), s.model, s.calib)
    zeros = np.zeros((2, 3, 3), dtype=np.int64)
    logits, trace = engine.run(im, zeros, trace=True)
    assert np.array_equal(logits[0], logits[1])
    # at step 0, h = 0: the hidden linear operators see only their biases
    for name in ("lin_hr", "lin_hz", "lin_hn"):
        assert np.array_equal(trace[name][0, 0], im.biases[name])
