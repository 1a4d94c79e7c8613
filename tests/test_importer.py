"""`gruq import`: a user's own trained torch model (1, 2 or 3 stacked GRU layers,
any key prefix) goes in, and everything downstream takes it.

The models are real torch modules, trained here for a few steps on data made
here (raw, not z-scored: the import must fold gruq's normalisation into the
model), saved with torch.save(model.state_dict()). The user's model's own
accuracy on the raw test split must equal the imported model's float accuracy;
the integer engine and the simulation must agree on every code.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gruq import evaluate, tasks
from gruq.cli import main
from gruq.errors import GruqError
from gruq.genome import homogeneous
from gruq.importer import import_state_dict
from gruq.model import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
F, C, T, N = 3, 3, 8, 240


class Net(nn.Module):
    """A user's model: time-major GRU (batch_first=False), head on the last step, own names."""

    def __init__(self, hidden: int, layers: int, gru: str = "rnn", head: str = "fc") -> None:
        super().__init__()
        self.names = gru, head
        setattr(self, gru, nn.GRU(F, hidden, num_layers=layers))
        setattr(self, head, nn.Linear(hidden, C))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = getattr(self, self.names[0])(x.transpose(0, 1))
        return getattr(self, self.names[1])(out[-1])


class Wrapped(nn.Module):
    """The same, one level deeper (keys `model.encoder.*`, `model.classifier.*`)."""

    def __init__(self, hidden: int, layers: int) -> None:
        super().__init__()
        self.model = Net(hidden, layers, "encoder", "classifier")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def make_data(path: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw sequences whose class is which channel trends upward; offsets and scales far from z-scores."""
    gen = np.random.default_rng(seed)
    y = np.arange(N) % C
    X = gen.standard_normal((N, T, F)) * 1.2
    X[np.arange(N), :, y] += np.linspace(0, 2, T)
    X = X * np.array([4.0, 0.5, 10.0]) + np.array([20.0, -3.0, 1.0])
    np.savez(path, X=X.astype(np.float32), y=y)
    return X.astype(np.float32), y


def trained(net: nn.Module, X: np.ndarray, y: np.ndarray, steps: int = 80) -> nn.Module:
    """A few full-batch Adam steps on the raw sequences, as the user's own script would."""
    torch.manual_seed(0)
    x = torch.as_tensor(X)
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), torch.as_tensor(y)).backward()
        opt.step()
    return net.eval()


def user_accuracy(net: nn.Module, data_path: Path) -> float:
    """The user's model on the raw sequences of gruq's test split of their file."""
    data = tasks.load(str(data_path))
    with np.load(data_path) as f:
        X = f["X"][list(data.extra["index"]["test"])]
    with torch.no_grad():
        return float((net(torch.as_tensor(X)).argmax(1).numpy() == data.test.y).mean())


CASES = {
    "1-layer-rnn": (lambda: Net(8, 1), None),
    "2-layer-gru": (lambda: Net(8, 2, "gru", "head"), None),
    "3-layer-wrapped": (lambda: Wrapped(6, 3), None),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def imported(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    X, y = make_data(tmp / "data.npz")
    torch.manual_seed(1)
    net = CASES[request.param][0]()
    net = trained(net, X, y)
    torch.save(net.state_dict(), tmp / "model.pt")
    record = import_state_dict(tmp / "model.pt", str(tmp / "data.npz"), tmp / "my.ckpt")
    return net, tmp, record


def test_float_accuracy_equals_the_users_model(imported):
    net, tmp, record = imported
    assert record["float_test_accuracy"] == user_accuracy(net, tmp / "data.npz")
    assert record["float_test_accuracy"] == record["source_test_accuracy"]
    assert record["float_test_accuracy"] > 0.6  # a real model, not a constant guess (1/3)
    layers = {"1-layer-rnn": 1, "2-layer-gru": 2, "3-layer-wrapped": 3}[tmp.name.rstrip("0123456789")]
    assert record["layers"] == layers
    assert (record["features"], record["classes"]) == (F, C)
    ckpt = load_checkpoint("data", tmp / "my.ckpt")
    assert ckpt.model.layers == layers and len(ckpt.calibration.layers) == layers
    # the folded normalisation: the imported model on z-scored inputs = the user's on raw ones
    data = tasks.load(str(tmp / "data.npz"))
    with np.load(tmp / "data.npz") as f:
        raw = torch.as_tensor(f["X"][list(data.extra["index"]["test"])])
    with torch.no_grad():
        theirs, ours = net(raw), ckpt.model(torch.as_tensor(data.test.X))
    assert torch.allclose(theirs, ours, atol=1e-4)


@pytest.mark.parametrize("genome", ["all-2", "all-8", "random"])
def test_engine_and_simulation_agree_on_the_imported_model(imported, genome):
    _, tmp, record = imported
    L = record["layers"]
    g = {
        "all-2": homogeneous(2, L),
        "all-8": homogeneous(8, L),
        "random": tuple(int(b) for b in np.random.default_rng(L).integers(2, 9, 17 * L)),
    }[genome]
    out = evaluate.verify(str(tmp / "data.npz"), g, "test", str(tmp / "my.ckpt"))
    assert {k: out[k] for k in ("identical", "sequences", "mismatched_codes", "mismatched_logits")} == {
        "identical": True,
        "sequences": 48,
        "mismatched_codes": 0,
        "mismatched_logits": 0,
    }


def test_all_8_bit_accuracy_is_close_to_float(imported):
    _, tmp, record = imported
    rec = evaluate.evaluate(str(tmp / "data.npz"), (8,) * 17, "test", checkpoint=str(tmp / "my.ckpt"))
    assert len(rec["bits"]) == 17 * record["layers"]
    assert abs(rec["accuracy"] - record["float_test_accuracy"]) <= 3 / 48


# -- what is refused ---------------------------------------------------------------


def save(tmp: Path, state: dict) -> Path:
    path = tmp / "model.pt"
    torch.save(state, path)
    return path


def refused(tmp: Path, state: dict, match: str, **kw) -> str:
    make_data(tmp / "data.npz")
    with pytest.raises(GruqError, match=match) as info:
        import_state_dict(save(tmp, state), str(tmp / "data.npz"), tmp / "my.ckpt", **kw)
    assert "\n" not in str(info.value)
    assert not (tmp / "my.ckpt").exists()
    return str(info.value)


def test_bidirectional_is_refused(tmp_path):
    gru = nn.GRU(F, 4, bidirectional=True)
    refused(tmp_path, {**{f"gru.{k}": v for k, v in gru.state_dict().items()}, **head(8)}, "bidirectional")


def test_proj_size_is_refused(tmp_path):
    lstm_like = {f"gru.{k}": v for k, v in nn.GRU(F, 4).state_dict().items()}
    lstm_like["gru.weight_hr_l0"] = torch.zeros(2, 4)
    refused(tmp_path, {**lstm_like, **head(4)}, "proj_size")


def test_a_missing_bias_is_refused(tmp_path):
    state = {f"gru.{k}": v for k, v in nn.GRU(F, 4, bias=False).state_dict().items()}
    refused(tmp_path, {**state, **head(4)}, "bias_ih_l0")


def test_shapes_that_disagree_with_the_data_are_refused(tmp_path):
    state = {f"gru.{k}": v for k, v in nn.GRU(F + 1, 4).state_dict().items()}
    refused(tmp_path, {**state, **head(4)}, "takes 4 features; the data's X has 3")
    state = {f"gru.{k}": v for k, v in nn.GRU(F, 4).state_dict().items()}
    refused(tmp_path, {**state, **head(4, classes=C + 2)}, "5 outputs; the data's y has 3 classes")


def test_a_head_on_another_output_is_refused(tmp_path):
    state = {f"gru.{k}": v for k, v in nn.GRU(F, 4).state_dict().items()}
    refused(tmp_path, {**state, **head(8)}, "takes 8 inputs but the GRU's hidden state has 4")


def test_ambiguous_dicts_need_a_key_prefix(tmp_path):
    a = {f"a.rnn.{k}": v for k, v in Net(4, 1).state_dict().items()}
    b = {f"b.rnn.{k}": v for k, v in Net(4, 2).state_dict().items()}
    a = {k.replace("a.rnn.rnn.", "a.rnn.").replace("a.rnn.fc.", "a.fc."): v for k, v in a.items()}
    b = {k.replace("b.rnn.rnn.", "b.rnn.").replace("b.rnn.fc.", "b.fc."): v for k, v in b.items()}
    refused(tmp_path, {**a, **b}, "several prefixes")
    record = import_state_dict(save(tmp_path, {**a, **b}), str(tmp_path / "data.npz"), tmp_path / "b.ckpt", "b")
    assert record["layers"] == 2


def test_extra_tensors_are_refused(tmp_path):
    state = {f"gru.{k}": v for k, v in nn.GRU(F, 4).state_dict().items()}
    refused(tmp_path, {**state, **head(4), "embed.weight": torch.zeros(10, 3)}, "one Linear head")


def test_a_file_that_is_no_state_dict_is_refused_in_plain_words(tmp_path):
    """A text file renamed .pt, or a whole pickled model: the reason, never an exception's class name."""
    make_data(tmp_path / "data.npz")
    (tmp_path / "notes.pt").write_text("hello, this is not a model")
    torch.save(Net(4, 1), tmp_path / "whole.pt")
    for name, said in (("notes.pt", "is not a file torch.save wrote"), ("whole.pt", "holds more than tensors")):
        with pytest.raises(GruqError, match=said) as info:
            import_state_dict(tmp_path / name, str(tmp_path / "data.npz"), tmp_path / "my.ckpt")
        assert "Error" not in str(info.value) and "state_dict()" in str(info.value)
        assert not (tmp_path / "my.ckpt").exists()


def head(inputs: int, classes: int = C) -> dict:
    lin = nn.Linear(inputs, classes)
    return {"head.weight": lin.weight.detach(), "head.bias": lin.bias.detach()}


def test_the_command_line_prints_one_json_record_or_one_error_line(tmp_path):
    X, y = make_data(tmp_path / "data.npz")
    torch.save(Net(5, 2).state_dict(), tmp_path / "model.pt")
    cmd = [sys.executable, "-m", "gruq", "import", "--state-dict", str(tmp_path / "model.pt")]
    cmd += ["--task", str(tmp_path / "data.npz"), "--out", str(tmp_path / "my.ckpt"), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert set(record) >= {"checkpoint", "layers", "hidden", "features", "classes", "float_test_accuracy"}
    assert (record["layers"], record["hidden"]) == (2, 5)
    torch.save({"x": torch.zeros(2)}, tmp_path / "bad.pt")
    assert (
        main(
            [
                "import",
                "--state-dict",
                str(tmp_path / "bad.pt"),
                "--task",
                str(tmp_path / "data.npz"),
                "--out",
                str(tmp_path / "b.ckpt"),
            ]
        )
        == 2
    )


# -- downstream: search and export take the imported checkpoint ---------------------


def test_a_small_search_on_the_imported_model_finishes_and_its_front_is_rederivable(imported):
    from gruq.search import run
    from gruq.search.config import SearchConfig

    _, tmp, record = imported
    task, ckpt = str(tmp / "data.npz"), str(tmp / "my.ckpt")
    cfg = SearchConfig(task=task, checkpoint=ckpt, pop=6, gens=2, seed=3)
    result = run.start(tmp / "runs.db", cfg, progress=False)
    assert result["front"]
    ev = evaluate.Evaluator(task, "val", checkpoint=ckpt)
    for member in result["front"]:
        assert len(member["bits"]) == 17 * record["layers"]
        assert ev.accuracy([tuple(member["bits"])]) == [member["accuracy"]]
        again = evaluate.evaluate(task, member["bits"], "val", checkpoint=ckpt)
        assert (again["accuracy"], again["size_bytes"]) == (member["accuracy"], member["size_bytes"])


def test_fine_tuning_an_imported_model_gives_the_same_weights_batched_or_one_at_a_time(imported):
    from gruq.scheme_model import weights_sha256

    _, tmp, record = imported
    data, ckpt = evaluate.load(str(tmp / "data.npz"), str(tmp / "my.ckpt"))
    L = record["layers"]
    genomes = [homogeneous(3, L), tuple(int(b) for b in np.random.default_rng(L).integers(2, 9, 17 * L))]
    together = evaluate.tuned_many(ckpt, genomes, data, 1, seed=5, samples=48)
    alone = [evaluate.tuned(ckpt, g, data, 1, 5, 48) for g in genomes]
    assert [weights_sha256(t) for t in together] == [weights_sha256(a) for a in alone]
    assert weights_sha256(together[0]) != weights_sha256(ckpt)
    assert all(t.model.layers == L for t in together)


@pytest.mark.parametrize("imported", ["2-layer-gru"], indirect=True)  # one stacked model is enough
def test_a_fine_tuning_search_on_a_stacked_import_keeps_per_layer_pins_and_its_checks_rederive(imported):
    """`--pin lin_xr=3` pins every layer's lin_xr, `--pin l1.add_h=8` layer 1's add_h only; every
    candidate is fine-tuned (1 epoch), and a front member's model is re-derived exactly: by its check
    command, and from the run (what export --db --run --pick takes)."""
    from gruq.scheme_model import load_from_run

    _, tmp, record = imported
    L = record["layers"]
    assert L == 2
    args = ["search", "--task", str(tmp / "data.npz"), "--checkpoint", str(tmp / "my.ckpt"), "--pop", "4"]
    args += ["--gens", "1", "--seed", "2", "--finetune-epochs", "1", "--finetune-samples", "48"]
    args += ["--pin", "lin_xr=3", "--pin", "l1.add_h=8", "--db", str(tmp / "ft.db"), "--json"]
    r = subprocess.run([sys.executable, "-m", "gruq", *args], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    front = res["front"]
    assert front
    # the run's own record of a member: rebuilt, checked against the accuracy the run reported
    recipe, ckpt = load_from_run(tmp / "ft.db", res["run_id"], tuple(front[0]["bits"]))
    assert recipe.finetuning is not None and recipe.finetuning.epochs == 1 and ckpt.model.layers == L
    for member in front:
        g = member["bits"]
        assert [g[17 * k] for k in range(L)] == [3] * L and g[17 + 16] == 8, g
        assert member["model"] == "fine-tuned 1 epoch"
    check = shlex.split(front[-1]["check"])
    assert check[:3] == ["python", "-m", "gruq"] and "--finetune-epochs" in check
    r = subprocess.run([sys.executable, *check[1:]], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accuracy"] == front[-1]["accuracy"]


def test_export_check_of_an_imported_model_is_identical_for_every_layer_count(imported):
    _, tmp, record = imported
    args = ["export", "--task", str(tmp / "data.npz"), "--checkpoint", str(tmp / "my.ckpt"), "--bits", "4"]
    args += ["--out", str(tmp / "c"), "--check", "--json"]
    r = subprocess.run([sys.executable, "-m", "gruq", *args], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["layers"] == record["layers"]
    assert json.loads(r.stdout)["check"]["last_line"] == "48/48 identical"
