"""The Python API (gruq/api.py): README's example runs as written, and the calls keep the
command line's contract (a bad argument is a GruqError with one line; nothing is created)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import gruq
from gruq.errors import GruqError
from gruq.export import run_check
from gruq.store import list_runs

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    """The python block of README's 'Python API' section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API") :]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    cwd = tmp_path_factory.mktemp("api")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-c", readme_example()], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    return cwd, r


def test_the_readme_example_runs_as_written(example):
    _, r = example
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert json.loads(lines[0].replace("'", '"'))["name"] == "vowels"
    assert [line.split("]")[0] + "]" for line in lines[1:4]] == [
        str([8] * 17),
        str([4] * 17),
        "[3, 8, 2, 5, 6, 4, 7, 2, 8, 5, 3, 6, 4, 2, 7, 5, 6]",
    ]
    assert re.fullmatch(r"\d+ bytes; out/api-example/gruq_model\.json", lines[-1])


def test_the_example_search_is_stored_and_its_export_runs_bit_exactly(example):
    cwd, _ = example
    (run,) = list_runs(cwd / "runs" / "api-example.db")
    assert (run["status"], run["generations_done"]) == ("finished", 2)
    check = run_check(cwd / "out" / "api-example")
    assert check["ok"] and check["last_line"] == "300/300 identical"


def test_score_agrees_with_the_evaluate_command():
    (row,) = gruq.score("vowels", ["3,8,2,5,6,4,7,2,8,5,3,6,4,2,7,5,6"], split="test")
    r = subprocess.run(
        [sys.executable, "-m", "gruq", "evaluate", "--task", "vowels", "--bits", ",".join(map(str, row["bits"]))]
        + ["--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    record = json.loads(r.stdout)
    assert (row["accuracy"], row["size_bytes"], row["bops"]) == (
        record["accuracy"],
        record["size_bytes"],
        record["bops"],
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda tmp: gruq.score("vowels", [9]), "2 to 8"),
        (lambda tmp: gruq.score("vowels", [8], split="dev"), "split"),
        (lambda tmp: gruq.load_task("nosuch"), "unknown task"),
        (lambda tmp: gruq.run_search("vowels", db=tmp / "s.db", pop=10**9), "--pop"),
        (lambda tmp: gruq.run_search("vowels", db=tmp / "s.db", seed=2**32), "--seed"),
        (lambda tmp: gruq.front(tmp / "missing.db", 1), "no such file"),
        (lambda tmp: gruq.export_model("vowels", 8, ""), "empty"),
        (lambda tmp: gruq.train_model("vowels", seed=-1), "seed"),
    ],
)
def test_a_bad_argument_is_one_gruq_error_line_and_creates_nothing(tmp_path, call, message):
    with pytest.raises(GruqError, match=message) as info:
        call(tmp_path)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
