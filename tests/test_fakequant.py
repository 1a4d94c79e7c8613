"""gruq.fakequant: the torch simulation equals the integer engine bit for bit.

For every genome, every operator's codes at every step and the logits of the
simulation must be identical to the engine's; a population of genomes in one
pass must give what each genome gives alone; and with the straight-through
estimator the same forward pass must carry finite gradients to every parameter.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import MODELS
from hypothesis import given, settings
from hypothesis import strategies as st

from gruq import engine
from gruq.fakequant import Simulation
from gruq.genome import homogeneous
from gruq.ops import OPS
from gruq.scheme import build

genomes = st.lists(st.integers(2, 8), min_size=17, max_size=17).map(tuple)
model_names = st.sampled_from(sorted(MODELS))


def simulate(s, genomes_, ste=False, trace=False):
    sim = Simulation(s.model, s.calib, list(genomes_), ste=ste)
    with torch.no_grad():
        return sim.forward(torch.as_tensor(s.X), trace=trace)


def assert_bit_exact(s, genome):
    im = build(genome, s.model, s.calib)
    ref_logits, ref_codes = engine.run(im, im.quantize_input(s.X), trace=True)
    logits, codes = simulate(s, [genome], trace=True)
    assert set(codes) == set(OPS)
    for name in OPS:
        got = codes[name][0].numpy()
        assert got.shape == ref_codes[name].shape, name
        assert np.array_equal(got, ref_codes[name]), f"{name}: {int((got != ref_codes[name]).sum())} codes differ"
    assert logits.shape == (1, *ref_logits.shape)
    assert np.array_equal(logits[0].numpy(), ref_logits)


@pytest.mark.parametrize("b", [2, 8])
@pytest.mark.parametrize("which", sorted(MODELS))
def test_homogeneous_genomes_are_bit_exact(which, b, models):
    assert_bit_exact(models[which], homogeneous(b))


@settings(max_examples=25, deadline=None)
@given(g=genomes, which=model_names)
def test_any_genome_is_bit_exact(g, which, models):
    assert_bit_exact(models[which], g)


@pytest.mark.parametrize("which", sorted(MODELS))
def test_saturating_two_bit_cell_is_still_bit_exact(which, models):
    s = models[which]
    _, codes = simulate(s, [homogeneous(2)], trace=True)
    im = build(homogeneous(2), s.model, s.calib)
    hit = [name for name, fmt in im.fmt.out.items() if (codes[name] == fmt.lo).any() or (codes[name] == fmt.hi).any()]
    assert "add_h" in hit and "sig_z" in hit and "tanh_n" in hit
    assert_bit_exact(s, homogeneous(2))


@settings(max_examples=8, deadline=None)
@given(pop=st.lists(genomes, min_size=2, max_size=4), which=model_names)
def test_a_population_gives_each_genome_its_own_result(pop, which, models):
    s = models[which]
    logits, codes = simulate(s, pop, trace=True)
    assert logits.shape[0] == len(pop)
    for p, g in enumerate(pop):
        alone, alone_codes = simulate(s, [g], trace=True)
        assert torch.equal(logits[p], alone[0]), p
        for name in OPS:
            assert torch.equal(codes[name][p], alone_codes[name][0]), (p, name)


def test_population_of_all_homogeneous_genomes(models):
    s = models["F6-H12-C5-big"]
    pop = [homogeneous(b) for b in range(2, 9)]
    logits = simulate(s, pop).numpy()
    for p, g in enumerate(pop):
        im = build(g, s.model, s.calib)
        assert np.array_equal(logits[p], engine.run(im, im.quantize_input(s.X)))


def test_codes_are_integers_within_their_formats(models):
    s = models["F3-H8-C4"]
    g = (2, 3, 4, 5, 6, 7, 8, 2, 3, 4, 5, 6, 7, 8, 2, 3, 4)
    _, codes = simulate(s, [g], trace=True)
    im = build(g, s.model, s.calib)
    for name, v in codes.items():
        assert torch.equal(v, torch.round(v)), name
    for name, fmt in im.fmt.out.items():
        assert codes[name].min() >= fmt.lo and codes[name].max() <= fmt.hi, name


def test_logit_scale_turns_codes_into_real_logits(models):
    s = models["F3-H8-C4"]
    pop = [homogeneous(8), homogeneous(3)]
    sim = Simulation(s.model, s.calib, pop)
    scale = sim.logit_scale()
    assert scale.shape[0] == 2
    for p, g in enumerate(pop):
        im = build(g, s.model, s.calib)
        assert float(scale[p].flatten()[0]) == 2.0**-im.fmt.logit_frac
    with torch.no_grad():
        real = (sim.forward(torch.as_tensor(s.X)) * scale)[0]
        want = s.model(torch.as_tensor(s.X)).double()
    assert float((real - want).abs().mean()) < 0.1 * float(want.std())


# -- straight-through estimator ---------------------------------------------


@pytest.mark.parametrize(
    "genome", [homogeneous(8), homogeneous(4), (2, 3, 4, 5, 6, 7, 8, 2, 3, 4, 5, 6, 7, 8, 2, 3, 4)]
)
def test_ste_gradients_reach_every_parameter(genome, models):
    s = models["F3-H8-C4"]
    s.model.zero_grad()
    sim = Simulation(s.model, s.calib, [genome], ste=True)
    x = torch.as_tensor(s.X)
    y = torch.arange(len(s.X)) % 4
    logits = (sim.forward(x) * sim.logit_scale())[0]
    torch.nn.functional.cross_entropy(logits, y).backward()
    for name, p in s.model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    s.model.zero_grad()


def test_ste_gradients_are_finite_when_everything_saturates(models):
    s = models["F6-H12-C5-big"]
    s.model.zero_grad()
    sim = Simulation(s.model, s.calib, [homogeneous(2)], ste=True)
    logits = (sim.forward(torch.as_tensor(s.X)) * sim.logit_scale())[0]
    torch.nn.functional.cross_entropy(logits, torch.arange(len(s.X)) % 5).backward()
    grads = [p.grad for p in s.model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    s.model.zero_grad()


@pytest.mark.parametrize(
    "genome", [homogeneous(2), homogeneous(8), (8, 2, 5, 3, 7, 2, 4, 8, 6, 3, 2, 5, 8, 4, 7, 2, 6)]
)
def test_ste_changes_gradients_not_values(genome, models):
    s = models["F1-H5-C2"]
    x = torch.as_tensor(s.X)
    plain, plain_codes = Simulation(s.model, s.calib, [genome]).forward(x, trace=True)
    ste, ste_codes = Simulation(s.model, s.calib, [genome], ste=True).forward(x, trace=True)
    assert torch.equal(plain.detach(), ste.detach())
    for name in OPS:
        assert torch.equal(plain_codes[name].detach(), ste_codes[name].detach()), name
    s.model.zero_grad()


def test_simulation_does_not_change_the_model(models):
    s = models["F3-H8-C4"]
    before = {k: v.clone() for k, v in s.model.state_dict().items()}
    simulate(s, [homogeneous(2), homogeneous(8)])
    after = s.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
