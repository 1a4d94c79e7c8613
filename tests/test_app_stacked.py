"""The app with stacked and users' own GRUs (issue 13), headless with Streamlit's AppTest.

A user's model is a real two-layer torch.nn.GRU + Linear trained here for a
moment on data made here; it is uploaded as its state_dict with its .npz on the
Launch page and imported by gruq.importer. The stacked run the other pages read
is a real search of the shipped two-layer vowels model (assets/vowels_2layer.pt).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from test_app import EXPLORER, LIVE, metric, open_page, plotly_specs, texts, values

from gruq import store
from gruq.genome import MAX_BITS, homogeneous, size_bytes
from gruq.ops import layer_names

ROOT = Path(__file__).resolve().parents[1]
STACKED_CKPT = ROOT / "assets" / "vowels_2layer.pt"
COMPARE = "app_pages/compare.py"
MODEL = "my own trained GRU (.pt) and its data (.npz)"
STACKED = "vowels, two stacked layers"


def data_and_model(layers: int = 2, hidden: int = 8, n: int = 180, seed: int = 0, bidirectional: bool = False):
    """(npz bytes, state_dict bytes): 3 classes of noisy sequences (12 steps x 3 features) and a
    torch.nn.GRU (`layers` layers) + Linear head trained on them for a moment (deterministic)."""
    import torch

    gen = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = (gen.standard_normal((n, 12, 3)) + y[:, None, None] * np.array([1.0, -0.5, 0.2])).astype(np.float32)
    data = io.BytesIO()
    np.savez(data, X=X, y=y)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.GRU(3, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional)
            self.fc = torch.nn.Linear(hidden * (2 if bidirectional else 1), 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.rnn(x)[0][:, -1])

    torch.manual_seed(seed)
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and far faster on a busy machine
    try:
        for _ in range(30):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt), yt).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model = io.BytesIO()
    torch.save(net.state_dict(), model)
    return data.getvalue(), model.getvalue()


def choose_own_model(at, data: bytes, model: bytes | None = None):
    at.radio(key="task_choice").set_value(MODEL).run()
    at.file_uploader(key="model_upload").set_value(("my data.npz", data, "application/octet-stream")).run()
    if model is not None:
        at.file_uploader(key="model_upload_pt").set_value(("my gru.pt", model, "application/octet-stream")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# ---------------------------------------------------------------- launch


def test_launch_imports_an_uploaded_two_layer_gru_and_searches_that_model(empty_db) -> None:
    data, model = data_and_model()
    at = choose_own_model(open_page(), data)
    assert any("Upload your model's state_dict" in e.value for e in at.error)  # the data alone are not enough
    assert at.button(key="launch").disabled
    # until the model is there, no shape or size is claimed for it (gruq's own 32-unit model is not the user's)
    assert "with 32 hidden units" not in texts(at) and metric(at, "model size, all 8-bit").value == "—"
    assert "sizes show once it is imported" in texts(at) and not plotly_specs(at)
    choose_own_model(at, data, model)
    assert not at.error, [e.value for e in at.error]
    assert "2 stacked GRU layers of 8 hidden units" in texts(at)
    [ckpt] = (empty_db.parent / "uploads" / "models").glob("my_data-*+my_gru-*.pt")
    assert at.selectbox(key="own_model_pick").value == str(ckpt)
    from gruq.model import load_checkpoint

    meta = load_checkpoint("x", ckpt).meta
    assert metric(at, "float accuracy (validation)").value == f"{100 * meta['val_accuracy']:.1f}%"
    assert meta["test_accuracy"] == meta["source_test_accuracy"]  # the import is the user's model
    said = f"your model scores {100 * meta['source_test_accuracy']:.2f}% and gruq's float copy of it"
    assert said in texts(at)
    assert "36 sequences, 95% interval [" in texts(at)  # the float accuracy on 20% of 180 sequences (validation)
    at.number_input(key="pop").set_value(4)
    at.number_input(key="gens").set_value(1)
    at.run()
    assert not at.button(key="launch").disabled
    at.button(key="launch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    [run] = store.list_runs(empty_db)
    assert run["config"]["checkpoint"] == str(ckpt)  # every later page reads the model from the run
    deadline = time.monotonic() + 120
    while store.run_detail(empty_db, run["run_id"])["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert store.run_detail(empty_db, run["run_id"])["status"] == "finished"
    front = store.result(empty_db, run["run_id"])["front"]
    assert front and all(len(m["bits"]) == 34 for m in front)  # 17 genes per layer
    assert all(f"--checkpoint {ckpt}" in m["check"] for m in front)


def test_a_refused_model_shows_its_one_line_and_no_earlier_model(empty_db) -> None:
    data, model = data_and_model()
    at = choose_own_model(open_page(), data, model)
    assert at.selectbox(key="own_model_pick").value  # a model was imported
    _, bad = data_and_model(layers=1, bidirectional=True)
    at.file_uploader(key="model_upload_pt").set_value(("other.pt", bad, "application/octet-stream")).run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "This model cannot be used:" in errors and "bidirectional" in errors
    assert str(empty_db.parent) not in errors  # the user's words, not the server's paths
    assert not [s for s in at.selectbox if s.key == "own_model_pick"]  # the earlier model does not stand in
    assert "Your earlier uploads are kept" in texts(at)  # it is kept, and the page says so
    assert at.button(key="launch").disabled
    models = empty_db.parent / "uploads" / "models"
    assert len(list(models.glob("*+*.pt"))) == 1 and not list(models.glob("other-*"))  # nothing lost, nothing kept
    at.file_uploader(key="model_upload_pt").set_value(("plain.pt", b"not a torch file", "x")).run()
    said = " ".join(e.value for e in at.error)
    assert "This model cannot be used: plain.pt is not a file torch.save wrote" in said
    assert "Error" not in said  # no exception class names (KeyError, UnpicklingError) for the user


def test_a_refused_data_file_shows_its_error_and_not_the_previous_file(empty_db) -> None:
    data, _ = data_and_model()
    at = open_page()
    at.radio(key="task_choice").set_value("my own data (.npz)").run()
    at.file_uploader(key="upload").set_value(("first.npz", data, "application/octet-stream")).run()
    assert metric(at, "classes").value == "3"
    at.file_uploader(key="upload").set_value(("second.npz", b"not a zip file", "application/octet-stream")).run()
    assert not at.exception
    assert any(e.value.startswith("This file cannot be used: second.npz") for e in at.error)
    assert not [s for s in at.selectbox if s.key == "own_pick"]  # first.npz is not shown as the choice
    assert not [m for m in at.metric if m.label == "classes"]
    assert "Choose a task (or upload your data) first." in [e.value for e in at.error]
    assert [p.name.split("-")[0] for p in (empty_db.parent / "uploads").glob("*.npz")] == ["first"]  # kept
    assert "Your earlier uploads are kept" in texts(at)  # and the page says so


def test_launch_offers_the_shipped_two_layer_model(empty_db) -> None:
    at = open_page()
    at.radio(key="task_choice").set_value(STACKED).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "2 stacked GRU layers of" in texts(at)
    from gruq.evaluate import load

    shape = load("vowels", str(STACKED_CKPT))[0].shape
    assert shape.layers == 2
    size8 = size_bytes(homogeneous(MAX_BITS, 2), shape)
    assert metric(at, "model size, all 8-bit").value == f"{size8 / 1000:.2f} kB"
    assert not at.button(key="launch").disabled


def test_launch_pins_an_operator_in_one_layer_of_a_stacked_model(empty_db) -> None:
    at = open_page()
    at.radio(key="task_choice").set_value(STACKED).run()
    at.slider(key="range_lin_xr").set_value((3, 6))  # every layer ...
    at.slider(key="range_l1.lin_xr").set_value((8, 8))  # ... but layer 1 pinned at 8
    at.slider(key="range_l0.add_h").set_value((4, 4))
    at.radio(key="size_mode").set_value("kB").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    from gruq.evaluate import load

    shape = load("vowels", str(STACKED_CKPT))[0].shape
    low = [2] * 34
    low[0], low[17], low[16] = 3, 8, 4
    reach = " ".join(c.value for c in at.caption if c.value.startswith("Reachable"))
    assert f"from {size_bytes(low, shape) / 1000:.2f} kB (raised by l0.lin_xr, l1.lin_xr)" in reach
    at.number_input(key="max_kb").set_value(round(size_bytes(low, shape) / 1000 - 0.01, 2)).run()
    assert any(
        "because of l0.lin_xr at least 3, l1.lin_xr pinned at 8." in e.value for e in at.error
    )  # gruq's refusal, in the form's words
    at.number_input(key="max_kb").set_value(20.0).run()
    at.number_input(key="pop").set_value(4)
    at.number_input(key="gens").set_value(1)
    at.button(key="launch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    [run] = store.list_runs(empty_db)
    cfg = run["config"]
    assert cfg["pins"] == {"l1.lin_xr": 8, "l0.add_h": 4}
    assert cfg["bits_ranges"] == {"l0.lin_xr": [3, 6]}
    deadline = time.monotonic() + 120
    while store.run_detail(empty_db, run["run_id"])["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
    scored = [m["bits"] for m in store.individuals(empty_db, run["run_id"])]
    assert scored and all(3 <= g[0] <= 6 and g[17] == 8 and g[16] == 4 for g in scored)


# ---------------------------------------------------------------- pages on a stacked run


@pytest.fixture(scope="module")
def stacked_run(tmp_path_factory) -> tuple[Path, int]:
    """A store with a finished search of the shipped two-layer vowels model (and a one-layer run)."""
    from gruq.search import run
    from gruq.search.config import SearchConfig

    db = tmp_path_factory.mktemp("stacked") / "gruq.db"
    run.start(db, SearchConfig(task="vowels", pop=4, gens=1, seed=0), progress=False)
    res = run.start(
        db, SearchConfig(task="vowels", pop=8, gens=2, seed=0, checkpoint=str(STACKED_CKPT)), progress=False
    )
    return db, res["run_id"]


@pytest.fixture()
def stacked_db(stacked_run, monkeypatch) -> tuple[Path, int]:
    monkeypatch.setenv("GRUQ_DB", str(stacked_run[0]))
    monkeypatch.delenv("GRUQ_EVALUATOR", raising=False)
    return stacked_run


def test_a_stacked_run_records_its_own_checkpoint_and_shape(stacked_db) -> None:
    from gruq.scheme_model import file_sha256
    from gruq.search.backend import model_shape

    db, run_id = stacked_db
    assert store.checkpoint_sha256(db, run_id) == file_sha256(STACKED_CKPT)  # what rebuilt models are checked by
    assert model_shape("vowels", str(STACKED_CKPT)).layers == 2 and model_shape("vowels").layers == 1


def test_live_page_draws_a_stacked_run_against_its_own_sizes(stacked_db) -> None:
    db, run_id = stacked_db
    at = open_page(LIVE, run=str(run_id))
    assert not at.error, [e.value for e in at.error]
    chart = plotly_specs(at)[0]
    baselines = next(t for t in chart["data"] if t.get("name", "").startswith("same bits"))
    from gruq.evaluate import load

    shape = load("vowels", str(STACKED_CKPT))[0].shape
    assert max(values(baselines["x"])) == pytest.approx(size_bytes(homogeneous(MAX_BITS, 2), shape) / 1000)
    assert "float model vowels_2layer.pt" in texts(at)


def test_explorer_shows_one_cell_per_layer_and_17_sliders_per_layer(stacked_db) -> None:
    db, run_id = stacked_db
    member = store.result(db, run_id)["front"][-1]
    at = open_page(EXPLORER, run=str(run_id), bits=",".join(map(str, member["bits"])))
    assert not at.error, [e.value for e in at.error]
    titles = [s["layout"].get("title", {}).get("text", "") for s in plotly_specs(at)]
    assert [t[:14] for t in titles if "layer" in t] == ["<b>layer 0</b>", "<b>layer 1</b>"]
    assert [t.label for t in at.tabs] == ["layer 0", "layer 1"]
    keys = [f"wi_{n}" for n in layer_names(2)]  # wi_l0.lin_xr ... wi_l1.add_h
    assert sorted(s.key for s in at.slider) == sorted(keys)
    assert [at.slider(key=k).value for k in keys] == member["bits"]
    assert metric(at, "accuracy, validation").value == f"{100 * member['accuracy']:.1f}%"  # the run's model
    table = at.dataframe[0].value
    assert list(table["layer 0 bits"]) == member["bits"][:17] and list(table["layer 1 bits"]) == member["bits"][17:]

    at.slider(key="wi_l1.add_h").set_value(8 if member["bits"][33] != 8 else 2).run()  # what-if in layer 1 only
    assert not at.exception and not at.error
    edited = [at.slider(key=k).value for k in keys]
    assert edited[:33] == member["bits"][:33] and edited[33] != member["bits"][33]
    scored = {tuple(m["bits"]): m["accuracy"] for m in store.individuals(db, run_id)}
    if tuple(edited) in scored:
        expected = scored[tuple(edited)]
    else:  # post-training quantization of the run's own two-layer model
        from gruq.scheme_model import SchemeModel

        expected = SchemeModel("vowels", tuple(edited), str(STACKED_CKPT)).accuracy("val")
        assert "never scored these bits" in texts(at)
    assert metric(at, "accuracy, validation").value == f"{100 * expected:.1f}%"


def test_explorer_exports_the_model_the_stacked_run_searched(stacked_db) -> None:
    import zipfile

    db, run_id = stacked_db
    member = store.result(db, run_id)["front"][-1]
    at = open_page(EXPLORER, run=str(run_id), bits=",".join(map(str, member["bits"])))
    at.button(key="build_export").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    import ui

    blob = ui.export_zip(str(db), run_id, "vowels", tuple(member["bits"]), str(STACKED_CKPT))
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        header = next(zf.read(n).decode() for n in zf.namelist() if n.endswith(".h"))
    assert "GRUQ_LAYERS 2" in header.replace("  ", " ")


def test_compare_groups_one_layer_count_and_says_which_runs_it_left_out(stacked_db) -> None:
    db, run_id = stacked_db
    at = open_page(COMPARE)
    at.multiselect(key="compare_runs").set_value([r["run_id"] for r in store.list_runs(db)]).run()
    assert not at.exception and not [e.value for e in at.error]
    assert any("Left out (another layer count" in c.value for c in at.caption)
