"""Stacked GRU layers: 17 genes per layer, each layer the one cell, layer k + 1
reading layer k's add_h codes (DESIGN.md, "Stacked layers and users' models").

The properties of the one-layer tests must hold for every L: the integer engine,
the simulation's reference path (every operator of every layer) and its fast
path agree exactly; sizes and BOPs add up over layers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import STACKED, small
from hypothesis import given, settings
from hypothesis import strategies as st

from gruq import engine
from gruq.errors import GruqError
from gruq.fakequant import Simulation, _Fast
from gruq.genome import (
    ModelShape,
    bops,
    cells,
    expand,
    homogeneous,
    layers_of,
    op_bytes,
    parse_bits,
    size_bytes,
    validate,
)
from gruq.model import Calibration, Checkpoint, GRUClassifier, float_trace, load_checkpoint
from gruq.ops import CALIBRATED, OPS, layer_names
from gruq.scheme import IntegerModel, build

names = sorted(STACKED)


def genomes_for(layers: int):
    return st.lists(st.integers(2, 8), min_size=17 * layers, max_size=17 * layers).map(tuple)


stacked_genome = st.sampled_from(names).flatmap(lambda n: st.tuples(st.just(n), genomes_for(STACKED[n]["layers"])))


# -- genomes ----------------------------------------------------------------------


def test_gene_names_are_prefixed_by_layer_for_stacked_models():
    assert layer_names(1) == OPS
    two = layer_names(2)
    assert len(two) == 34 and two[0] == "l0.lin_xr" and two[16] == "l0.add_h" and two[17] == "l1.lin_xr"
    assert two[-1] == "l1.add_h"


def test_validate_takes_17_genes_per_layer_and_names_the_bad_one():
    assert validate([8] * 34, 2) == (8,) * 34
    with pytest.raises(GruqError, match="34 bit widths"):
        validate([8] * 17, 2)
    bad = [8] * 34
    bad[20] = 9
    with pytest.raises(GruqError, match="l1.sig_r"):
        validate(bad, 2)


def test_bits_take_one_17_or_17_per_layer_widths():
    assert parse_bits("4") == (4,) * 17
    g = tuple(range(2, 9)) * 4 + (2, 3, 4, 5, 6, 7)
    assert parse_bits(",".join(map(str, g))) == g and layers_of(g) == 2
    assert expand(parse_bits("4"), 3) == (4,) * 51
    seventeen = g[:17]
    assert expand(seventeen, 2) == seventeen * 2  # the same widths for every layer
    assert expand(g, 2) == g
    for text in (",".join(["8"] * 35), ",".join(["8"] * 85)):
        with pytest.raises(GruqError):
            parse_bits(text)
    with pytest.raises(GruqError, match="51 bit widths"):
        expand(g, 3)


def test_size_and_bops_add_up_over_layers_by_hand():
    shape = ModelShape(features=2, hidden=3, classes=4, steps=5, layers=2)
    g0 = (2, 3, 4, 5, 6, 7, 8, 2, 3, 4, 5, 6, 7, 8, 2, 3, 4)
    g1 = (8, 7, 6, 5, 4, 3, 2, 8, 7, 6, 5, 4, 3, 2, 8, 7, 5)
    # layer 0: input 3x2 at 2, 6, 3 bits; hidden 3x3 at 3, 7, 4. Layer 1: input 3x3 at 8, 4, 7; hidden 3x3 at 7, 3, 6
    weights = (6 * (2 + 6 + 3) + 9 * (3 + 7 + 4) + 9 * (8 + 4 + 7) + 9 * (7 + 3 + 6)) / 8
    biases = 2 * 6 * 3 * 4
    head = 3 * 4 * 1 + 4 * 4
    assert size_bytes(g0 + g1, shape) == weights + biases + head
    assert op_bytes(g0 + g1, shape)[17] == 9 * 8 / 8
    one = ModelShape(features=2, hidden=3, classes=4, steps=5)
    top = ModelShape(features=3, hidden=3, classes=4, steps=5)
    # BOPs: layer 0 as a one-layer model without its head; layer 1 with the head, but reading
    # its input x at g0's add_h width (4 bits), not the model input's 8
    head0 = 3 * 4 * 8 * g0[16]
    layer1 = bops(g1, top) - 5 * 3 * 3 * (8 - g0[16]) * (g1[0] + g1[4] + g1[8])
    assert bops(g0 + g1, shape) == bops(g0, one) - head0 + layer1


# -- the float model ------------------------------------------------------------


@pytest.mark.parametrize("layers", [2, 3])
def test_unrolled_layers_match_torch_gru_num_layers(layers):
    s = small(features=4, hidden=7, classes=3, steps=8, n=10, seed=layers, layers=layers)
    x = torch.as_tensor(s.X)
    with torch.no_grad():
        logits, peaks = float_trace(s.model, x)
        want = s.model(x)
    assert torch.allclose(logits, want, atol=1e-5)
    assert len(peaks) == layers and len(s.calib.layers) == layers
    assert s.model.gru.num_layers == layers and set(s.model.state_dict()) >= {f"gru.weight_ih_l{layers - 1}"}


def test_stacked_checkpoint_round_trips_and_one_layer_records_are_unchanged(tmp_path):
    s = small(layers=2, seed=5)
    d = s.calib.to_dict()
    assert set(d) == {"x", "layers"} and Calibration.from_dict(d) == s.calib
    assert set(small().calib.to_dict()) == {"x", *CALIBRATED}  # one layer: the record of old checkpoints
    Checkpoint(model=s.model, calibration=s.calib, meta={"task": "toy"}).save(tmp_path / "two.pt")
    back = load_checkpoint("toy", tmp_path / "two.pt")
    assert back.model.layers == 2 and back.calibration == s.calib
    x = torch.as_tensor(s.X)
    with torch.no_grad():
        assert torch.equal(back.model(x), s.model(x))
    raw = torch.load(tmp_path / "two.pt", weights_only=True)
    assert raw["shape"] == [3, 8, 4, 2]


# -- bit-exactness for every L -----------------------------------------------------


def assert_bit_exact(s, genome):
    im = build(genome, s.model, s.calib)
    ref_logits, ref_codes = engine.run(im, im.quantize_input(s.X), trace=True)
    assert set(ref_codes) == set(layer_names(s.model.layers))
    with torch.no_grad():
        logits, codes = Simulation(s.model, s.calib, [genome]).forward(torch.as_tensor(s.X), trace=True)
    for name in ref_codes:
        got = codes[name][0].numpy()
        assert np.array_equal(got, ref_codes[name]), f"{name}: {int((got != ref_codes[name]).sum())} codes differ"
    assert np.array_equal(logits[0].numpy(), ref_logits)
    with torch.no_grad():
        fast = Simulation(s.model, s.calib, [genome]).forward(torch.as_tensor(s.X))
    assert np.array_equal(fast[0].numpy(), ref_logits)


@pytest.mark.parametrize("b", [2, 4, 8])
@pytest.mark.parametrize("which", names)
def test_homogeneous_genomes_are_bit_exact_for_every_layer(which, b, stacked):
    s = stacked[which]
    assert_bit_exact(s, homogeneous(b, s.model.layers))


@settings(max_examples=25, deadline=None)
@given(case=stacked_genome)
def test_any_stacked_genome_is_bit_exact(case, stacked):
    which, g = case
    assert_bit_exact(stacked[which], g)


@settings(max_examples=10, deadline=None)
@given(data=st.data(), which=st.sampled_from(names))
def test_fast_path_is_bit_exact_for_a_population_in_both_precisions(data, which, stacked):
    s = stacked[which]
    pop = data.draw(st.lists(genomes_for(s.model.layers), min_size=1, max_size=5))
    sim = Simulation(s.model, s.calib, pop)
    assert _Fast.plan(sim) is not None
    for dtype in (None, torch.float32, torch.float64):
        logits, hs = _Fast.plan(sim, dtype).run(sim.input_codes(torch.as_tensor(s.X)), states=True)
        for p, g in enumerate(pop):
            im = build(g, s.model, s.calib)
            ref_logits, ref_codes = engine.run(im, im.quantize_input(s.X), trace=True)
            assert np.array_equal(hs[p].numpy(), ref_codes[f"l{s.model.layers - 1}.add_h"]), (g, dtype)
            assert np.array_equal(logits[p].numpy(), ref_logits), (g, dtype)


def test_layer_k_plus_1_reads_layer_k_add_h_codes_without_requantization(stacked):
    """Layer 1 alone, fed layer 0's add_h codes, gives the stacked model's layer 1 codes."""
    s = stacked["L2-F3-H8-C4"]
    g = tuple(range(2, 9)) * 4 + (5, 3, 8, 6, 4, 7)
    im = build(g, s.model, s.calib)
    logits, codes = engine.run(im, im.quantize_input(s.X), trace=True)
    top = IntegerModel(genome=cells(g)[1], cells=im.cells[1:], head_weight=im.head_weight, head_bias=im.head_bias)
    assert im.cells[1].fmt.x == im.cells[0].fmt.h
    alone, alone_codes = engine.run(top, codes["l0.add_h"], trace=True)
    assert np.array_equal(alone, logits)
    for name in OPS:
        assert np.array_equal(alone_codes[name], codes[f"l1.{name}"]), name


def test_all_8_bits_approximate_the_stacked_float_model(stacked):
    s = stacked["L2-F3-H8-C4"]
    im = build(homogeneous(8, 2), s.model, s.calib)
    real = engine.run(im, im.quantize_input(s.X)) * 2.0**-im.fmt.logit_frac
    with torch.no_grad():
        want = s.model(torch.as_tensor(s.X)).double().numpy()
    assert np.abs(real - want).mean() < 0.1 * want.std()


def test_ste_gradients_reach_every_layer(stacked):
    s = stacked["L3-F2-H6-C3-big"]
    model = GRUClassifier(2, 6, 3, 3)
    model.load_state_dict(s.model.state_dict())
    sim = Simulation(model, s.calib, [homogeneous(6, 3)], ste=True)
    logits = (sim.forward(torch.as_tensor(s.X)) * sim.logit_scale())[0]
    torch.nn.functional.cross_entropy(logits, torch.arange(len(s.X)) % 3).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_a_genome_of_the_wrong_length_is_refused(stacked):
    s = stacked["L2-F3-H8-C4"]
    with pytest.raises(GruqError, match="34"):
        Simulation(s.model, s.calib, [homogeneous(8)])
    with pytest.raises(GruqError, match="34"):
        build(homogeneous(8), s.model, s.calib)


def test_fine_tuning_a_stacked_model_trains_every_layer_and_lowers_its_loss(stacked):
    from gruq.model import Checkpoint
    from gruq.tasks.base import Split
    from gruq.train import finetune_many

    s = stacked["L2-F3-H8-C4"]
    ckpt = Checkpoint(model=s.model, calibration=s.calib, meta={})
    seen: list[list[float]] = []
    genomes = [homogeneous(4, 2), (3,) * 17 + (6,) * 17]
    train = Split(s.X, np.arange(len(s.X)) % 4)
    tuned = finetune_many(ckpt, genomes, train, 3, [0, 1], progress=lambda e, n, m: seen.append(m["loss"]))
    before = s.model.state_dict()
    for t in tuned:
        assert t.model.layers == 2 and t.calibration == s.calib
        for name, value in t.model.state_dict().items():
            assert not torch.equal(value, before[name]), name
    assert all(last < first for first, last in zip(seen[0], seen[-1]))
