"""`gruq reproduce` on a tiny budget: the summary's exact schema, re-derivable checks, the report."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gruq.errors import GruqError
from gruq.report import command_line, render_readme, summary_table
from gruq.reproduce import (
    COST_RATIO,
    Budget,
    cost_ratio,
    load_summary,
    load_task,
    reproduce,
    smallest_within,
    spread_subset,
)

ROOT = Path(__file__).resolve().parent.parent
TINY = Budget(
    pop=8,
    gens=2,
    seed=0,
    seeds=2,
    finetune_epochs=1,
    finetune_samples=96,
    front_size=3,
    workers=1,
    fitness="compare",
    search_finetune_samples=48,
    finetuned_pop=4,
)
TASK_KEYS = {"size8", "size_cap", "seeds", "reduction_mean", "test_delta_pp_mean", "fitness"}  # the issue's, + fitness
PICK_KEYS = {
    "bits",
    "selected_on",
    "select_accuracy",
    "select_acc8",
    "test_accuracy",
    "test_acc8",
    "test_delta_pp",
    "test_ci95",
    "size_bytes",
    "reduction",
    "check",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    events = []
    summary = reproduce(out, ["vowels"], TINY, progress=lambda *e: events.append(e))
    return out, summary, events


def test_summary_has_exactly_the_issue_schema(run):
    out, summary, _ = run
    assert json.loads((out / "summary.json").read_text()) == summary
    assert set(summary) == {"tasks", "budget", "wall_seconds"}
    assert set(summary["tasks"]) == {"vowels"}
    t = summary["tasks"]["vowels"]
    assert set(t) == TASK_KEYS
    assert t["size8"] == 5316.0 and t["size_cap"] == 2148.0  # H=32, 12 features, 9 classes
    assert [s["seed"] for s in t["seeds"]] == [0, 1]
    for s in t["seeds"]:
        assert set(s) == {"seed", "hv_mixed", "hv_homogeneous", "pick", "fitness"}
        assert 0 <= s["hv_homogeneous"] <= 1 and 0 <= s["hv_mixed"] <= 1
        p = s["pick"]
        assert set(p) == PICK_KEYS
        assert p["selected_on"] == "select"
        assert len(p["bits"]) == 17 and all(2 <= b <= 8 for b in p["bits"])
        assert p["select_accuracy"] >= p["select_acc8"] - 0.005 - 1e-9  # the pick rule, on select
        assert p["test_delta_pp"] == pytest.approx(100 * (p["test_accuracy"] - p["test_acc8"]))
        lo, hi = p["test_ci95"]
        assert lo <= p["test_accuracy"] <= hi
        assert p["reduction"] == pytest.approx(1 - p["size_bytes"] / t["size8"])
        assert p["check"].startswith("python -m gruq evaluate --task vowels --bits ")
        assert "--split holdout" in p["check"] and f"--seed {s['seed']}" in p["check"]
    assert t["reduction_mean"] == pytest.approx(sum(s["pick"]["reduction"] for s in t["seeds"]) / 2)
    assert t["test_delta_pp_mean"] == pytest.approx(sum(s["pick"]["test_delta_pp"] for s in t["seeds"]) / 2)
    b = summary["budget"]
    assert (b["pop"], b["gens"], b["finetune_epochs"], b["finetune_samples"], b["front_size"], b["seeds"]) == (
        8,
        2,
        1,
        96,
        3,
        2,
    )
    assert (b["search_split"], b["select_split"], b["report_split"]) == ("val", "select", "holdout")
    assert summary["wall_seconds"] > 0


def test_the_pick_is_the_smallest_within_half_a_point_on_select(run):
    out, summary, _ = run
    for record in json.loads((out / "tasks" / "vowels" / "result.json").read_text())["seeds"]:
        candidates = [r for r in record["front"] if r["selected"]] + record["baselines"]
        ref = record["baselines"][-1]
        assert ref["bits"] == [8] * 17
        want = smallest_within(candidates, "ft_select", ref["ft_select"], 0.005)
        assert record["pick"]["bits"] == want["bits"]
        assert record["pick"]["test_accuracy"] == want["ft_test"]  # reported on holdout, not chosen on it
        assert record["sequences"] == {"val": 100, "select": 150, "holdout": 150}


def test_both_fitnesses_are_searched_and_the_better_on_select_is_used(run):
    out, summary, _ = run
    records = json.loads((out / "tasks" / "vowels" / "result.json").read_text())["seeds"]
    for s, record in zip(summary["tasks"]["vowels"]["seeds"], records):
        fit = s["fitness"]
        assert set(fit["variants"]) == {"ptq", "finetuned"} and fit["decided_on"] == "select"
        v = fit["variants"]
        # the used fitness's pick is the reported pick; it is the smaller on select (ties: select hv, then ptq)
        assert v[fit["used"]]["bits"] == s["pick"]["bits"] and v[fit["used"]]["check"] == s["pick"]["check"]
        key = {f: (v[f]["reduction"], v[f]["hv_select"], f == "ptq") for f in v}
        assert key[fit["used"]] == max(key.values())
        # the fine-tuned-fitness search spent its budget in scorings, derived from the recorded cost ratio
        assert (
            v["finetuned"]["evaluations"] == TINY.finetuned_scorings("vowels") == round(16 / cost_ratio("vowels", 48))
        )
        assert v["ptq"]["evaluations"] <= TINY.pop * TINY.gens
        for f in v:
            assert v[f]["search_seconds"] > 0 and v[f]["search_cpu_seconds"] > 0
            assert v[f]["bits"] == record["fitness"]["variants"][f]["pick"]["bits"]
            assert set(record["fronts"][f][0]) >= {"fitness_val", "ptq_val", "selected"}
        assert record["front"] == record["fronts"][fit["used"]]
        assert (out / "tasks" / "vowels" / f"front_seed{s['seed']}_finetuned.csv").is_file()
    means = summary["tasks"]["vowels"]["fitness"]
    for f in ("ptq", "finetuned"):
        want = [s["fitness"]["variants"][f]["reduction"] for s in summary["tasks"]["vowels"]["seeds"]]
        assert means[f]["reduction_mean"] == pytest.approx(sum(want) / 2)
    assert sorted(means["ptq"]["used_on_seeds"] + means["finetuned"]["used_on_seeds"]) == [0, 1]
    readme = (out / "README.md").read_text()
    assert "## Search fitness: post-training accuracy against one fine-tuning epoch, at equal time" in readme
    assert "## How the default budget was chosen" in readme


def test_the_finetuned_search_budget_is_scorings_from_the_recorded_cost_ratio():
    b = Budget(pop=32, gens=20, search_finetune_samples=512, finetuned_pop=16)
    for task, r in COST_RATIO.items():
        assert b.finetuned_scorings(task) == max(16, round(640 / r))  # no clock involved: the same on any machine
    assert cost_ratio("smnist", 1024) - 1 == pytest.approx(2 * (cost_ratio("smnist", 512) - 1))
    assert Budget(pop=4, gens=1, finetuned_pop=16).finetuned_scorings("har") == 16  # at least one population
    d = b.to_dict()
    assert d["finetuned_scorings"]["smnist"] == b.finetuned_scorings("smnist") and d["fitness"] == "compare"
    assert Budget.from_dict(d) == b
    assert "--fitness compare --search-finetune-samples 512 --finetuned-pop 16" in command_line(d)
    assert command_line(Budget(fitness="ptq").to_dict()).endswith("--fitness ptq")
    assert Budget(fitness="ptq").variants == ["ptq"] and b.variants == ["ptq", "finetuned"]


def test_check_commands_reproduce_accuracy_and_size_exactly(run):
    _, summary, _ = run
    for s in summary["tasks"]["vowels"]["seeds"]:
        pick = s["pick"]
        argv = shlex.split(pick["check"])
        assert argv[:3] == ["python", "-m", "gruq"]
        done = subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        record = json.loads(done.stdout)
        assert record["bits"] == pick["bits"] and record["split"] == "holdout"
        assert record["accuracy"] == pick["test_accuracy"]
        assert record["size_bytes"] == pick["size_bytes"]
        assert record["sequences"] == 150


def test_task_files_figures_and_readme(run):
    out, summary, events = run
    d = out / "tasks" / "vowels"
    records = json.loads((d / "result.json").read_text())["seeds"]
    assert [r["seed"] for r in records] == [0, 1]
    record = records[0]
    assert record["pick"]["test_acc8"] == summary["tasks"]["vowels"]["seeds"][0]["pick"]["test_acc8"]
    assert len(record["baselines"]) == 7 and sum(r["selected"] for r in record["front"]) <= 3
    assert all(r["ft_test"] is not None for r in record["front"] if r["selected"])
    assert all("cluster" in r for r in record["front"])
    assert (d / "front_seed0.csv").read_text().startswith("bits,size_bytes")
    assert (d / "baselines_seed1.csv").read_text().count("\n") == 8
    for name in ("vowels_front.png", "vowels_bits.png"):
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    readme = (out / "README.md").read_text()
    assert summary_table(summary, {"vowels": records}) in readme
    assert render_readme(summary, {"vowels": records}) == readme
    assert "figures/vowels_front.png" in readme
    for s in summary["tasks"]["vowels"]["seeds"]:
        assert s["pick"]["check"] in readme
    assert "(n=150)" in readme and "--seeds 2" in readme
    assert any(e[1] == "finetune" and e[2] == e[3] for e in events)


class _Interrupt(Exception):
    pass


def test_an_interrupted_run_resumes_to_the_identical_report(run, tmp_path):
    out, summary, _ = run

    def stop_at_seed_1(task, stage, done, total):
        if task == "vowels seed 1":
            raise _Interrupt

    with pytest.raises(_Interrupt):
        reproduce(tmp_path, ["vowels"], TINY, progress=stop_at_seed_1)
    assert [p.name for p in (tmp_path / ".partial").iterdir()] == ["vowels_seed0.json"]
    resumed = reproduce(tmp_path, ["vowels"], TINY)
    assert _untimed(resumed) == _untimed(summary)
    for path in sorted((out / "tasks" / "vowels").glob("*.csv")):
        assert (tmp_path / "tasks" / "vowels" / path.name).read_text() == path.read_text(), path.name
    results = [json.loads((d / "tasks" / "vowels" / "result.json").read_text()) for d in (out, tmp_path)]
    assert _untimed(results[0]) == _untimed(results[1])


def _untimed(obj):
    """`obj` without what differs from run to run: clock readings (keys naming seconds) and the
    path of the run's search store."""
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items() if "seconds" not in k and k != "db"}
    if isinstance(obj, list):
        return [_untimed(v) for v in obj]
    return obj


def test_readme_table_without_run():
    pick = {
        "bits": [4] * 17,
        "selected_on": "select",
        "select_accuracy": 0.95,
        "select_acc8": 0.952,
        "test_accuracy": 0.95,
        "test_acc8": 0.9512,
        "test_delta_pp": -0.12,
        "test_ci95": [0.93, 0.965],
        "size_bytes": 3000.0,
        "reduction": 0.4,
        "check": "python -m gruq x",
    }
    summary = {
        "tasks": {
            "ecg": {
                "size8": 5000.0,
                "size_cap": 2000.0,
                "seeds": [{"seed": 0, "hv_mixed": 0.71, "hv_homogeneous": 0.69, "pick": pick}],
                "reduction_mean": 0.4,
                "test_delta_pp_mean": -0.12,
            }
        },
        "budget": {**TINY.to_dict()},
        "wall_seconds": 61.0,
    }
    text = render_readme(summary)
    assert "| ecg | 0 | **40.0%** (3.00 kB) | 95.00% / 95.20% | 95.00% [93.0, 96.5] | 95.12% | **-0.12**" in text
    assert "python -m gruq x" in text
    assert "| ecg | met (-0.12 pp) | **not met** (40.0% vs 55.0%) | met |" in text


def test_spread_subset_keeps_both_ends_and_spreads():
    pts = [(0.4 + 0.01 * i, 0.2 + 0.7 * (i / 59) ** 0.3) for i in range(60)]
    chosen = spread_subset(pts, 6)
    assert len(chosen) == 6 and chosen == sorted(set(chosen))
    assert 0 in chosen and 59 in chosen
    assert spread_subset(pts[:4], 6) == [0, 1, 2, 3]


def test_smallest_within_prefers_small_then_accurate():
    c = [
        {"bits": [8] * 17, "size_bytes": 10.0, "a": 0.90},
        {"bits": [3] * 17, "size_bytes": 4.0, "a": 0.80},
        {"bits": [5] * 17, "size_bytes": 6.0, "a": 0.896},
        {"bits": [6] * 17, "size_bytes": 6.0, "a": 0.899},
    ]
    assert smallest_within(c, "a", 0.90, 0.005)["bits"] == [6] * 17
    assert smallest_within(c, "a", 0.90, 0.2)["bits"] == [3] * 17


def test_bad_budget_and_task_are_gruq_errors(tmp_path):
    with pytest.raises(GruqError):
        Budget(pop=2)
    with pytest.raises(GruqError, match="fitness"):
        Budget(fitness="val")
    with pytest.raises(GruqError, match="finetuned_pop"):
        Budget(finetuned_pop=2)
    with pytest.raises(GruqError):
        reproduce(tmp_path, ["nope"], TINY)
    done = subprocess.run(
        [sys.executable, "-m", "gruq", "reproduce", "--out", str(tmp_path), "--tasks", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "unknown task" in done.stderr and "Traceback" not in done.stderr


def _page(monkeypatch, reports: Path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("GRUQ_REPORTS", str(reports))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("app_pages/reproduce.py")
    at.run()
    assert not at.exception
    return at


def test_app_page_reads_the_report(run, monkeypatch):
    out, summary, _ = run
    at = _page(monkeypatch, out)
    assert at.title[0].value.startswith("Reproduce")
    table = at.dataframe[0].value
    assert list(table["task"]) == ["vowels", "vowels"]
    seeds = summary["tasks"]["vowels"]["seeds"]
    assert list(table["kB (smaller)"]) == [
        f"{s['pick']['size_bytes'] / 1000:.2f} (-{s['pick']['reduction'] * 100:.1f}%)" for s in seeds
    ]
    names = {"ptq": "post-training", "finetuned": "1 fine-tuning epoch"}
    assert list(table["search fitness"]) == [names[s["fitness"]["used"]] for s in seeds]
    assert [s["pick"]["check"] for s in seeds] == [c.value for c in at.code]


def test_app_page_without_a_report_says_how_to_make_one(tmp_path, monkeypatch):
    at = _page(monkeypatch, tmp_path)
    assert "gruq reproduce" in at.info[0].value


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"tasks": [1]}', "\udcff"])
def test_a_damaged_report_is_one_line_on_the_page_and_from_the_loader(tmp_path, monkeypatch, text):
    (tmp_path / "summary.json").write_text(text, errors="surrogateescape")
    with pytest.raises(GruqError, match=r"summary\.json (cannot be read as|is not) a .*report") as info:
        load_summary(tmp_path)
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
    at = _page(monkeypatch, tmp_path)  # no exception on the page
    assert "gruq reproduce" in at.info[0].value
    (tmp_path / "tasks" / "vowels").mkdir(parents=True)
    (tmp_path / "tasks" / "vowels" / "result.json").write_text("{not json")
    with pytest.raises(GruqError, match="cannot be read as a report"):
        load_task(tmp_path, "vowels")


def _drop(data: dict, path: str) -> str:
    """`data` as JSON without the key at the dotted `path` ("tasks.ecg.seeds.0.pick.check")."""
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    del node[last]
    return json.dumps(data)


@pytest.mark.parametrize(
    "path, said",
    [
        ("budget", "budget is missing"),
        ("wall_seconds", "wall_seconds is missing"),
        ("budget.pop", "budget.pop is missing"),
        ("tasks.ecg.reduction_mean", "tasks.ecg.reduction_mean is missing"),
        ("tasks.ecg.seeds.1.pick.check", r"tasks.ecg.seeds\[1\].pick.check is missing"),
    ],
)
def test_a_report_without_a_key_the_page_reads_is_one_line_and_an_info(tmp_path, monkeypatch, path, said):
    """A hand-edited summary.json that is JSON but lacks a key is refused like a damaged one."""
    shipped = json.loads((ROOT / "reports" / "summary.json").read_text())
    (tmp_path / "summary.json").write_text(_drop(shipped, path))
    with pytest.raises(GruqError, match=rf"summary\.json is not a gruq report \({said}\); run: ") as info:
        load_summary(tmp_path)
    assert "\n" not in str(info.value)
    at = _page(monkeypatch, tmp_path)  # no exception on the page
    assert said.replace("\\", "") in at.info[0].value and "gruq reproduce" in at.info[0].value


def test_a_report_with_text_for_a_number_is_refused_by_name(tmp_path):
    shipped = json.loads((ROOT / "reports" / "summary.json").read_text())
    shipped["tasks"]["vowels"]["seeds"][0]["pick"]["test_ci95"] = [0.9]
    shipped["budget"]["gens"] = "twenty"
    (tmp_path / "summary.json").write_text(json.dumps(shipped))
    with pytest.raises(GruqError, match=r"\(budget\.gens is not a number\)"):
        load_summary(tmp_path)
    shipped["budget"]["gens"] = 20
    (tmp_path / "summary.json").write_text(json.dumps(shipped))
    with pytest.raises(GruqError, match=r"\(tasks\.vowels\.seeds\[0\]\.pick\.test_ci95 is not two numbers\)"):
        load_summary(tmp_path)


def test_a_task_record_without_a_key_the_page_reads_is_refused_and_the_page_goes_on(tmp_path, monkeypatch):
    shutil.copy(ROOT / "reports" / "summary.json", tmp_path / "summary.json")
    shipped = json.loads((ROOT / "reports" / "tasks" / "vowels" / "result.json").read_text())
    (tmp_path / "tasks" / "vowels").mkdir(parents=True)
    (tmp_path / "tasks" / "vowels" / "result.json").write_text(_drop(shipped, "seeds.0.widths"))
    with pytest.raises(GruqError, match=r"result\.json is not a gruq report \(seeds\[0\]\.widths is missing\)"):
        load_task(tmp_path, "vowels")
    at = _page(monkeypatch, tmp_path)  # the summary's table, without the per-seed extras, and why
    assert any("seeds[0].widths is missing" in i.value for i in at.info)
    at.selectbox(key="reproduce_task").set_value("vowels").run()
    assert not at.exception and "vowels" in at.dataframe[0].value["task"].tolist()


@pytest.mark.parametrize(
    "edit, said",
    [
        (lambda s: s["tasks"]["ecg"].update(seeds=[]), r"tasks\.ecg\.seeds is empty"),
        (lambda s: s.update(tasks={}), r"tasks is empty"),
        (lambda s: s.update(source={"task": "/d.npz", "checkpoint": 7}), r"source\.checkpoint is not text"),
    ],
)
def test_a_report_with_nothing_to_show_or_a_number_for_a_path_is_refused_by_name(tmp_path, monkeypatch, edit, said):
    """An empty task list or seed list, or a checkpoint that is no path, would fail on the page."""
    shipped = json.loads((ROOT / "reports" / "summary.json").read_text())
    edit(shipped)
    (tmp_path / "summary.json").write_text(json.dumps(shipped))
    with pytest.raises(GruqError, match=said):
        load_summary(tmp_path)
    assert "is not a gruq report" in _page(monkeypatch, tmp_path).info[0].value


def test_app_page_gives_every_holdout_figure_its_n_and_interval(monkeypatch):
    """The shipped report (reports/): each accuracy with its n and a 95% interval, each
    difference to all-8-bit with its paired interval, each mean over seeds with its range."""
    reports = ROOT / "reports"
    summary = json.loads((reports / "summary.json").read_text())
    at = _page(monkeypatch, reports)
    table = at.dataframe[0].value
    holdout = {t: load_task(reports, t)[0]["sequences"]["holdout"] for t in summary["tasks"]}
    assert list(table["n"]) == [holdout[t] for t in table["task"]]
    for column in ("holdout % (95% CI)", "8-bit % (95% CI)"):  # each accuracy with its interval, in one cell
        assert all(re.fullmatch(r"\d+\.\d\d \(\d+\.\d-\d+\.\d\)", cell) for cell in table[column])
    delta = r"[+-]\d+\.\d\d \([+-]\d+\.\d\d to [+-]\d+\.\d\d\)"
    assert all(re.fullmatch(delta, cell) for cell in table["Δ pp (paired CI)"])
    # narrow enough for a 1366-px laptop without scrolling sideways (measured in Chromium: 878 of
    # 904 px): figures share a cell with their intervals, headers stay short
    assert len(table.columns) <= 9 and max(len(c) for c in table.columns) <= 18
    means = next(m.value for m in at.markdown if "mean reduction" in m.value)
    assert means.count("..") == 2 * len(summary["tasks"])  # a range beside each mean
    seeds = [m.value for m in at.markdown if m.value.startswith("**Seed")]
    assert seeds and all("paired 95% CI" in s and "n=" in s for s in seeds)


def test_a_report_whose_fitness_used_is_not_text_is_refused_by_name(tmp_path, monkeypatch):
    """The page names the fitness a seed used from a table: a list there is refused, not a TypeError."""
    shipped = json.loads((ROOT / "reports" / "summary.json").read_text())
    shipped["tasks"]["ecg"]["seeds"][0]["fitness"] = {"used": ["ptq"]}
    (tmp_path / "summary.json").write_text(json.dumps(shipped))
    with pytest.raises(GruqError, match=r"tasks\.ecg\.seeds\[0\]\.fitness\.used is not text"):
        load_summary(tmp_path)
    at = _page(monkeypatch, tmp_path)
    assert "fitness.used is not text" in at.info[0].value
