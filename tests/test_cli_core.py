"""The command line's core commands (tasks, train, evaluate, verify), as a user runs them.

Every command runs as `python -m gruq ...` in a subprocess from the repository
root. Contract (DESIGN.md, issue 2): `--json` prints exactly one JSON object on
stdout; a bad argument or bad input exits with status 2 and one readable line
on stderr, never a traceback.

The success paths use a small user task (.npz) trained for one epoch into a
temporary checkpoint, so they need none of the real assets. Independent
commands run two at a time (the suite's budget is two cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import small

from gruq.genome import ModelShape, bops, parse_bits, size_bytes
from gruq.model import Checkpoint

ROOT = Path(__file__).resolve().parents[1]
MIXED = "2,3,4,5,6,7,8,2,3,4,5,6,7,8,2,3,4"
MARKER = Path(f"/tmp/gruq-cli-test-pickle-ran-{os.getpid()}")


def gruq(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gruq", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def run_all(commands: dict[str, list]) -> dict[str, subprocess.CompletedProcess]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {key: pool.submit(gruq, *argv) for key, argv in commands.items()}
        return {key: f.result() for key, f in futures.items()}


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def _toy(n: int = 150, steps: int = 6, features: int = 3, classes: int = 3, seed: int = 0):
    gen = np.random.default_rng(seed)
    y = np.arange(n) % classes
    X = gen.standard_normal((n, steps, features)).astype(np.float32) + y[:, None, None]
    return X, y


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> SimpleNamespace:
    d = tmp_path_factory.mktemp("cli")
    f = SimpleNamespace(dir=d)
    X, y = _toy()
    f.stem = f"gruq_cli_test_{uuid.uuid4().hex[:8]}"  # no assets/<stem>.pt exists
    f.task = d / f"{f.stem}.npz"
    np.savez(f.task, X=X, y=y)
    f.ckpt = d / "tmp" / "ckpt.pt"
    f.missing_ckpt = d / "missing.pt"
    f.garbage_ckpt = d / "garbage.pt"
    f.garbage_ckpt.write_bytes(b"this is not a torch checkpoint\n" * 10)
    f.missing_npz = d / "nowhere" / "task.npz"
    f.not_a_zip = d / "not_a_zip.npz"
    f.not_a_zip.write_text("X,y\n1,2\n")
    f.no_y = d / "no_y.npz"
    np.savez(f.no_y, X=X)
    f.flat_x = d / "flat_x.npz"
    np.savez(f.flat_x, X=X.reshape(len(X), -1), y=y)
    # checkpoints of other shapes: 5 features instead of 3, 7 classes instead of 3
    f.other_features, f.other_classes = d / "other_features.pt", d / "other_classes.pt"
    for path, (features, classes) in ((f.other_features, (5, 3)), (f.other_classes, (3, 7))):
        s = small(features=features, hidden=4, classes=classes, steps=6, n=10)
        Checkpoint(model=s.model, calibration=s.calib, meta={"task": "other"}).save(path)
    f.unwritable_out = f.garbage_ckpt / "ckpt.pt"  # its parent is a file
    f.hostile = d / "hostile.npz"
    hostile_x = np.empty(len(y), dtype=object)
    hostile_x[:] = [_RunsCode() for _ in range(len(y))]
    np.savez(f.hostile, X=hostile_x, y=y)  # np.savez pickles object arrays
    return f


# Each error case: (id, argv from the files, a word the one-line message must contain).
ERRORS = [
    ("no command", lambda f: [], "command"),
    ("unknown command", lambda f: ["frobnicate"], "frobnicate"),
    ("unknown task (evaluate)", lambda f: ["evaluate", "--task", "nosuch", "--bits", "8"], "nosuch"),
    ("unknown task (train)", lambda f: ["train", "--task", "nosuch", "--epochs", "1"], "nosuch"),
    ("missing --bits", lambda f: ["evaluate", "--task", f.task], "--bits"),
    ("missing --task", lambda f: ["verify", "--bits", "8"], "--task"),
    ("3 genes", lambda f: ["evaluate", "--task", f.task, "--bits", "8,8,8"], "17"),
    ("18 genes", lambda f: ["verify", "--task", f.task, "--bits", ",".join(["8"] * 18)], "17"),
    ("gene 9", lambda f: ["evaluate", "--task", f.task, "--bits", "9"], "2 to 8"),
    ("gene 1", lambda f: ["verify", "--task", f.task, "--bits", "1"], "2 to 8"),
    ("one gene out of range", lambda f: ["evaluate", "--task", f.task, "--bits", MIXED[:-1] + "9"], "add_h"),
    ("non-numeric bits", lambda f: ["evaluate", "--task", f.task, "--bits", "eight"], "eight"),
    ("non-numeric gene", lambda f: ["evaluate", "--task", f.task, "--bits", MIXED.replace("5", "x", 1)], "bits"),
    ("empty bits", lambda f: ["evaluate", "--task", f.task, "--bits", ""], "bits"),
    ("bad split", lambda f: ["evaluate", "--task", f.task, "--bits", "8", "--split", "dev"], "dev"),
    ("bad split (verify)", lambda f: ["verify", "--task", f.task, "--bits", "8", "--split", "all"], "all"),
    ("negative epochs", lambda f: ["train", "--task", f.task, "--epochs", "-1"], "-1"),
    ("zero epochs", lambda f: ["train", "--task", f.task, "--epochs", "0"], "0"),
    ("non-numeric epochs", lambda f: ["train", "--task", f.task, "--epochs", "many"], "many"),
    (
        "negative finetune epochs",
        lambda f: ["evaluate", "--task", f.task, "--bits", "8", "--finetune-epochs", "-2"],
        "-2",
    ),
    ("negative seed", lambda f: ["evaluate", "--task", f.task, "--bits", "8", "--seed", "-1"], "-1"),
    (
        "missing checkpoint",
        lambda f: ["evaluate", "--task", f.task, "--bits", "8", "--checkpoint", f.missing_ckpt],
        "missing.pt",
    ),
    (
        "missing checkpoint (verify)",
        lambda f: ["verify", "--task", f.task, "--bits", "8", "--checkpoint", f.missing_ckpt],
        "missing.pt",
    ),
    ("no default checkpoint", lambda f: ["evaluate", "--task", f.task, "--bits", "8"], "train"),
    (
        "garbage checkpoint",
        lambda f: ["evaluate", "--task", f.task, "--bits", "8", "--checkpoint", f.garbage_ckpt],
        "garbage.pt",
    ),
    (
        "checkpoint of another input width",
        lambda f: ["evaluate", "--task", f.task, "--bits", "8", "--checkpoint", f.other_features],
        "other_features.pt",
    ),
    (
        "checkpoint of another input width (verify)",
        lambda f: ["verify", "--task", f.task, "--bits", "8", "--checkpoint", f.other_features],
        "other_features.pt",
    ),
    (
        "checkpoint with other classes",
        lambda f: ["evaluate", "--task", f.task, "--bits", "8", "--checkpoint", f.other_classes],
        "other_classes.pt",
    ),
    ("unwritable --out", lambda f: ["train", "--task", f.task, "--epochs", "1", "--out", f.unwritable_out], "ckpt.pt"),
    ("missing .npz", lambda f: ["evaluate", "--task", f.missing_npz, "--bits", "8"], "task.npz"),
    ("not a zip", lambda f: ["evaluate", "--task", f.not_a_zip, "--bits", "8"], "not_a_zip"),
    ("npz without y", lambda f: ["train", "--task", f.no_y, "--epochs", "1"], "y"),
    ("npz with 2-D X", lambda f: ["evaluate", "--task", f.flat_x, "--bits", "8"], "X"),
    ("hostile npz (pickled X)", lambda f: ["evaluate", "--task", f.hostile, "--bits", "8"], "object"),
]


@pytest.fixture(scope="module")
def runs(files) -> dict[str, subprocess.CompletedProcess]:
    """Every command of this module, run once: errors and training first, then
    the commands that need the trained checkpoint."""
    if MARKER.exists():
        MARKER.unlink()
    first = {
        "train": ["train", "--task", files.task, "--epochs", "1", "--out", files.ckpt, "--json"],
        "tasks": ["tasks", "--json"],
    }
    first.update({key: argv(files) for key, argv, _ in ERRORS})
    out = run_all(first)
    ck = ["--task", files.task, "--checkpoint", files.ckpt]
    out.update(
        run_all(
            {
                "evaluate 8": ["evaluate", *ck, "--bits", "8", "--json"],
                "evaluate mixed val": ["evaluate", *ck, "--bits", MIXED, "--split", "val", "--json"],
                "evaluate finetuned": [
                    "evaluate",
                    *ck,
                    "--bits",
                    "3",
                    "--finetune-epochs",
                    "1",
                    "--seed",
                    "4",
                    "--json",
                ],
                "verify 2": ["verify", *ck, "--bits", "2", "--json"],
                "verify mixed": ["verify", *ck, "--bits", MIXED, "--json"],
            }
        )
    )
    return out


def one_json_object(r: subprocess.CompletedProcess) -> dict:
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    obj = json.loads(lines[0])
    assert isinstance(obj, dict)
    return obj


# -- error paths ----------------------------------------------------------------


@pytest.mark.parametrize("key,mention", [(k, m) for k, _, m in ERRORS], ids=[k for k, _, _ in ERRORS])
def test_bad_input_exits_2_with_one_line_and_no_traceback(key, mention, runs):
    r = runs[key]
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("gruq: error:"), lines[0]
    assert mention in lines[0], lines[0]
    assert r.stdout == ""


def test_a_hostile_npz_is_refused_without_unpickling_it(runs):
    assert runs["hostile npz (pickled X)"].returncode == 2
    assert not MARKER.exists(), "loading a user's .npz ran code from a pickle"


# -- tasks ------------------------------------------------------------------------


def test_tasks_json_lists_the_four_tasks_and_their_splits(runs):
    obj = one_json_object(runs["tasks"])
    assert set(obj) == {"tasks"}
    rows = obj["tasks"]
    assert [r["name"] for r in rows] == ["smnist", "vowels", "har", "ecg"]
    for r in rows:
        assert set(r) == {"name", "steps", "features", "classes", "train", "val", "test"}
        assert all(isinstance(r[k], int) and r[k] > 0 for k in r if k != "name")
    shape = {r["name"]: (r["features"], r["classes"]) for r in rows}
    assert shape == {"smnist": (28, 10), "vowels": (12, 9), "har": (6, 6), "ecg": (1, 5)}
    steps = {r["name"]: r["steps"] for r in rows}
    assert steps["smnist"] == 28 and steps["har"] == 128 and steps["ecg"] == 140 and steps["vowels"] <= 29


# -- train / evaluate / verify on a user task ---------------------------------------


def test_train_writes_the_checkpoint_and_reports_it(runs, files):
    rec = one_json_object(runs["train"])
    assert Path(rec["checkpoint"]).resolve() == files.ckpt.resolve()
    assert files.ckpt.is_file()
    assert rec["task"] == files.stem and rec["epochs"] == 1 and rec["seed"] == 0
    assert 0 <= rec["val_accuracy"] <= 1 and 0 <= rec["test_accuracy"] <= 1


def shape_of(files) -> ModelShape:
    # a user task: hidden 32 by default; 3 features, 3 classes, 6 steps in the toy file
    return ModelShape(features=3, hidden=32, classes=3, steps=6)


@pytest.mark.parametrize(
    "key,bits,split",
    [("evaluate 8", "8", "test"), ("evaluate mixed val", MIXED, "val"), ("evaluate finetuned", "3", "test")],
)
def test_evaluate_json_schema(key, bits, split, runs, files):
    rec = one_json_object(runs[key])
    assert set(rec) == {"task", "bits", "split", "accuracy", "sequences", "ci95", "model", "size_bytes", "bops"}
    assert rec["ci95"][0] <= rec["accuracy"] <= rec["ci95"][1]
    genome = parse_bits(bits)
    assert rec["task"] == files.stem
    assert rec["bits"] == list(genome) and all(isinstance(b, int) for b in rec["bits"])
    assert rec["split"] == split
    assert isinstance(rec["accuracy"], float) and 0 <= rec["accuracy"] <= 1
    assert rec["size_bytes"] == size_bytes(genome, shape_of(files))
    assert isinstance(rec["size_bytes"], int)  # whole bytes print as 2028, as memory.json has them
    assert rec["bops"] == bops(genome, shape_of(files)) and isinstance(rec["bops"], int)


def test_json_prints_whole_byte_counts_as_integers(capsys) -> None:
    """Every --json output goes through one printer: a byte count that is whole is an int,
    one that is not (a matrix that does not fill whole bytes) stays a fraction."""
    from gruq.cli import emit

    emit({"size_bytes": 2028.0, "front": [{"size_bytes": 10.5, "accuracy": 1.0}], "m": {"flash_bytes": [3.0, 4]}})
    assert json.loads(capsys.readouterr().out) == {
        "size_bytes": 2028,
        "front": [{"size_bytes": 10.5, "accuracy": 1.0}],
        "m": {"flash_bytes": [3, 4]},
    }
    emit({"size_bytes": 2028.0, "accuracy": 1.0})
    assert capsys.readouterr().out == '{"size_bytes": 2028, "accuracy": 1.0}\n'


@pytest.mark.parametrize("key", ["verify 2", "verify mixed"])
def test_verify_json_reports_identical_engine_and_simulation(key, runs):
    rec = one_json_object(runs[key])
    assert rec == {
        "model": "post-training",
        "identical": True,
        "sequences": 30,
        "mismatched_codes": 0,
        "mismatched_logits": 0,
    }
