"""gruq.fakequant's fast path (what the search runs) equals the integer engine.

The other fakequant tests trace every operator, which takes the reference
path; these check the fast path itself: its logits and its state h after every
step, for populations of genomes, in float32 and in float64, on one thread and
on several, and its fall-back to the reference path when it cannot prove
itself exact. No timings here (see bench/eval_cost.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import MODELS, small
from hypothesis import given, settings
from hypothesis import strategies as st

from gruq import engine
from gruq.fakequant import Simulation, _Fast
from gruq.genome import homogeneous
from gruq.model import calibrate
from gruq.scheme import build

genomes = st.lists(st.integers(2, 8), min_size=17, max_size=17).map(tuple)
model_names = st.sampled_from(sorted(MODELS))


def engine_run(s, genome):
    im = build(genome, s.model, s.calib)
    return engine.run(im, im.quantize_input(s.X), trace=True)


def assert_fast_is_exact(s, pop, dtype=None):
    """Logits and every step's h of the fast path equal the engine's, genome by genome."""
    sim = Simulation(s.model, s.calib, pop)
    fast = _Fast.plan(sim)
    assert fast is not None
    if dtype is not None:
        fast = _Fast.plan(sim, dtype)
    logits, hs = fast.run(sim.input_codes(torch.as_tensor(s.X)), states=True)
    assert logits.shape == (len(pop), len(s.X), s.model.head.out_features)
    for p, g in enumerate(pop):
        ref_logits, ref_codes = engine_run(s, g)
        assert np.array_equal(hs[p].numpy(), ref_codes["add_h"]), (g, "h")
        assert np.array_equal(logits[p].numpy(), ref_logits), (g, "logits")


@settings(max_examples=15, deadline=None)
@given(pop=st.lists(genomes, min_size=1, max_size=6), which=model_names)
def test_fast_path_is_bit_exact(pop, which, models):
    assert_fast_is_exact(models[which], pop)


@pytest.mark.parametrize("which", sorted(MODELS))
def test_fast_path_homogeneous_genomes_in_both_precisions(which, models):
    pop = [homogeneous(b) for b in range(2, 9)]
    for dtype in (torch.float32, torch.float64):
        assert_fast_is_exact(models[which], pop, dtype)


def test_forward_without_trace_takes_the_fast_path_and_agrees(models):
    s = models["F6-H12-C5-big"]
    pop = [homogeneous(2), homogeneous(8), (8, 2, 5, 3, 7, 2, 4, 8, 6, 3, 2, 5, 8, 4, 7, 2, 6)]
    sim = Simulation(s.model, s.calib, pop)
    assert _Fast.plan(sim) is not None
    x = torch.as_tensor(s.X)
    with torch.no_grad():
        fast = sim.forward(x)
        reference, _ = sim.forward(x, trace=True)
    assert torch.equal(fast, reference)


def test_blocks_and_threads_do_not_change_the_codes(models, monkeypatch):
    """Tiny blocks (many genome groups and sequence tiles) on two threads."""
    import gruq.fakequant as fq

    s = models["F3-H8-C4"]
    pop = [homogeneous(b) for b in range(2, 9)] + [(2, 3, 4, 5, 6, 7, 8, 2, 3, 4, 5, 6, 7, 8, 2, 3, 4)]
    sim = Simulation(s.model, s.calib, pop)
    xc = sim.input_codes(torch.as_tensor(s.X))
    whole = _Fast.plan(sim).run(xc)
    monkeypatch.setattr(fq, "ELEMENTS", 8 * 5)  # 5 sequences of 8 hidden units per block
    for workers in (1, 2, 3):
        assert torch.equal(_Fast.plan(sim).run(xc, workers=workers), whole)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            assert torch.equal(sim.forward(torch.as_tensor(s.X)), whole)
        assert torch.get_num_threads() == 2  # forward restores torch's thread count
    finally:
        torch.set_num_threads(before)


def test_float64_when_float32_cannot_be_proved_exact():
    """Input weights 2^12 times finer than the hidden ones: the sums need more than 24 bits."""
    s = small(features=3, hidden=8, classes=4, steps=6, seed=0)
    with torch.no_grad():
        s.model.gru.weight_ih_l0.mul_(2.0**-12)
        s.model.gru.bias_ih_l0.zero_()
    s.calib = calibrate(s.model, s.X)
    pop = [homogeneous(8), homogeneous(5), (2, 3, 4, 5, 6, 7, 8, 2, 3, 4, 5, 6, 7, 8, 2, 3, 4)]
    fast = _Fast.plan(Simulation(s.model, s.calib, pop))
    assert fast is not None and fast.dtype == torch.float64
    assert_fast_is_exact(s, pop)


def test_reference_path_when_an_accumulator_can_saturate():
    """Tiny weights make the bias codes overflow int32: the fast path steps aside."""
    s = small(features=3, hidden=8, classes=4, steps=6, seed=0)
    with torch.no_grad():
        s.model.gru.weight_ih_l0.mul_(2.0**-20)
    s.calib = calibrate(s.model, s.X)
    pop = [homogeneous(b) for b in range(2, 9)]  # more than one reference pass of genomes
    sim = Simulation(s.model, s.calib, pop)
    assert _Fast.plan(sim) is None
    with torch.no_grad():
        logits = sim.forward(torch.as_tensor(s.X))
    for p, g in enumerate(pop):
        assert np.array_equal(logits[p].numpy(), engine_run(s, g)[0])
