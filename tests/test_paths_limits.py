"""gruq.paths and gruq.limits, unit by unit: the shared checks every command, the app and the
Python API use (the end-to-end cases, as real processes, are in test_hardening.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gruq import limits, paths
from gruq.errors import GruqError
from gruq.model import checkpoint_path


def test_a_path_no_file_could_have_is_refused(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for bad, words in [
        ("", "empty"),
        ("   ", "empty"),
        (str(tmp_path / ("x" * 256)), "the file system allows"),
        (str(tmp_path / "ok" / ("y" * 300) / "z"), "the file system allows"),
        (str(afile / "child"), "is a file, not a folder"),
        (str(afile / "deeper" / "child"), "is a file, not a folder"),
        ("a\0b", "NUL"),
    ]:
        with pytest.raises(GruqError, match=words):
            paths.checked(bad, "--x")
    assert paths.checked(tmp_path / "new" / "file", "--x") == tmp_path / "new" / "file"
    assert not (tmp_path / "new").exists()  # a check creates nothing


def test_only_regular_files_are_inputs_or_stores(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for check in (paths.input_file, paths.file_or_absent, paths.output_file):
        with pytest.raises(GruqError, match="named pipe"):
            check(fifo, "--db")
        with pytest.raises(GruqError, match="a folder"):
            check(tmp_path, "--db")
        with pytest.raises(GruqError, match="a device"):
            check("/dev/null", "--db")
    with pytest.raises(GruqError, match="no such file"):
        paths.input_file(tmp_path / "missing", "--checkpoint")
    assert paths.file_or_absent(tmp_path / "missing.db") == tmp_path / "missing.db"


def test_staged_dir_moves_every_file_in_at_once_or_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with paths.staged_dir(out) as tmp:
        (tmp / "a").write_text("1")
        assert not out.exists()  # nothing visible until the block ends
    assert sorted(p.name for p in out.iterdir()) == ["a"]
    with pytest.raises(RuntimeError), paths.staged_dir(out) as tmp:
        (tmp / "a").write_text("2")
        raise RuntimeError("failed half-way")
    assert (out / "a").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the temporary folder is gone


def test_integers_and_seeds_have_one_range_each():
    assert limits.check_seed(0) == 0 and limits.check_seed(2**32 - 1) == 2**32 - 1
    assert limits.check_seed(7.0) == 7
    for bad in (-1, 2**32, 10**20, 1.5, True, "3", None):
        with pytest.raises(GruqError, match="seed"):
            limits.check_seed(bad)
    with pytest.raises(GruqError, match=r"--pop must be from 4 to 10,000; got 1,000,000,000"):
        limits.check_int(10**9, "--pop", 4, limits.MAX_POP)
    with pytest.raises(GruqError, match="digit number"):  # a huge number is not printed in full
        limits.check_int(10**100, "--gens", 1, limits.MAX_GENS)


@pytest.mark.parametrize(
    ("shape", "words"),
    [
        ((2_000_000, 1, 1), "sequences"),
        ((10, 5000, 1), "steps"),
        ((10, 2, 5000), "features"),
        ((1000, 4096, 13), "values"),
        ((2000, 4096, 1), "GRU steps"),
    ],
)
def test_a_task_beyond_the_limits_is_refused_naming_the_limit(shape, words):
    with pytest.raises(GruqError, match=words):
        limits.check_task_shape(*shape, where="my.npz")


def test_the_built_in_tasks_are_far_within_the_limits():
    for n, steps, features in ((5000, 28, 28), (640, 29, 12), (11213, 128, 6), (5000, 140, 1)):
        limits.check_task_shape(n, steps, features, where="built-in")
        assert n * steps * 5 < limits.MAX_CELL_STEPS


def test_user_checkpoints_never_take_a_built_in_name_or_another_folders(tmp_path, monkeypatch):
    shipped = checkpoint_path("vowels")
    a, b = checkpoint_path(str(tmp_path / "a" / "vowels.npz")), checkpoint_path(str(tmp_path / "b" / "vowels.npz"))
    assert len({shipped, a, b}) == 3 and a.parent == b.parent == shipped.parent
    assert checkpoint_path(str(tmp_path / "a" / "vowels.npz")) == a  # stable
    monkeypatch.chdir(tmp_path)
    assert checkpoint_path("a/vowels.npz") == a  # relative or absolute, the same file
    assert checkpoint_path("VOWELS") == shipped


def test_gruq_assets_moves_every_checkpoint(monkeypatch, tmp_path):
    monkeypatch.setenv("GRUQ_ASSETS", str(tmp_path))
    assert checkpoint_path("ecg") == tmp_path / "ecg.pt"
    assert Path(checkpoint_path("x/my.npz")).parent == tmp_path
