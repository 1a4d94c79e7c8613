"""`gruq reproduce` on a tiny budget: the summary's exact schema, re-derivable checks, the report."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from gruq.errors import GruqError
from gruq.report import render_readme, summary_table
from gruq.reproduce import Budget, reproduce, smallest_within, spread_subset

ROOT = Path(__file__).resolve().parent.parent
TINY = Budget(pop=8, gens=2, seed=0, finetune_epochs=1, finetune_samples=96, front_size=3, workers=1)
TASK_KEYS = {"acc8", "size8", "size_cap", "hv_mixed", "hv_homogeneous", "within_0.5pp", "within_1pp"}
PICK_KEYS = {"bits", "accuracy", "size_bytes", "reduction", "check"}


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
    assert 0 <= t["hv_homogeneous"] <= 1 and 0 <= t["hv_mixed"] <= 1
    for key in ("within_0.5pp", "within_1pp"):
        p = t[key]
        assert set(p) == PICK_KEYS
        assert len(p["bits"]) == 17 and all(2 <= b <= 8 for b in p["bits"])
        assert p["accuracy"] >= t["acc8"] - (0.005 if key == "within_0.5pp" else 0.01) - 1e-9
        assert p["reduction"] == pytest.approx(1 - p["size_bytes"] / t["size8"])
        assert p["check"].startswith("python -m gruq evaluate --task vowels --bits ")
    assert t["within_1pp"]["size_bytes"] <= t["within_0.5pp"]["size_bytes"]
    b = summary["budget"]
    assert (b["pop"], b["gens"], b["finetune_epochs"], b["finetune_samples"], b["front_size"]) == (8, 2, 1, 96, 3)
    assert summary["wall_seconds"] > 0


def test_check_commands_reproduce_accuracy_and_size_exactly(run):
    _, summary, _ = run
    picks = summary["tasks"]["vowels"]
    commands = {picks[k]["check"]: picks[k] for k in ("within_0.5pp", "within_1pp")}
    for cmd, pick in commands.items():
        argv = shlex.split(cmd)
        assert argv[:3] == ["python", "-m", "gruq"]
        done = subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        record = json.loads(done.stdout)
        assert record["bits"] == pick["bits"] and record["split"] == "test"
        assert record["accuracy"] == pick["accuracy"]
        assert record["size_bytes"] == pick["size_bytes"]


def test_task_files_figures_and_readme(run):
    out, summary, events = run
    d = out / "tasks" / "vowels"
    record = json.loads((d / "result.json").read_text())
    assert record["acc8"] == summary["tasks"]["vowels"]["acc8"]
    assert len(record["baselines"]) == 7 and sum(r["selected"] for r in record["front"]) <= 3
    assert all(r["ft_test"] is not None for r in record["front"] if r["selected"])
    assert all("cluster" in r for r in record["front"])
    assert (d / "front.csv").read_text().startswith("bits,size_bytes")
    assert (d / "baselines.csv").read_text().count("\n") == 8
    for name in ("vowels_front.png", "vowels_bits.png"):
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    readme = (out / "README.md").read_text()
    assert summary_table(summary) in readme
    assert render_readme(summary, {"vowels": record}) == readme
    assert "figures/vowels_front.png" in readme and summary["tasks"]["vowels"]["within_0.5pp"]["check"] in readme
    assert ("vowels", "finetune", 10, 10) in events or any(e[1] == "finetune" and e[2] == e[3] for e in events)


def test_readme_table_without_run():
    pick = {"bits": [4] * 17, "accuracy": 0.95, "size_bytes": 3000.0, "reduction": 0.4, "check": "python -m gruq x"}
    summary = {
        "tasks": {
            "ecg": {
                "acc8": 0.9512,
                "size8": 5000.0,
                "size_cap": 2000.0,
                "hv_mixed": 0.71,
                "hv_homogeneous": 0.69,
                "within_0.5pp": pick,
                "within_1pp": pick,
            }
        },
        "budget": {**TINY.to_dict()},
        "wall_seconds": 61.0,
    }
    text = render_readme(summary)
    assert "| ecg | 95.12% | 5.00 kB | 2.00 kB (-60%) | **40.0%** (95.00%, 3.00 kB)" in text
    assert "python -m gruq x" in text


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
    assert list(table["task"]) == ["vowels"]
    assert table["reduction within 0.5 pp %"][0] == round(
        summary["tasks"]["vowels"]["within_0.5pp"]["reduction"] * 100, 1
    )
    assert summary["tasks"]["vowels"]["within_0.5pp"]["check"] in [c.value for c in at.code]


def test_app_page_without_a_report_says_how_to_make_one(tmp_path, monkeypatch):
    at = _page(monkeypatch, tmp_path)
    assert "gruq reproduce" in at.info[0].value
