"""`gruq reproduce --task data.npz --checkpoint my.ckpt`: the reproduce report for a user's own
task and imported model (issue 13), on a tiny budget.

The model is a real two-layer torch GRU trained here on data made here (as in
tests/test_importer.py), saved as a state_dict and imported with `gruq import`.
The report has the built-in tasks' layout and protocol; each pick's check
command names the user's files and re-derives the holdout accuracy and size.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_importer import Net, make_data, trained
from test_reproduce import PICK_KEYS
from test_search_cli import one_error_line

from gruq.cli import main
from gruq.errors import GruqError
from gruq.reproduce import TRAIN_COST, Budget, Subject, _done, _keep, cost_ratio, reproduce

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "--pop", "4", "--gens", "1", "--seeds", "1", "--finetune-epochs", "1", "--finetune-samples", "48",
    "--front-size", "2", "--workers", "1", "--fitness", "compare", "--search-finetune-samples", "48",
    "--finetuned-pop", "4",
]  # fmt: skip


def imported(tmp: Path, seed: int = 1) -> tuple[Path, Path]:
    """data.npz and my.ckpt: a two-layer torch GRU trained on the data, imported by `gruq import`."""
    X, y = make_data(tmp / "data.npz")
    torch.manual_seed(seed)
    torch.save(trained(Net(6, 2), X, y, steps=40).state_dict(), tmp / "model.pt")
    args = ["import", "--state-dict", str(tmp / "model.pt"), "--task", str(tmp / "data.npz")]
    assert main([*args, "--out", str(tmp / "my.ckpt")]) == 0
    return tmp / "data.npz", tmp / "my.ckpt"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    return imported(tmp_path_factory.mktemp("own"))


@pytest.fixture(scope="module")
def run(files):
    data, ckpt = files
    out = data.parent / "report"
    r = subprocess.run(
        [sys.executable, "-m", "gruq", "reproduce", "--task", str(data), "--checkpoint", str(ckpt)]
        + ["--out", str(out), *TINY, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return data.parent, out, json.loads(r.stdout)


def test_the_report_has_the_issue_keys_for_the_users_task(run):
    tmp, out, summary = run
    assert json.loads((out / "summary.json").read_text()) == summary
    assert set(summary) == {"tasks", "budget", "wall_seconds", "source"}
    assert list(summary["tasks"]) == ["data"]  # named by the file's stem
    t = summary["tasks"]["data"]
    assert set(t) == {"size8", "size_cap", "seeds", "reduction_mean", "test_delta_pp_mean", "fitness"}
    (s,) = t["seeds"]
    assert set(s) == {"seed", "hv_mixed", "hv_homogeneous", "pick", "fitness"}
    pick = s["pick"]
    assert set(pick) == PICK_KEYS and pick["selected_on"] == "select"
    assert len(pick["bits"]) == 34  # 17 genes per layer, two layers
    lo, hi = pick["test_ci95"]
    assert lo <= pick["test_accuracy"] <= hi
    assert summary["source"]["task"] == str(tmp / "data.npz") and summary["source"]["checkpoint"] == str(
        tmp / "my.ckpt"
    )
    records = json.loads((out / "tasks" / "data" / "result.json").read_text())["seeds"]
    assert records[0]["shape"]["layers"] == 2
    assert records[0]["baselines"][-1]["bits"] == [8] * 34 and records[0]["size8"] == t["size8"]
    assert records[0]["sequences"] == {"val": 48, "select": 24, "holdout": 24}
    for name in ("data_front.png", "data_bits.png"):
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    readme = (out / "README.md").read_text()
    assert f"--task {tmp / 'data.npz'} --checkpoint {tmp / 'my.ckpt'}" in readme
    assert pick["check"] in readme and "l1.add_h" in readme
    assert not (out / ".partial").exists()


def test_the_picks_check_names_the_users_files_and_rederives_accuracy_and_size(run):
    tmp, _, summary = run
    pick = summary["tasks"]["data"]["seeds"][0]["pick"]
    argv = shlex.split(pick["check"])
    assert argv[:4] == ["python", "-m", "gruq", "evaluate"]
    assert argv[argv.index("--task") + 1] == str(tmp / "data.npz")
    assert argv[argv.index("--checkpoint") + 1] == str(tmp / "my.ckpt")
    assert "--split" in argv and argv[argv.index("--split") + 1] == "holdout"
    done = subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["bits"] == pick["bits"]
    assert (record["accuracy"], record["size_bytes"]) == (pick["test_accuracy"], pick["size_bytes"])


def test_a_users_task_gets_a_cost_ratio_from_its_split_sizes(run):
    tmp, _, summary = run
    task = str(tmp / "data.npz")
    assert cost_ratio(task, 48) == 1 + TRAIN_COST * 48 / 48  # 144 training sequences, 48 val: no clock
    assert summary["budget"]["finetuned_cost_ratio"] == {"data": cost_ratio(task, 48)}
    budget = Budget.from_dict(summary["budget"])
    assert summary["budget"]["finetuned_scorings"] == {"data": budget.finetuned_scorings(task)} == {"data": 4}


def test_an_interrupted_run_is_resumed_only_with_the_same_checkpoint(files, tmp_path):
    for f in files:
        (tmp_path / f.name).write_bytes(f.read_bytes())
    subject = Subject.resolve(str(tmp_path / "data.npz"), str(tmp_path / "my.ckpt"))
    budget = Budget(pop=4, gens=1, seeds=1, workers=1)
    _keep(tmp_path, budget, subject, {"task": "data", "seed": 0, "marker": 1})
    assert _done(tmp_path, budget, subject, 0)["marker"] == 1
    assert _done(tmp_path, Budget(pop=8, gens=1, seeds=1), subject, 0) is None  # another budget
    imported(tmp_path, seed=7)  # the same paths, another model
    assert _done(tmp_path, budget, subject, 0) is None


def _refused(capsys, *args: str) -> str:
    return one_error_line(capsys, ["reproduce", *args])


def test_tasks_and_task_together_are_refused(files, tmp_path, capsys):
    data, ckpt = map(str, files)
    out = str(tmp_path / "r")
    err = _refused(capsys, "--tasks", "vowels", "--task", data, "--checkpoint", ckpt, "--out", out)
    assert "give --tasks (built-in tasks) or --task" in err
    assert "unknown task" in _refused(capsys, "--tasks", data, "--out", out)
    assert "--checkpoint goes with --task" in _refused(capsys, "--checkpoint", ckpt, "--out", out)
    assert not (tmp_path / "r").exists()


def test_a_missing_or_mismatched_checkpoint_is_refused(files, tmp_path, capsys):
    data, ckpt = map(str, files)
    out = str(tmp_path / "r")
    assert "none.ckpt" in _refused(capsys, "--task", data, "--checkpoint", str(tmp_path / "none.ckpt"), "--out", out)
    err = _refused(capsys, "--task", "vowels", "--checkpoint", ckpt, "--out", out)
    assert "3 features and 3 classes" in err and "vowels has 12 and 9" in err
    with pytest.raises(GruqError, match="alone"):  # the library: a user's task is never mixed with others
        reproduce(tmp_path / "r", ["vowels", data], Budget(), checkpoint=ckpt)
    assert not (tmp_path / "r").exists()
