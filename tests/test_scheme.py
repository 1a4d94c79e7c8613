"""gruq.scheme: the fixed-point format of every tensor, and the integer model.

The rules are DESIGN.md's: calibrated signed outputs get f = b - 1 - e; sigmoid
outputs and 1 - z are unsigned with scale 2^-b; tanh is signed with scale
2^-(b-1); weights get f from max|W|; accumulators are weight scale x input
scale; x and the head are 8 bits outside the genome.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import small
from hypothesis import given, settings
from hypothesis import strategies as st

from gruq.errors import GruqError
from gruq.fixedpoint import Format, quantize
from gruq.genome import homogeneous
from gruq.ops import CALIBRATED, INPUT_LINEAR, LINEAR, OPS
from gruq.scheme import build, formats, weight_exponents

genomes = st.lists(st.integers(2, 8), min_size=17, max_size=17).map(tuple)
MODEL = small(weight_scale=2.0)


@settings(max_examples=40, deadline=None)
@given(g=genomes)
def test_formats_follow_the_design_rules(g):
    calib, wexp = MODEL.calib, weight_exponents(MODEL.model)
    f = formats(g, calib, wexp)
    b = dict(zip(OPS, g))
    assert f.x == Format(8, 7 - calib.x)
    for name in CALIBRATED:
        assert f.out[name] == Format(b[name], b[name] - 1 - calib.ops[name], signed=True)
    for name in ("sig_r", "sig_z", "sub_z"):
        assert f.out[name] == Format(b[name], b[name], signed=False)
    assert f.out["tanh_n"] == Format(b["tanh_n"], b["tanh_n"] - 1, signed=True)
    assert set(f.out) == set(OPS) - {OPS[i] for i in LINEAR}
    assert f.h == f.out["add_h"]
    for op in LINEAR:
        name = OPS[op]
        assert f.weight[name] == Format(b[name], b[name] - 1 - wexp[name], signed=True)
        source = f.x if op in INPUT_LINEAR else f.h
        assert f.acc_frac[name] == f.weight[name].frac + source.frac
    assert f.head_weight == Format(8, 7 - wexp["head"])
    assert f.logit_frac == f.head_weight.frac + f.h.frac


def test_weight_exponents_bound_each_weight_matrix():
    m = MODEL.model
    wexp = weight_exponents(m)
    for op in LINEAR:
        mx = float(m.linear_weight(op).detach().abs().max())
        assert mx <= 2.0 ** wexp[OPS[op]] < 2 * mx
    mx = float(m.head.weight.detach().abs().max())
    assert mx <= 2.0 ** wexp["head"] < 2 * mx


@pytest.mark.parametrize("b", [2, 5, 8])
def test_build_quantizes_weights_and_biases_at_their_formats(b):
    m = MODEL.model
    im = build(homogeneous(b), m, MODEL.calib)
    for op in LINEAR:
        name = OPS[op]
        w, fmt = im.weights[name], im.fmt.weight[name]
        assert w.dtype == np.int64 and w.shape == tuple(m.linear_weight(op).shape)
        assert w.min() >= fmt.lo and w.max() <= fmt.hi
        assert np.array_equal(w, quantize(m.linear_weight(op).detach().double().numpy(), fmt))
        bias = im.biases[name]
        assert bias.dtype == np.int64
        want = quantize(m.linear_bias(op).detach().double().numpy(), Format(32, im.fmt.acc_frac[name]))
        assert np.array_equal(bias, want)
    assert im.head_weight.shape == tuple(m.head.weight.shape)
    assert im.head_weight.min() >= -128 and im.head_weight.max() <= 127
    assert im.hidden == m.hidden


def test_two_bit_weights_use_all_four_codes_or_fewer():
    im = build(homogeneous(2), MODEL.model, MODEL.calib)
    for w in im.weights.values():
        assert set(np.unique(w)) <= {-2, -1, 0, 1}


@pytest.mark.parametrize("b", [2, 8])
def test_activation_tables_cover_every_input_code(b):
    im = build(homogeneous(b), MODEL.model, MODEL.calib)
    o = im.fmt.out
    for name, src in (("sig_r", "add_r"), ("sig_z", "add_z"), ("tanh_n", "add_n")):
        lut = im.lut[name]
        assert lut.dtype == np.int64
        assert len(lut) == o[src].levels <= 256
        assert lut.min() >= o[name].lo and lut.max() <= o[name].hi


def test_build_rejects_a_bad_genome():
    with pytest.raises(GruqError):
        build((8,) * 16, MODEL.model, MODEL.calib)


def test_quantize_input_gives_8_bit_codes():
    im = build(homogeneous(4), MODEL.model, MODEL.calib)
    codes = im.quantize_input(MODEL.X)
    assert codes.dtype == np.int64 and codes.shape == MODEL.X.shape
    assert codes.min() >= -128 and codes.max() <= 127
