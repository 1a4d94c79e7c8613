"""The app's UI-free parts: gruq.views (tables) and gruq.figures (Plotly figures)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from gruq import figures, fixedpoint, views
from gruq.errors import GruqError
from gruq.genome import ModelShape, fixed_bytes, homogeneous, size_bytes
from gruq.ops import LINEAR, OPS

SHAPE = ModelShape(features=12, hidden=32, classes=9, steps=29)


def frame(rows: list[tuple[float, float]]) -> pd.DataFrame:
    """Points (accuracy, size) with distinct genomes."""
    return pd.DataFrame(
        {
            "accuracy": [a for a, _ in rows],
            "size_bytes": [s for _, s in rows],
            "bops": [int(s) for _, s in rows],
            "generation": 0,
            "genome": [homogeneous(2 + i % 7)[:-1] + (i,) for i in range(len(rows))],
        }
    )


def test_pareto_mask_keeps_exactly_the_non_dominated_points() -> None:
    acc = [0.5, 0.6, 0.55, 0.9, 0.9, 0.2]
    cost = [1.0, 2.0, 3.0, 4.0, 5.0, 0.5]
    assert views.pareto_mask(acc, cost).tolist() == [True, True, False, True, False, True]


def test_best_under_takes_the_most_accurate_point_that_fits() -> None:
    front = views.front_of(frame([(0.5, 1000), (0.7, 2000), (0.9, 3000)]))
    assert views.best_under(front, 2500)["accuracy"] == 0.7
    assert views.best_under(front, 3000)["accuracy"] == 0.9
    assert views.best_under(front, None)["accuracy"] == 0.9
    assert views.best_under(front, 999) is None
    assert views.best_under(front, 3000, min_accuracy=0.95) is None


def test_distinct_tradeoffs_keeps_one_genome_per_point_and_counts_the_others() -> None:
    df = frame([(0.5, 1000), (0.5, 1000), (0.7, 2000)])
    df.loc[1, "bops"] = 10  # the cheaper of the two alike genomes stands for the point
    out = views.distinct_tradeoffs(df)
    assert len(out) == 2
    assert out.loc[0, "genome"] == df.loc[1, "genome"] and out.loc[0, "alike"] == 1
    assert out.loc[1, "alike"] == 0


def test_genome_table_sizes_add_up_to_the_model_size() -> None:
    g = (3, 5, 5, 5, 2, 7, 2, 5, 6, 4, 8, 8, 6, 2, 8, 5, 5)
    table = views.genome_table(g, SHAPE)
    assert list(table["operator"]) == list(OPS) and tuple(table["bits"]) == g
    assert table["weight bytes"].sum() + fixed_bytes(SHAPE) == pytest.approx(size_bytes(g, SHAPE))
    assert set(table.loc[table["weight bytes"] > 0, "#"]) == set(LINEAR)


def test_max_size_from_any_unit() -> None:
    size8 = size_bytes(homogeneous(8), SHAPE)
    assert views.max_size_bytes({"max_size_kb": 3.5}, SHAPE) == 3500
    assert views.max_size_bytes({"max_size_pct": 50}, SHAPE) == pytest.approx(size8 / 2)
    assert views.max_size_bytes({"max_size_bytes": 1234}, SHAPE) == 1234
    assert views.max_size_bytes({}, SHAPE) is None


def test_progress_estimates_the_remaining_time_from_the_pace_so_far() -> None:
    run = {
        "generations": 10,
        "generations_done": 4,
        "status": "running",
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": None,
    }
    p = views.progress(run, [], now=datetime(2026, 1, 1, 0, 0, 20, tzinfo=UTC))
    assert p["fraction"] == 0.4 and p["elapsed"] == 20 and p["remaining"] == pytest.approx(30)
    assert views.duration(75) == "1m 15s" and views.duration(None) == "—"


def test_remaining_time_counts_down_while_a_generation_runs() -> None:
    """The run took 10 s to launch, then 10 s per generation: the estimate must not grow
    while generation 3 is being scored (it used to, being elapsed / generations done)."""
    run = {
        "generations": 6,
        "generations_done": 3,
        "status": "running",
        "created_at": "2026-01-01T00:00:00+00:00",
        "started_at": "2026-01-01T00:00:10+00:00",
        "finished_at": None,
    }
    curve = [{"gen": g, "finished_at": f"2026-01-01T00:00:{20 + 10 * g}+00:00"} for g in range(3)]
    at = [views.progress(run, curve, now=datetime(2026, 1, 1, 0, 0, s, tzinfo=UTC)) for s in (40, 45, 49, 59)]
    assert [p["remaining"] for p in at] == [30, 25, 21, 20]  # down, then never below the 2 generations to start
    assert at[0]["elapsed"] == 40  # from the launch: the run process's start-up counts


def _at(seconds: int) -> str:
    return datetime.fromtimestamp(1_767_225_600 + seconds, UTC).isoformat()  # 2026-01-01 + seconds


def test_elapsed_time_leaves_out_the_time_a_run_sat_cancelled() -> None:
    """Launched at 0, cancelled at 20, resumed an hour later, finished 30 s after: it ran 50 s.
    The pace of its generations ignores the hour too."""
    events = [("queued", 0), ("running", 2), ("cancelled", 20), ("queued", 3620), ("running", 3621)]
    run = {
        "generations": 6,
        "generations_done": 4,
        "status": "running",
        "alive": True,
        "created_at": _at(0),
        "started_at": _at(2),
        "finished_at": None,
        "events": [{"status": s, "at": _at(t)} for s, t in events],
    }
    curve = [{"gen": g, "finished_at": _at(t)} for g, t in enumerate((10, 20, 3630, 3640))]
    now = datetime.fromisoformat(_at(3640))
    p = views.progress(run, curve, now=now)
    assert p["elapsed"] == 20 + 20
    assert p["remaining"] == 20  # 10 s per generation (not an hour over the cancel), 2 to go
    finished = {**run, "status": "finished", "finished_at": _at(3650), "alive": False}
    finished["events"] = run["events"] + [{"status": "finished", "at": _at(3650)}]
    assert views.progress(finished, curve, now=now + timedelta(days=1))["elapsed"] == 20 + 30


def test_a_killed_run_stopped_running_at_its_last_generation() -> None:
    """kill -9 leaves the status 'running' with no end: the stretch ends at the last generation
    committed (the process was still alive then), for a run gone now and for one resumed later."""
    run = {
        "generations": 5,
        "generations_done": 2,
        "status": "running",
        "alive": False,
        "created_at": _at(0),
        "started_at": _at(0),
        "finished_at": None,
        "events": [{"status": "queued", "at": _at(0)}, {"status": "running", "at": _at(1)}],
    }
    curve = [{"gen": 0, "finished_at": _at(10)}, {"gen": 1, "finished_at": _at(20)}]
    later = datetime.fromisoformat(_at(5000))
    assert views.progress(run, curve, now=later)["elapsed"] == 20
    resumed = {**run, "alive": True, "events": run["events"] + [{"status": "running", "at": _at(4990)}]}
    assert views.progress(resumed, curve, now=later)["elapsed"] == 20 + 10


def test_status_is_said_as_a_person_would() -> None:
    run = {"run_id": 4, "status": "cancelled", "error": "cancelled by SIGTERM", "alive": False}
    assert views.status_text(run) == "cancelled"
    assert views.stop_note(run) == "Run 4 was cancelled. Resume continues it from its last finished generation."
    assert "Ctrl+C" in views.stop_note({**run, "error": "cancelled by SIGINT"})
    assert views.stop_note({**run, "status": "finished", "error": None}) is None


def test_wording_follows_the_objective() -> None:
    assert views.words("bops")["noun"] == "bit operations" and views.words("size")["noun"] == "size"
    assert views.cost_of("bops") == "bops" and views.cost_of("size") == "size_bytes"
    assert views.format_cost(2_500_000, "bops") == "2.50 M BOPs" and views.format_cost(2500, "size_bytes") == "2.50 kB"


def test_front_table_has_both_costs_and_the_saving_of_the_objective() -> None:
    front = views.baselines(SHAPE, [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.91])
    size_t = views.front_table(front, SHAPE, "size")
    bops_t = views.front_table(front, SHAPE, "bops")
    assert list(size_t.columns) == ["accuracy %", "size kB", "M BOPs", "smaller than 8-bit", "bits"]
    assert "fewer BOPs than 8-bit" in bops_t.columns
    assert size_t["smaller than 8-bit"].iloc[-1] == bops_t["fewer BOPs than 8-bit"].iloc[-1] == "0%"
    assert size_t["bits"].iloc[0] == " ".join(["2"] * 17)


def test_front_table_gives_each_accuracy_its_interval_when_n_is_known() -> None:
    from gruq.stats import wilson_acc

    front = views.baselines(SHAPE, [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.97])
    table = views.front_table(front, SHAPE, "size", sequences=100)
    assert list(table.columns)[0] == "acc. % (95% CI)" and "accuracy %" not in table.columns
    lo, hi = wilson_acc(0.97, 100)
    assert table["acc. % (95% CI)"].iloc[-1] == f"97.0 ({100 * lo:.1f}-{100 * hi:.1f})" == "97.0 (91.5-99.0)"


def test_run_front_is_one_row_per_trade_off() -> None:
    pts = frame([(0.9, 100), (0.9, 100), (0.8, 50)]).assign(feasible=True, on_front=True)
    front = views.run_front(pts)
    assert len(front) == 2 and list(front["alike"]) == [0, 1]
    assert views.front_csv(front).count("\n") == 3  # header + the same rows the page shows


def test_the_front_csv_header_says_which_split_how_many_sequences_and_which_model() -> None:
    """A downloaded front leaves the page's captions behind: its header names the split
    (validation), the n, the 95% interval and the model of every accuracy."""
    import io

    from gruq.stats import wilson_acc

    pts = frame([(0.9, 100), (0.8, 50)]).assign(
        feasible=True, on_front=True, finetuned_accuracy=[0.93, None], genome=[homogeneous(6), homogeneous(4)]
    )
    front = views.reported_front(views.run_front(pts))
    config = {"seed": 0, "front_finetune_epochs": 2}
    models = views.front_models(front, config, "vowels")
    table = pd.read_csv(io.StringIO(views.front_csv(front, 100, models)))
    assert list(table.columns[:7]) == [
        "val_accuracy", "val_sequences", "val_ci95_low", "val_ci95_high", "model", "size_bytes", "bops"
    ]  # fmt: skip
    assert "accuracy" not in table.columns and list(table["val_sequences"]) == [100, 100]
    assert list(table["model"]) == ["post-training", "fine-tuned 2 epochs (final front)"]  # the 0.8 member first
    for acc, lo, hi in zip(table["val_accuracy"], table["val_ci95_low"], table["val_ci95_high"]):
        assert (lo, hi) == pytest.approx(wilson_acc(acc, 100), abs=1e-4) and lo < acc < hi
    unknown = pd.read_csv(io.StringIO(views.front_csv(front)))
    assert list(unknown.columns) == list(table.columns) and unknown["val_sequences"].isna().all()


def test_a_fine_tuned_front_reports_and_downloads_the_fine_tuned_accuracies() -> None:
    """One model per scheme: after the run's final fine-tuning of its front, the front every page
    draws and downloads (Live, Explorer CSV, Compare) carries the fine-tuned models' accuracies."""
    pts = frame([(0.9, 100), (0.8, 50)]).assign(feasible=True, on_front=True, finetuned_accuracy=[0.93, None])
    front = views.reported_front(views.run_front(pts))
    assert sorted(front["accuracy"]) == [0.8, 0.93]  # a member without fine-tuning keeps its own
    assert "0.93" in views.front_csv(front) and "0.9," not in views.front_csv(front)
    plain = frame([(0.9, 100)]).assign(feasible=True, on_front=True, finetuned_accuracy=[None])
    assert list(views.reported_front(views.run_front(plain))["accuracy"]) == [0.9]


def test_an_empty_front_is_explained_with_the_best_accuracy_reached() -> None:
    pts = frame([(0.91, 5000), (0.95, size_bytes(homogeneous(8), SHAPE)), (0.5, 2500)])
    pts = pts.assign(genome=[homogeneous(5), homogeneous(8), homogeneous(2)], feasible=False, on_front=False)
    text = views.empty_front_reason(pts, {"min_accuracy": 0.99}, SHAPE)
    assert "No scheme met the minimum accuracy of 99.0%" in text
    assert "the best of the 3 schemes tried reached 95.0% (the all-8-bit model: 95.0%)" in text
    assert "Lower the minimum accuracy to 95.0% or less" in text and "fine-tune" in text
    limited = views.empty_front_reason(pts, {"min_accuracy": 0.99, "max_size_kb": 5.0}, SHAPE)
    assert "within the size limit reached 91.0%" in limited and "raise the maximum size" in limited
    assert views.empty_front_reason(pts.assign(feasible=[True, False, False]), {}, SHAPE) is None


def test_format_range_explains_negative_fraction_bits() -> None:
    two = views.format_range(fixedpoint.Format(2, -2))
    assert (two["lo"], two["hi"], two["step"]) == (-8, 4, 4)
    assert "negative count means the step is larger than 1" in two["note"]
    assert views.format_range(fixedpoint.Format(8, 4))["hi"] == 7.9375


def test_the_tried_points_under_a_front_point_are_left_out_of_the_chart() -> None:
    points = frame([(0.9, 100), (0.8, 50), (0.7, 70)])
    front = points.iloc[:2].reset_index(drop=True)
    fig = figures.front_chart(points, front, cost="size_bytes")
    assert list(fig.data[0].customdata) == [2] and list(views.uncovered(points, [front])) == [False, False, True]
    assert "kB" in fig.data[0].hovertemplate and "kB" in fig.data[2].hovertemplate
    assert "M BOPs" in figures.front_chart(points, front, cost="bops").data[0].hovertemplate


def test_cell_diagram_holds_every_arrow_box_and_label() -> None:
    """Its annotations and shapes are set at once (one by one, plotly re-validated the whole
    list each time: 0.6 s of CPU per diagram, drawn on every what-if change)."""
    fig = figures.cell_diagram(homogeneous(4))
    assert len(fig.layout.annotations) == 47 and len(fig.layout.shapes) == 18
    assert sum(bool(a.showarrow) for a in fig.layout.annotations) == 25  # 18 edges, 6 inputs, h_t-1


def test_clusters_group_similar_genomes_widest_first() -> None:
    wide = [homogeneous(8), homogeneous(7)]
    narrow = [homogeneous(2), homogeneous(3)]
    cl = views.cluster_genomes(narrow + wide, ["a", "b", "c", "d"], k=2)
    assert cl.labels.tolist() == [1, 1, 2, 2]
    assert set(cl.names[:2]) == {"c", "d"}
    assert cl.mean_bits.loc["cluster 1"].min() >= 7
    assert views.wide_operators([(2,) * 16 + (8,)], top=1) == [("add_h", 8.0)]


def test_heatmap_rows_of_the_same_name_stay_apart() -> None:
    """Two front members of equal accuracy and size (bit-operation runs) get one row each."""
    genomes = np.array([homogeneous(4), homogeneous(6), homogeneous(8)])
    fig = figures.bits_heatmap(genomes, ["run 1 · 90% · 1.00 kB"] * 2 + ["run 1 · 95% · 2.00 kB"], [1, 1, 2])
    rows = list(fig.data[0].y)
    assert len(set(rows)) == 3 and rows[0] == "[c1] run 1 · 90% · 1.00 kB" and rows[2] == "[c2] run 1 · 95% · 2.00 kB"
    assert "run 1 · 90% · 1.00 kB" in rows[1]  # the repeat still says what it is


def test_learning_helpers_use_the_fixed_point_arithmetic_of_record() -> None:
    _, x = views.demo_signal()
    q = views.quantize_signal(x, 4)
    fmt = fixedpoint.Format(4, 3)
    assert q["format"] == fmt and np.array_equal(q["codes"], fixedpoint.quantize(x, fmt))
    rms = views.rms_by_bits(x)["rms"].tolist()
    assert all(a > b for a, b in zip(rms, rms[1:]))  # every extra bit helps
    lut = views.sigmoid_lut(5, 4)
    assert lut["entries"] == 32
    assert np.array_equal(
        lut["lut"] * 16, fixedpoint.activation_lut(fixedpoint.sigmoid, lut["in_format"], lut["out_format"])
    )


def test_front_chart_has_its_traces_in_a_fixed_order_and_marks_the_pick() -> None:
    points = frame([(0.5, 1000), (0.7, 2000), (0.9, 3000), (0.4, 2500)])
    front = views.front_of(points)
    base = views.baselines(SHAPE, [0.1, 0.3, 0.5, 0.7, 0.8, 0.85, 0.9])
    best = views.best_under(front, 2500)
    fig = figures.front_chart(points, front, base, limit=2500, best=best, best_text="best under 2.50 kB")
    names = [t.name for t in fig.data]
    assert names[0] == "every scheme tried" and names[1].startswith("same bits") and names[2].startswith("best trade")
    assert names[3] == "best under the limit"
    assert list(fig.data[2].customdata) == list(range(len(front)))
    assert fig.data[2].line.shape == "hv"
    assert any(a.text == "best under 2.50 kB" for a in fig.layout.annotations)
    assert any("your limit" in (a.text or "") for a in fig.layout.annotations)


def test_front_chart_draws_an_empty_run() -> None:
    empty = views.points_frame([])
    fig = figures.front_chart(empty, empty, None)
    assert len(fig.data) == 3


def test_cell_diagram_colours_each_operator_by_its_bits() -> None:
    g = tuple(2 + i % 7 for i in range(17))
    fig = figures.cell_diagram(g)
    boxes = [s for s in fig.layout.shapes if s.type == "rect" and s.fillcolor in figures.BIT_COLORS.values()]
    assert len(boxes) == 17
    assert [b.fillcolor for b in boxes] == [figures.BIT_COLORS[b] for b in g]
    thick = [b for b in boxes if b.line.width > 2]
    assert len(thick) == len(LINEAR)
    labels = " ".join(a.text for a in fig.layout.annotations if a.text)
    assert all(name in labels for name in OPS)


def test_the_library_never_imports_streamlit() -> None:
    """pages -> gruq, never back: importing gruq's modules (the app's helpers included) loads no Streamlit."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, gruq.figures, gruq.views, gruq.search.launch, gruq.store, gruq.evaluate; "
        "assert 'streamlit' not in sys.modules, 'gruq imported streamlit'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# ---------------------------------------------------------------- stacked layers

STACKED = ModelShape(features=12, hidden=32, classes=9, steps=29, layers=2)
TWO = tuple(range(2, 9)) * 2 + (2, 3, 4) + tuple(range(8, 1, -1)) * 2 + (8, 7, 6)  # 34 genes: layer 0, layer 1


def test_a_stacked_genome_table_lists_every_gene_and_its_sizes_add_up() -> None:
    table = views.genome_table(TWO, STACKED)
    assert list(table["layer"]) == [0] * 17 + [1] * 17 and list(table["operator"]) == list(OPS) * 2
    assert table["weight bytes"].sum() + fixed_bytes(STACKED) == pytest.approx(size_bytes(TWO, STACKED))
    # layer 1 reads layer 0's h: its input weights are hidden x hidden, not hidden x features
    assert table.loc[17, "weight bytes"] == 32 * 32 * TWO[17] / 8 and table.loc[0, "weight bytes"] == 32 * 12 * 2 / 8


def test_the_layer_bits_table_reads_one_operator_per_row_and_one_layer_per_column() -> None:
    table = views.layer_bits_table(TWO, STACKED)
    assert list(table["operator"]) == list(OPS)
    assert tuple(table["layer 0 bits"]) == TWO[:17] and tuple(table["layer 1 bits"]) == TWO[17:]
    total = table["layer 0 bytes"].sum() + table["layer 1 bytes"].sum()
    assert total + fixed_bytes(STACKED) == pytest.approx(size_bytes(TWO, STACKED))


def test_stacked_views_name_genes_by_layer() -> None:
    parts = views.size_breakdown(TWO, STACKED)
    assert list(parts)[:2] == ["l0.lin_xr", "l0.lin_hr"] and "l1.lin_hn" in parts and len(parts) == 13
    assert views.genome_from(",".join(map(str, TWO))) == TWO
    assert views.genome_from(list(TWO)) == TWO and views.genome_from(str(list(TWO))) == TWO
    for junk in ("abc", "[1,2", '["a"]', "4,x"):  # a hand-edited address: one plain line, no parser's error
        with pytest.raises(GruqError, match=r"^the bits must be one width, or 17 per layer") as info:
            views.genome_from(junk)
        assert repr(junk) in str(info.value) and "--bits" not in str(info.value)
    assert "l1.add_h" in views.front_csv(pd.DataFrame({"accuracy": [0.5], "size_bytes": [1.0], "genome": [TWO]}))
    assert views.wide_operators([TWO], top=1) == [(f"l0.{OPS[6]}", 8.0)]  # the first gene at 8 bits
    base = views.baselines(STACKED, [0.1 * b for b in range(2, 9)])
    assert base["size_bytes"].iloc[-1] == size_bytes(homogeneous(8, 2), STACKED)
    assert views.max_size_bytes({"max_size_pct": 50}, STACKED) == 0.5 * size_bytes(homogeneous(8, 2), STACKED)


def test_the_cell_diagram_draws_one_titled_cell_per_layer() -> None:
    figs = figures.layer_diagrams(TWO)
    assert [f.layout.title.text.split(":")[0] for f in figs] == ["<b>layer 0</b>", "<b>layer 1</b>"]
    assert "layer 0's new state" in figs[1].layout.title.text
    one = figures.layer_diagrams(TWO[:17])
    assert len(one) == 1 and one[0].layout.title.text is None  # one layer: the diagram as before
    labels = [a.text for a in figs[1].layout.annotations if a.text and "bits" in a.text and "<b>" in a.text]
    assert labels[0] == f"<b>lin_xr</b><br>{TWO[17]} bits"


def test_a_download_is_named_after_its_run_and_scheme() -> None:
    """Downloads of two schemes never share a name; the name is safe on any file system."""
    import re

    mixed = [8, 7, 6, 5, 4, 3, 2] + [8] * 10
    assert views.scheme_file_name(mixed, "json", 3) == "gruq-run3-87654328888888888.json"
    assert views.scheme_file_name([4] * 17, "zip", 3) == "gruq-run3-all4.zip"
    assert views.scheme_file_name(mixed + [4] * 17, "json", 3) == "gruq-run3-87654328888888888-44444444444444444.json"
    assert views.scheme_file_name([8] * 17, "json", None, "vowels") == "gruq-vowels-all8.json"
    own = views.scheme_file_name([8] * 17, "json", None, "runs/uploads/my data (v2)!.npz")
    assert re.fullmatch(r"gruq-[A-Za-z0-9_-]+-all8\.json", own) and "my_data" in own
    assert views.scheme_file_name(mixed, "json", 3) != views.scheme_file_name([2] + mixed[1:], "json", 3)


def test_the_front_csv_is_named_after_its_run_and_how_many_generations_it_holds() -> None:
    """The front grows while a run goes: two downloads at different generations never share a name."""
    assert views.front_file_name(3, 7) == "gruq-run3-gen7-front.csv"
    assert views.front_file_name(3, 7) != views.front_file_name(3, 9) != views.front_file_name(4, 9)
