"""The app's pages, headless, with Streamlit's AppTest.

Every page runs through app.py (its st.navigation) against a temporary run
store (GRUQ_DB). The store is filled by tiny real searches on vowels, run
in-process by gruq.search.run, so what the pages read is what a real run
writes. Live updates (st.fragment with run_every) do not run under AppTest:
tests/test_browser.py covers them.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from gruq import views
from gruq.genome import fixed_bytes, homogeneous, size_bytes
from gruq.ops import OPS
from gruq.stats import wilson_acc

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
LIVE, EXPLORER, COMPARE, LEARN = (
    "app_pages/live_run.py",
    "app_pages/explorer.py",
    "app_pages/compare.py",
    "app_pages/learn.py",
)
TIMEOUT = 180

needs_vowels = pytest.mark.skipif(
    not (ROOT / "assets" / "vowels.pt").is_file(),
    reason="assets/vowels.pt is missing: python -m gruq train --task vowels",
)


def open_page(page: str | None = None, **query: str) -> AppTest:
    """Run app.py, then (optionally) switch to `page` with query parameters."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(query)
    at.run()
    if page is not None:
        at.switch_page(page)
        at.query_params.update(query)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """Everything the page wrote as text: markdown, captions, messages, metric labels."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [s.value for s in at.success]
    parts += [i.value for i in at.info] + [t.value for t in at.title]
    return "\n".join(str(p) for p in parts)


def metric(at: AppTest, label: str):
    for m in at.metric:
        if m.label == label:
            return m
    raise AssertionError(f"no metric {label!r}; metrics: {[m.label for m in at.metric]}")


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def values(v) -> list:
    """A Plotly data array as a list (from a list, or Plotly's base64 typed-array form)."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v)


def n_values(v) -> int:
    return len(values(v))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Path:
    """A store holding two finished real searches on vowels (seeds 0 and 1)."""
    if not (ROOT / "assets" / "vowels.pt").is_file():
        pytest.fail("assets/vowels.pt is missing")
    from gruq.search import run
    from gruq.search.config import SearchConfig

    db = tmp_path_factory.mktemp("store") / "gruq.db"
    for seed in (0, 1):
        run.start(db, SearchConfig(task="vowels", pop=8, gens=2, seed=seed), progress=False)
    return db


@pytest.fixture()
def filled_db(two_runs, monkeypatch) -> Path:
    monkeypatch.setenv("GRUQ_DB", str(two_runs))
    monkeypatch.delenv("GRUQ_EVALUATOR", raising=False)
    return two_runs


# ---------------------------------------------------------------- launch


@needs_vowels
def test_launch_page_describes_the_task_and_accepts_the_defaults(empty_db) -> None:
    at = open_page()
    assert "find the smallest GRU" in at.title[0].value
    assert metric(at, "classes").value == "9"
    assert "100 sequences, 95% interval [" in texts(at)  # the float accuracy's n (validation) and interval
    assert "These settings can run" in texts(at)
    assert not at.button(key="launch").disabled


@needs_vowels
def test_launch_explains_a_size_limit_no_scheme_can_meet(empty_db) -> None:
    at = open_page()
    at.radio(key="size_mode").set_value("kB").run()
    at.number_input(key="max_kb").set_value(0.5).run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    # worded for the form's field, not the command line's flag
    assert "The largest size allowed, 0.50 kB, is below the smallest model these bits allow" in errors
    assert "--max-size" not in errors
    assert at.button(key="launch").disabled
    # a pin narrows what is reachable: pinning every weight at 8 bits makes 4 kB impossible too
    at.number_input(key="max_kb").set_value(4.0).run()
    assert not at.error
    weights = ("lin_xr", "lin_hr", "lin_xz", "lin_hz", "lin_xn", "lin_hn")
    for name in weights:
        at.slider(key=f"range_{name}").set_value((8, 8))
    at.run()
    errors = " ".join(e.value for e in at.error)
    assert "below the smallest model these bits allow" in errors
    assert all(f"{name} pinned at 8" in errors for name in weights)  # the error names the pins
    shape = _shape()
    low = tuple(8 if i in (0, 1, 4, 5, 8, 9) else 2 for i in range(17))
    reach = " ".join(c.value for c in at.caption if c.value.startswith("Reachable"))
    assert f"from {size_bytes(low, shape) / 1000:.2f} kB" in reach  # the hint follows the pins
    assert "raised by lin_xr, lin_hr" in reach


@needs_vowels
def test_launch_says_when_every_operator_is_pinned(empty_db) -> None:
    at = open_page()
    for name in OPS:
        at.slider(key=f"range_{name}").set_value((6, 6))
    at.run()
    assert not at.exception
    assert any("Every operator is pinned" in w.value for w in at.warning)
    assert any("nothing to search" in e.value for e in at.error)
    assert at.button(key="launch").disabled  # one scheme: score it, do not search it


@needs_vowels
def test_launch_warns_about_an_accuracy_floor_above_the_float_model(empty_db) -> None:
    at = open_page()
    at.number_input(key="min_acc").set_value(99.9).run()
    assert any("unquantized model itself scores" in w.value for w in at.warning)


@needs_vowels
def test_launching_records_the_run_and_opens_the_live_page(empty_db) -> None:
    from gruq import store

    at = open_page()
    at.number_input(key="pop").set_value(4)
    at.number_input(key="gens").set_value(1)
    at.run()
    at.button(key="launch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    runs = store.list_runs(empty_db)
    assert len(runs) == 1 and runs[0]["task"] == "vowels"
    assert runs[0]["config"]["pop"] == 4 and runs[0]["config"]["gens"] == 1
    assert at.session_state["run_id"] == runs[0]["run_id"]
    assert "Live run" in at.title[0].value  # switched to the live page
    deadline = time.monotonic() + 120  # let the background process finish before the store goes away
    while (
        store.run_detail(empty_db, runs[0]["run_id"])["status"] in ("queued", "running") and time.monotonic() < deadline
    ):
        time.sleep(0.5)
    assert store.run_detail(empty_db, runs[0]["run_id"])["status"] == "finished"


@pytest.mark.parametrize("page", [None, LIVE, EXPLORER, COMPARE])
def test_a_store_that_is_not_a_gruq_store_is_said_once_on_every_page(empty_db, page) -> None:
    """GRUQ_DB naming some other file: one plain line, no traceback, and nothing launched into it."""
    empty_db.write_text("this is not sqlite")
    at = open_page(page)  # asserts no exception
    errors = [e.value for e in at.error]
    assert sum("is not an SQLite database" in e for e in errors) == 1, errors
    if page is None:
        assert at.button(key="launch").disabled
    assert empty_db.read_text() == "this is not sqlite"  # nothing was changed


def _npz_bytes(n: int = 180) -> bytes:
    import io

    import numpy as np

    gen = np.random.default_rng(0)
    y = np.arange(n) % 3
    X = gen.standard_normal((n, 12, 3)).astype(np.float32) + y[:, None, None]
    buf = io.BytesIO()
    np.savez(buf, X=X, y=y)
    return buf.getvalue()


def test_launch_refuses_an_uploaded_file_that_is_not_a_task(empty_db) -> None:
    at = open_page()
    at.radio(key="task_choice").set_value("my own data (.npz)").run()
    assert "Choose a task (or upload your data) first." in [e.value for e in at.error]
    at.file_uploader[0].set_value(("broken.npz", b"not a zip file", "application/octet-stream")).run()
    assert not at.exception
    assert any(e.value.startswith("This file cannot be used: broken.npz: not a .npz file") for e in at.error)
    assert not list((empty_db.parent / "uploads").glob("*.npz"))  # a bad file is not kept
    assert "earlier uploads" not in texts(at)  # a first upload has none to speak of


@pytest.mark.parametrize(
    ("y", "said"),
    [
        ([0.5] * 90 + [1.0] * 90, "y has non-integer labels (e.g. 0.5)"),
        (["a"] * 90 + ["b"] * 90, "y holds text; it must hold real numbers"),
    ],
)
def test_upload_errors_name_the_users_file_in_plain_words(empty_db, y, said) -> None:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, X=np.zeros((180, 4, 2), dtype=np.float32), y=np.array(y))
    at = open_page()
    at.radio(key="task_choice").set_value("my own data (.npz)").run()
    at.file_uploader[0].set_value(("mine.npz", buf.getvalue(), "application/octet-stream")).run()
    errors = " ".join(e.value for e in at.error)
    assert f"This file cannot be used: mine.npz: {said}" in errors
    assert str(empty_db.parent) not in errors and "np.float64" not in errors and "<U" not in errors


def test_launch_offers_to_train_an_uploaded_task_first(empty_db) -> None:
    at = open_page()
    at.radio(key="task_choice").set_value("my own data (.npz)").run()
    at.file_uploader[0].set_value(("my data.npz", _npz_bytes(), "application/octet-stream")).run()
    assert not at.exception, [e.value for e in at.exception]
    saved = list((empty_db.parent / "uploads").glob("*.npz"))
    assert len(saved) == 1 and saved[0].name.startswith("my_data-")  # a safe name that no built-in task has
    assert metric(at, "classes").value == "3"
    assert any("has none yet" in w.value for w in at.warning)
    assert "Train the float model" in [b.label for b in at.button]
    assert any("needs the trained float model" in e.value for e in at.error)
    assert at.button(key="launch").disabled


# ---------------------------------------------------------------- live run


def test_a_run_after_new_imports_hides_them_from_the_collector_and_later_runs_freeze_nothing(
    empty_db, monkeypatch
) -> None:
    """Streamlit collects every generation after every run (fragment polls of the Live page
    included): the imported modules' objects must not be walked each time (ui.spare_the_collector)."""
    import gc
    import sys
    import types

    import ui

    monkeypatch.setattr(ui, "_FROZEN_MODULES", 0)
    gc.unfreeze()
    try:
        open_page()
        open_page()  # the first run's own imports are frozen when the second starts
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # streamlit's, pandas' ... objects
        page_objects = [[] for _ in range(1000)]  # what a run makes and drops
        open_page()
        assert gc.get_freeze_count() <= frozen, "nothing was imported, yet more was frozen"
        monkeypatch.setitem(sys.modules, "gruq_test_freshly_imported", types.ModuleType("fresh"))
        open_page()
        assert gc.get_freeze_count() >= frozen + len(page_objects)
    finally:
        gc.unfreeze()


def test_live_page_without_runs_points_to_the_launch_page(empty_db) -> None:
    at = open_page(LIVE)
    assert "No runs yet" in texts(at)


def test_live_page_draws_a_finished_run(filled_db) -> None:
    from gruq import store

    at = open_page(LIVE, run="1")
    specs = plotly_specs(at)
    front_chart = specs[0]
    names = [t.get("name") for t in front_chart["data"]]
    assert names[0] == "every scheme tried" and names[2].startswith("best trade-offs")
    detail = store.run_detail(filled_db, 1)
    # every scheme tried is drawn once: faded, or as the front point or baseline on top of it
    # (the faded twin is left out so that hovering or clicking finds the point on top)
    tried, base, front = (set(zip(values(t["x"]), values(t["y"]))) for t in (front_chart["data"][i] for i in range(3)))
    assert not tried & (base | front)
    rows = values(front_chart["data"][0]["customdata"])
    points = views.points_frame(store.individuals(filled_db, 1))
    covered = sum(
        (round(c / 1000, 9), round(100 * a, 9)) in {(round(x, 9), round(y, 9)) for x, y in base | front}
        for a, c in zip(points["accuracy"], points["size_bytes"])
    )
    assert len(rows) == len(set(rows)) == detail["evaluations"] - covered
    assert all("kB" in t["hovertemplate"] for t in front_chart["data"][:3])
    assert n_values(front_chart["data"][1]["x"]) == 7  # the 2..8-bit baselines
    # one point per distinct trade-off: genomes alike in accuracy and size share it
    tradeoffs = {(m["accuracy"], m["size_bytes"]) for m in store.result(filled_db, 1)["front"]}
    assert n_values(front_chart["data"][2]["x"]) == len(tradeoffs)
    assert any("finished" in str(p.proto) for p in at.get("progress"))
    assert "Pick this one:" in texts(at)
    assert len(specs) == 2  # and the hypervolume curve


def test_live_page_limit_slider_moves_the_pick(filled_db) -> None:
    at = open_page(LIVE, run="1")
    before = [s.value for s in at.success]
    slider = at.slider(key="limit_1")
    slider.set_value(slider.min).run()
    assert not at.exception
    after = " ".join(s.value for s in at.success) + " ".join(w.value for w in at.warning)
    assert after and [s.value for s in at.success] != before


def test_inspecting_the_pick_opens_the_explorer_on_it(filled_db) -> None:
    from gruq import store

    at = open_page(LIVE, run="1")
    at.button(key="open_best").click().run()
    assert not at.exception
    assert at.title[0].value.startswith("Explorer")
    bits = tuple(at.dataframe[0].value["bits"])
    assert list(bits) in [m["bits"] for m in store.result(filled_db, 1)["front"]]


def test_a_finished_run_offers_neither_cancel_nor_resume(filled_db) -> None:
    at = open_page(LIVE, run="2")
    labels = [b.label for b in at.button]
    assert "Cancel" not in labels and "Resume" not in labels  # a finished run has neither


@pytest.fixture()
def fake_db(tmp_path, monkeypatch) -> Path:
    """A store for runs scored by the search's synthetic evaluator (instant, task 'fake'),
    in this process and in the run processes the app starts."""
    db = tmp_path / "gruq.db"
    monkeypatch.setenv("GRUQ_DB", str(db))
    monkeypatch.setenv("GRUQ_EVALUATOR", "test_search_fake:make")
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))
    return db


def _wait_status(db: Path, run_id: int, wanted: set[str], timeout: float = 120) -> str:
    from gruq import store

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = store.run_detail(db, run_id)["status"]
        if status in wanted:
            return status
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} is still {status}")


def test_live_page_draws_a_bops_run_against_bit_operations(fake_db) -> None:
    from gruq.search import run
    from gruq.search.config import SearchConfig

    run.start(fake_db, SearchConfig(task="fake", objective="bops", pop=8, gens=3), progress=False)
    at = open_page(LIVE, run="1")
    fig = plotly_specs(at)[0]
    assert "bit operations" in fig["layout"]["xaxis"]["title"]["text"]
    # every wording follows the objective: title, pick, table, hypervolume, hover
    assert at.title[0].value == "Live run: accuracy against bit operations"
    pick = next(s.value for s in at.success if "Pick this one:" in s.value)
    assert "% fewer bit operations**" in pick and "M BOPs" in pick
    table = at.dataframe[0].value
    assert "M BOPs" in table.columns and "fewer BOPs than 8-bit" in table.columns
    assert "accuracy x bit operations" in texts(at) and "accuracy x size" not in texts(at)
    assert all("M BOPs" in t["hovertemplate"] for t in fig["data"][:3])
    callout = [a["text"] for a in fig["layout"]["annotations"] if "best under" in a.get("text", "")]
    assert callout and "M BOPs" in callout[0] and "fewer bit operations" in callout[0]


def test_live_page_explains_a_run_no_scheme_could_finish(fake_db) -> None:
    from gruq.search import run
    from gruq.search.config import SearchConfig

    run.start(fake_db, SearchConfig(task="fake", pop=8, gens=2, min_accuracy=0.999), progress=False)
    at = open_page(LIVE, run="1")
    assert not at.exception
    said = " ".join(e.value for e in at.error)
    assert "No scheme met the minimum accuracy of 99.9%" in said
    assert "reached" in said and "Lower the minimum accuracy to" in said


def test_a_cancelled_run_is_said_in_plain_words(fake_db) -> None:
    from gruq.search.config import SearchConfig
    from gruq.store import RunStore

    with RunStore(fake_db) as rs:
        run_id = rs.create_run("fake", SearchConfig(task="fake", pop=8, gens=3).to_dict(), 0, 3)
        rs.set_status(run_id, "cancelled", error="cancelled by SIGTERM")
    at = open_page(LIVE, run=str(run_id))
    assert f"Run {run_id} was cancelled. Resume continues it" in texts(at)
    assert "SIGTERM" not in texts(at) + " ".join(str(p.proto) for p in at.get("progress"))


ACC_CI = r"\d+\.\d% \(\d+\.\d-\d+\.\d\)"  # an accuracy with its 95% interval, "97.0% (91.5-99.0)"


def test_live_page_and_explorer_show_the_same_front(filled_db) -> None:
    live = open_page(LIVE, run="1")
    rows = len(live.dataframe[0].value)
    callout = [a["text"] for a in plotly_specs(live)[0]["layout"]["annotations"] if "best under" in a.get("text", "")]
    assert callout and re.search(rf"accuracy {ACC_CI}<br>", callout[0]), callout  # the star's label: its interval
    assert "The star's accuracy is on 100 validation sequences, with its 95% interval." in texts(live)
    explorer = open_page(EXPLORER, run="1")
    starts = [o for o in explorer.selectbox(key="start_vowels_1").options if o.startswith("front:")]
    assert rows == len(starts) > 0
    assert all(re.match(rf"front: {ACC_CI} validation \(post-training\) at \d+\.\d\d kB$", o) for o in starts), starts


def test_the_front_csv_of_both_pages_says_split_n_interval_and_model(filled_db, monkeypatch) -> None:
    """The download leaves the captions behind: both pages hand out the same front, its
    accuracies named as validation accuracies on the task's 100 sequences, of a named model."""
    import io

    import pandas as pd

    made: list[str] = []
    real = views.front_csv
    monkeypatch.setattr(views, "front_csv", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    live = open_page(LIVE, run="1")
    assert "acc. % (95% CI)" in live.dataframe[0].value.columns  # the table on the page: each row its interval
    open_page(EXPLORER, run="1")
    assert len(made) == 2 and made[0] == made[1]
    table = pd.read_csv(io.StringIO(made[0]))
    assert {"val_accuracy", "val_sequences", "val_ci95_low", "val_ci95_high", "model"} <= set(table.columns)
    assert "accuracy" not in table.columns and set(table["val_sequences"]) == {100}
    assert set(table["model"]) == {"post-training"}  # the run neither fine-tuned its schemes nor its front
    assert (table["val_ci95_low"] <= table["val_accuracy"]).all() and (
        table["val_accuracy"] <= table["val_ci95_high"]
    ).all()


def test_both_pages_name_the_front_csv_after_the_run_and_its_generation(filled_db, monkeypatch) -> None:
    """A front downloaded at generation 7 and one at generation 9 of the same run keep both files."""
    from gruq import store

    made: list[str] = []
    real = views.front_file_name
    monkeypatch.setattr(views, "front_file_name", lambda *a: made.append(real(*a)) or made[-1])
    open_page(LIVE, run="1")
    open_page(EXPLORER, run="1")
    done = store.run_detail(filled_db, 1)["generations_done"]
    assert set(made) == {f"gruq-run1-gen{done}-front.csv"} and len(made) >= 2


def test_cancel_stops_a_running_search(fake_db, monkeypatch) -> None:
    from gruq.search import launch

    monkeypatch.setenv("GRUQ_FAKE_DELAY", "0.4")
    run_id = launch.launch(fake_db, {"task": "fake", "pop": 8, "gens": 40})
    try:
        _wait_status(fake_db, run_id, {"running"})
        at = open_page(LIVE, run=str(run_id))
        at.button(key="cancel").click().run()
        assert not at.exception
        assert _wait_status(fake_db, run_id, {"cancelled", "finished"}) == "cancelled"
        at.run()
        assert "Resume" in [b.label for b in at.button]
    finally:
        launch.cancel(fake_db, run_id)


def test_resume_continues_a_run_whose_process_died(fake_db) -> None:
    from gruq import store
    from gruq.search.config import SearchConfig
    from gruq.store import RunStore

    cfg = SearchConfig(task="fake", pop=8, gens=3)
    with RunStore(fake_db) as rs:
        run_id = rs.create_run("fake", cfg.to_dict(), 0, 3)
        rs.claim(run_id, 2**22 + 12345, ("queued",))  # 'running' in a process that does not exist
    at = open_page(LIVE, run=str(run_id))
    assert any("process has stopped" in str(p.proto) for p in at.get("progress"))
    at.button(key="resume").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert _wait_status(fake_db, run_id, {"finished", "failed"}) == "finished"
    assert store.run_detail(fake_db, run_id)["generations_done"] == 3


# ---------------------------------------------------------------- explorer


def test_explorer_shows_the_table_and_sizes_for_a_genome(filled_db) -> None:
    from gruq.tasks import load

    genome = (4, 4, 5, 3, 6, 6, 6, 4, 8, 8, 7, 7, 3, 2, 6, 6, 8)
    at = open_page(EXPLORER, run="1", bits=",".join(map(str, genome)))
    table = at.dataframe[0].value
    assert list(table["operator"]) == list(OPS)
    assert tuple(table["bits"]) == genome
    shape = load("vowels").shape
    assert metric(at, "model size").value == f"{size_bytes(genome, shape) / 1000:.2f} kB"
    assert sum(table["weight bytes"]) == pytest.approx(size_bytes(genome, shape) - fixed_bytes(shape))
    assert metric(at, "accuracy, validation").value.endswith("%")
    assert metric(at, "accuracy, test (integer engine)").value.endswith("%")
    assert "Confusion matrix on test data" in texts(at)


def test_explorer_what_if_rescores_the_edited_genome(filled_db) -> None:
    at = open_page(EXPLORER, run="1", bits="8")
    assert metric(at, "model size").value == f"{size_bytes(homogeneous(8), _shape()) / 1000:.2f} kB"
    at.slider(key="wi_lin_hn").set_value(2).run()
    assert not at.exception
    g = list(homogeneous(8))
    g[OPS.index("lin_hn")] = 2
    assert metric(at, "model size").value == f"{size_bytes(g, _shape()) / 1000:.2f} kB"
    assert "vs start" in metric(at, "accuracy, validation").delta
    assert tuple(at.dataframe[0].value["bits"]) == tuple(g)


def test_explorer_ignores_unreadable_bits_in_the_address_in_plain_words(filled_db) -> None:
    at = open_page(EXPLORER, run="1", bits="[1,2")  # open_page: no exception on the page
    assert any("Ignoring the bits in the address: the bits must be" in w.value for w in at.warning)


def test_a_run_the_store_does_not_hold_is_said_not_silently_replaced(filled_db) -> None:
    for asked in ("99", "x"):
        at = open_page(EXPLORER, run=asked)
        assert any(f"There is no run {asked} in this store: showing run " in w.value for w in at.warning)
    at = open_page(EXPLORER, run="1")
    assert not any("There is no run" in w.value for w in at.warning)


def test_explorer_gives_every_validation_accuracy_its_n_and_interval(filled_db) -> None:
    """Not only in a tooltip: the scheme's model line and the all-8-bit reference, scored by the run or not."""
    at = open_page(EXPLORER, run="1", bits="8")
    model_line = next(m.value for m in at.markdown if m.value.startswith("**Model:"))
    assert "(n=100, 95% interval [" in model_line
    assert "on validation data (n=100, 95% interval [" in texts(at)  # the all-8-bit model
    assert "not on test accuracy" in texts(at)  # picking by test accuracy would make it optimistic
    from gruq import store

    edited = list(homogeneous(8))
    edited[OPS.index("lin_hn")], edited[OPS.index("add_r")], edited[OPS.index("sig_z")] = 3, 2, 5
    assert edited not in [m["bits"] for m in store.individuals(filled_db, 1)]  # bits the run never scored
    for op in ("lin_hn", "add_r", "sig_z"):
        at.slider(key=f"wi_{op}").set_value(edited[OPS.index(op)])
    at.run()
    model_line = next(m.value for m in at.markdown if m.value.startswith("**Model:"))
    assert "never scored these bits" in model_line and "(n=100, 95% interval [" in model_line


def test_explorer_says_whether_a_scored_scheme_is_on_the_front(filled_db) -> None:
    from gruq import store

    members = store.individuals(filled_db, 1)
    on = next(m["bits"] for m in members if m["on_front"])
    off = next(m["bits"] for m in members if not m["on_front"])
    said = texts(open_page(EXPLORER, run="1", bits=",".join(map(str, on))))
    assert "is the one on the run's front" in said
    said = texts(open_page(EXPLORER, run="1", bits=",".join(map(str, off))))
    assert "is the one the run scored for these bits (they are not on its front)" in said
    assert "front's" not in said


def test_explorer_without_runs_starts_from_homogeneous_genomes(empty_db, file_names) -> None:
    if not (ROOT / "assets" / "vowels.pt").is_file():
        pytest.fail("assets/vowels.pt is missing")
    at = open_page(EXPLORER)
    assert tuple(at.dataframe[0].value["bits"]) == homogeneous(8)
    at.selectbox(key="start_vowels_").set_value("all 3-bit").run()
    assert tuple(at.dataframe[0].value["bits"]) == homogeneous(3)
    assert file_names["dl_genome"] == "gruq-vowels-all3.json"  # no run: the task names the scheme's file


@pytest.fixture()
def file_names(monkeypatch) -> dict[str, str]:
    """The file name each download button (by key) offers, as the pages last drew them."""
    from streamlit.delta_generator import DeltaGenerator

    names: dict[str, str] = {}
    real = DeltaGenerator.download_button

    def recording(self, label, data, file_name=None, *args, **kwargs):
        names[kwargs.get("key")] = file_name
        return real(self, label, data, file_name, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", recording)
    return names


def test_explorer_offers_the_downloads(filled_db, file_names, monkeypatch) -> None:
    """Each download is named after its run and scheme, so downloads of two schemes neither
    overwrite nor shadow each other; the C zip unpacks to a folder of its own name."""
    import io
    import zipfile

    import ui
    from gruq import store

    zips: list[bytes] = []
    real = ui.export_zip
    monkeypatch.setattr(ui, "export_zip", lambda *a, **k: zips.append(real(*a, **k)) or zips[-1])
    at = open_page(EXPLORER, run="1", bits="4")
    labels = [el.proto.label for el in at.get("download_button")]
    assert "This scheme (JSON)" in labels and "The run's front (CSV)" in labels
    at.button(key="build_export").click().run()
    assert not at.exception and not at.error
    assert "Download the export (zip)" in [el.proto.label for el in at.get("download_button")]
    assert "build_export" not in [b.key for b in at.button]  # the download replaces the build button
    assert file_names == {
        "dl_genome": "gruq-run1-all4.json",
        "dl_front": views.front_file_name(1, store.run_detail(filled_db, 1)["generations_done"]),
        "dl_export": "gruq-run1-all4.zip",
    }
    with zipfile.ZipFile(io.BytesIO(zips[-1])) as zf:
        assert {n.split("/")[0] for n in zf.namelist()} == {"gruq-run1-all4"}
    at.slider(key="wi_lin_xr").set_value(8).run()  # another scheme, another name
    assert file_names["dl_genome"] == "gruq-run1-8" + "4" * 16 + ".json"


def test_explorer_measures_the_scheme_on_a_cortex_m4(filled_db) -> None:
    from gruq.export.targets import cortex_m4

    if not cortex_m4.available():
        pytest.fail(f"missing {', '.join(cortex_m4.missing_tools())}: scripts/setup --cortex-m4")
    at = open_page(EXPLORER, run="1", bits="4")
    at.button(key="measure_m4").click().run()
    assert not at.exception and not at.error
    assert metric(at, "instructions per step") is not None
    assert "not cycles of real silicon" in texts(at)


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory) -> Path:
    """A real vowels search that fine-tuned every candidate for one epoch."""
    from gruq.search import run
    from gruq.search.config import SearchConfig

    db = tmp_path_factory.mktemp("tuned") / "gruq.db"
    run.start(db, SearchConfig(task="vowels", pop=4, gens=1, seed=0, finetune_epochs=1), progress=False)
    return db


def test_explorer_of_a_fine_tuned_front_point_shows_that_model(tuned_run, monkeypatch) -> None:
    from gruq import store
    from gruq.evaluate import evaluate

    monkeypatch.setenv("GRUQ_DB", str(tuned_run))
    monkeypatch.delenv("GRUQ_EVALUATOR", raising=False)
    member = store.result(tuned_run, 1)["front"][-1]
    at = open_page(EXPLORER, run="1", bits=",".join(map(str, member["bits"])))
    assert metric(at, "accuracy, validation").value == f"{100 * member['accuracy']:.1f}%"  # the front's number
    text = texts(at)
    assert "Model: fine-tuned 1 epoch" in text and "(n=100, 95% interval [" in text
    test = evaluate("vowels", tuple(member["bits"]), "test", finetune_epochs=1, seed=0)["accuracy"]
    assert f"**{100 * test:.2f}%**" in text and "n=300" in text  # the same model's test accuracy
    lo, hi = wilson_acc(member["accuracy"], 100)
    label = f"front: {100 * member['accuracy']:.1f}% ({100 * lo:.1f}-{100 * hi:.1f}) validation (fine-tuned 1 epoch)"
    assert any(o.startswith(label) for o in at.selectbox(key="start_vowels_1").options)


def test_live_page_says_which_model_the_all_8_bit_reference_is(tuned_run, filled_db, monkeypatch) -> None:
    """The pick is set against the all-8-bit model: the run's own (fine-tuned like every
    candidate) or post-training quantization, and the sentence says which."""
    monkeypatch.setenv("GRUQ_DB", str(tuned_run))
    pick = next(s.value for s in open_page(LIVE, run="1").success if "Pick this one:" in s.value)
    assert "all-8-bit model's" in pick or "the same as the all-8-bit model" in pick
    assert "% (fine-tuned 1 epoch)" in pick or "all-8-bit model (fine-tuned 1 epoch)" in pick
    monkeypatch.setenv("GRUQ_DB", str(filled_db))
    pick = next(s.value for s in open_page(LIVE, run="1").success if "Pick this one:" in s.value)
    assert "% (post-training)" in pick or "all-8-bit model (post-training)" in pick


def test_explorer_what_if_sets_post_training_against_post_training(tuned_run, monkeypatch) -> None:
    """Editing a fine-tuned front point gives bits the run never scored (post-training): the delta
    and the all-8-bit reference are post-training too, not the run's fine-tuned models, whose
    difference would read as the cost of the edit."""
    from gruq import store
    from gruq.evaluate import evaluate

    def post_training(g):
        return evaluate("vowels", tuple(g), "val")["accuracy"]

    monkeypatch.setenv("GRUQ_DB", str(tuned_run))
    monkeypatch.delenv("GRUQ_EVALUATOR", raising=False)
    front = store.result(tuned_run, 1)["front"]
    start = next(tuple(m["bits"]) for m in front if m["accuracy"] != post_training(m["bits"]))  # fine-tuning told
    seen = {tuple(m["bits"]) for m in store.individuals(tuned_run, 1)}
    i = OPS.index("lin_hn")
    edited = next(g for b in range(2, 9) if (g := start[:i] + (b,) + start[i + 1 :]) not in seen)
    at = open_page(EXPLORER, run="1", bits=",".join(map(str, start)))
    at.slider(key="wi_lin_hn").set_value(edited[i]).run()
    assert not at.exception
    delta = metric(at, "accuracy, validation").delta
    assert delta == f"{100 * (post_training(edited) - post_training(start)):+.1f} pp vs start (both post-training)"
    summary = next(c.value for c in at.caption if c.value.startswith("The all-8-bit model"))
    assert summary.startswith(
        f"The all-8-bit model (post-training, like this scheme): {100 * post_training(homogeneous(8)):.1f}%"
    )


@pytest.fixture(scope="module")
def bops_run(tmp_path_factory) -> Path:
    """A real vowels search that minimised bit operations."""
    from gruq.search import run
    from gruq.search.config import SearchConfig

    db = tmp_path_factory.mktemp("bops") / "gruq.db"
    run.start(db, SearchConfig(task="vowels", objective="bops", pop=4, gens=1, seed=0), progress=False)
    return db


def test_explorer_of_a_bops_run_speaks_of_bit_operations(bops_run, monkeypatch) -> None:
    monkeypatch.setenv("GRUQ_DB", str(bops_run))
    monkeypatch.delenv("GRUQ_EVALUATOR", raising=False)
    at = open_page(EXPLORER, run="1", bits="4")
    summary = next(c.value for c in at.caption if c.value.startswith("The all-8-bit model"))
    assert "M bit operations per sequence" in summary and "fewer bit operations (at most" in summary
    assert "smaller" not in summary and "kB" not in summary


def _shape():
    from gruq.tasks import load

    return load("vowels").shape


# ---------------------------------------------------------------- compare


def test_compare_overlays_two_runs_and_clusters_their_fronts(filled_db) -> None:
    at = open_page(COMPARE)
    assert at.multiselect(key="compare_runs").value == [2, 1]
    overlay, heatmap = plotly_specs(at)[:2]
    assert len(overlay["data"]) == 2
    assert heatmap["data"][0]["type"] == "heatmap"
    assert heatmap["data"][0]["x"] == list(OPS)
    assert "keeps widest" in texts(at)
    assert "on validation data: 100 sequences for vowels" in texts(at)  # the n of the accuracies in row names
    rows = heatmap["data"][0]["y"]  # "[c1] run 2 · 97.0% (91.5-99.0) · 1.23 kB": each accuracy with its interval
    assert rows and all(re.fullmatch(rf"\[c\d\] run \d · {ACC_CI} · \d+\.\d\d kB", y) for y in rows), rows
    at.slider(key="compare_k").set_value(2).run()
    assert not at.exception


def test_compare_defaults_to_one_objective_and_names_fine_tuned_runs(fake_db) -> None:
    from gruq.search import run
    from gruq.search.config import SearchConfig

    run.start(fake_db, SearchConfig(task="fake", pop=8, gens=2, seed=0, objective="bops"), progress=False)
    run.start(fake_db, SearchConfig(task="fake", pop=8, gens=2, seed=1), progress=False)
    run.start(fake_db, SearchConfig(task="fake", pop=8, gens=2, seed=2, finetune_epochs=1), progress=False)
    at = open_page(COMPARE)
    # the newest runs that minimised the same thing as the newest one: not run 1, which minimised BOPs
    assert at.multiselect(key="compare_runs").value == [3, 2]
    names = [t["name"] for t in plotly_specs(at)[0]["data"]]
    assert any(n.startswith("run 3 ") and n.endswith("fine-tuned 1 epoch") for n in names), names
    means = at.dataframe[0].value
    assert list(means.index) == list(OPS)  # operators as rows: the table fits the page's width
    assert at.radio(key="compare_axis").value == "size_bytes"


def test_compare_draws_bit_operation_runs_against_bit_operations(fake_db) -> None:
    """A front that minimised bit operations is a staircase against bit operations, not against
    size: the horizontal axis starts on the runs' own measure."""
    from gruq.search import run
    from gruq.search.config import SearchConfig

    run.start(fake_db, SearchConfig(task="fake", pop=8, gens=2, seed=0, objective="bops"), progress=False)
    at = open_page(COMPARE)
    assert at.multiselect(key="compare_runs").value == [1]
    assert at.radio(key="compare_axis").value == "bops_pct"


# ---------------------------------------------------------------- learn


def test_learn_explains_the_input_range_and_negative_fraction_bits(empty_db) -> None:
    at = open_page(LEARN)
    at.slider(key="learn_lut_in").set_value(2).run()
    caption = next(c.value for c in at.caption if "entries; input range" in c.value)
    assert "input range -8 to 4" in caption and "±" not in caption
    assert "-2 fraction bits: a negative count means the step is larger than 1" in caption


def test_learn_sliders_change_the_displayed_error(empty_db) -> None:
    at = open_page(LEARN)
    rms4 = float(metric(at, "RMS rounding error").value)
    at.slider(key="learn_bits").set_value(8).run()
    rms8 = float(metric(at, "RMS rounding error").value)
    assert rms8 < rms4 / 8
    lut_before = float(metric(at, "Largest table error").value)
    at.slider(key="learn_lut_out").set_value(8).run()
    assert float(metric(at, "Largest table error").value) < lut_before
    assert not at.exception
