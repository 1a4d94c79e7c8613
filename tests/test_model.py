"""gruq.model: the unrolled float cell equals torch.nn.GRU; calibration; checkpoints."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import small

from gruq.errors import GruqError
from gruq.model import Calibration, Checkpoint, GRUClassifier, calibrate, checkpoint_path, float_trace, load_checkpoint
from gruq.ops import CALIBRATED, LINEAR, OPS


@pytest.mark.parametrize(
    "features,hidden,classes,steps,batch",
    [
        (1, 1, 2, 1, 1),
        (3, 8, 4, 6, 5),
        (28, 16, 10, 12, 3),
        (6, 32, 6, 30, 4),
        (12, 5, 9, 29, 7),
    ],
)
def test_unrolled_cell_matches_torch_gru(features, hidden, classes, steps, batch):
    torch.manual_seed(features * 100 + hidden)
    model = GRUClassifier(features, hidden, classes).eval()
    x = torch.randn(batch, steps, features)
    with torch.no_grad():
        want = model(x)
        got, _ = float_trace(model, x)
    assert got.shape == (batch, classes)
    assert torch.allclose(got, want, atol=1e-5, rtol=0)


def test_unrolled_cell_hidden_state_matches_torch_gru():
    torch.manual_seed(3)
    model = GRUClassifier(4, 7, 3).eval()
    x = torch.randn(2, 9, 4)
    with torch.no_grad():
        out, _ = model.gru(x)
        # the head is linear: recover the last h from a head that is the identity
        model.head = torch.nn.Linear(7, 7)
        model.head.weight.copy_(torch.eye(7))
        model.head.bias.zero_()
        h, _ = float_trace(model, x)
    assert torch.allclose(h, out[:, -1], atol=1e-6, rtol=0)


def test_linear_operators_are_slices_of_the_stacked_gru_weights():
    torch.manual_seed(0)
    model = GRUClassifier(3, 4, 2)
    H = 4
    g = model.gru
    expect = {
        "lin_xr": (g.weight_ih_l0[:H], g.bias_ih_l0[:H]),
        "lin_hr": (g.weight_hh_l0[:H], g.bias_hh_l0[:H]),
        "lin_xz": (g.weight_ih_l0[H : 2 * H], g.bias_ih_l0[H : 2 * H]),
        "lin_hz": (g.weight_hh_l0[H : 2 * H], g.bias_hh_l0[H : 2 * H]),
        "lin_xn": (g.weight_ih_l0[2 * H :], g.bias_ih_l0[2 * H :]),
        "lin_hn": (g.weight_hh_l0[2 * H :], g.bias_hh_l0[2 * H :]),
    }
    for op in LINEAR:
        w, b = expect[OPS[op]]
        assert torch.equal(model.linear_weight(op), w)
        assert torch.equal(model.linear_bias(op), b)


def test_float_trace_reports_a_peak_for_every_operator():
    s = small()
    with torch.no_grad():
        _, [peak] = float_trace(s.model, torch.as_tensor(s.X))
    assert set(peak) == set(OPS)
    assert all(float(v) >= 0 for v in peak.values())
    assert float(peak["sig_r"]) <= 1 and float(peak["tanh_n"]) <= 1


# -- calibration --------------------------------------------------------------


@pytest.mark.parametrize("weight_scale", [0.1, 1.0, 4.0])
def test_calibration_exponents_bound_the_activations_tightly(weight_scale):
    s = small(features=5, hidden=6, classes=3, steps=7, n=40, seed=4, weight_scale=weight_scale)
    with torch.no_grad():
        _, [peak] = float_trace(s.model, torch.as_tensor(s.X))
    calib = s.calib
    assert set(calib.ops) == set(CALIBRATED)
    for name in CALIBRATED:
        m, e = float(peak[name]), calib.ops[name]
        assert m <= 2.0**e, name
        assert m > 2.0 ** (e - 1), name  # the smallest such exponent
    mx = float(np.abs(s.X).max())
    assert mx <= 2.0**calib.x < 2 * mx


def test_calibration_is_exact_at_a_power_of_two():
    s = small()
    X = s.X / np.abs(s.X).max() * 4  # max |x| exactly 4 = 2^2
    assert calibrate(s.model, X).x == 2


def test_calibration_round_trips_through_a_dict():
    calib = small().calib
    d = calib.to_dict()
    assert set(d) == {"x", *CALIBRATED}
    assert Calibration.from_dict(d) == calib


# -- checkpoints ----------------------------------------------------------------


def test_checkpoint_save_and_load_round_trip(tmp_path):
    s = small(seed=7)
    meta = {"task": "toy", "epochs": 3, "seed": 7, "val_accuracy": 0.5}
    path = tmp_path / "sub" / "toy.pt"
    Checkpoint(model=s.model, calibration=s.calib, meta=meta).save(path)
    back = load_checkpoint("toy", path)
    assert back.calibration == s.calib
    assert back.meta == meta
    assert not back.model.training
    a, b = s.model.state_dict(), back.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.as_tensor(s.X)
    with torch.no_grad():
        assert torch.equal(back.model(x), s.model(x))


def test_checkpoint_path_is_in_assets_named_after_the_task():
    assert checkpoint_path("smnist").name == "smnist.pt"
    assert checkpoint_path("smnist").parent.name == "assets"
    # a user's file: its stem and a hash of its absolute path (tests/test_hardening.py)
    assert re.fullmatch(r"mine-[0-9a-f]{12}\.pt", checkpoint_path("/somewhere/mine.npz").name)


def test_loading_a_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(GruqError, match="train"):
        load_checkpoint("toy", tmp_path / "missing.pt")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage" * 10])
def test_loading_a_garbage_checkpoint_is_a_user_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(GruqError) as info:
        load_checkpoint("toy", path)
    assert "\n" not in str(info.value)


def test_loading_a_checkpoint_of_the_wrong_layout_is_a_user_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(GruqError):
        load_checkpoint("toy", path)
    torch.save({"state": {}, "shape": [3, 4, 2], "calibration": {"x": 0}}, path)
    with pytest.raises(GruqError):
        load_checkpoint("toy", path)


class _Boom:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/gruq-test-should-not-exist",))


def test_loading_a_pickle_with_code_is_refused_without_running_it(tmp_path):
    import os

    marker = "/tmp/gruq-test-should-not-exist"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.pt"
    torch.save({"state": _Boom()}, path)
    with pytest.raises(GruqError):
        load_checkpoint("toy", path)
    assert not os.path.exists(marker)
