"""Hostile and unlucky inputs, as a user meets them (issue 10): no traceback, no hang, no lost file.

Every case runs `python -m gruq ...` as a real process on real files: a real FIFO, a
real device, names longer than the file system allows, a parent that is a regular
file, a real read-only file system and a real full one (tiny tmpfs mounts; the suite
runs as root, as CI does). Each refusal must exit with status 2 and one line on
stderr, and create nothing. Checkpoints that training writes go to a copy of assets/
(GRUQ_ASSETS), so the shipped ones are never at risk.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from gruq import limits
from gruq.model import load_checkpoint
from gruq.store import list_runs, result

ROOT = Path(__file__).resolve().parents[1]
LONG = "n" * 300  # one path component longer than NAME_MAX (255 bytes)
TIMEOUT = 120  # a hang fails the test instead of blocking the suite
PROGRESS = re.compile(r"^[^|]*: +\d+%\|")  # a tqdm progress bar line, not a message


def gruq(*args: object, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gruq", *map(str, args)],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def refused(r: subprocess.CompletedProcess, *words: str) -> str:
    """Exit status 2 and exactly one line on stderr (progress bars of the work done before the
    failure aside), naming `words`."""
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr, r.stderr
    lines = [line for line in re.split(r"[\r\n]", r.stderr) if line.strip() and not PROGRESS.match(line)]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("gruq: error:"), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def toy_task(path: Path, n: int = 150, steps: int = 6, features: int = 3) -> Path:
    gen = np.random.default_rng(0)
    y = np.arange(n) % 3
    X = gen.standard_normal((n, steps, features)).astype(np.float32) + y[:, None, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, X=X, y=y)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def tmpfs(where: Path, size: str, *options: str) -> Iterator[Path]:
    """A real, tiny file system mounted at `where` (read-only with "ro"); always unmounted."""
    where.mkdir(parents=True, exist_ok=True)
    opts = ",".join((f"size={size}", *options))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): run the suite as root, as CI does")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(fs: Path) -> Path:
    """Fill the file system until it reports ENOSPC; returns the filler file."""
    filler = fs / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> SimpleNamespace:
    d = tmp_path_factory.mktemp("hard")
    f = SimpleNamespace(dir=d)
    f.task = toy_task(d / "toy.npz")
    f.afile = d / "afile"
    f.afile.write_text("a regular file, used as a parent folder\n")
    f.fifo = d / "pipe"
    os.mkfifo(f.fifo)
    f.folder = d / "folder"
    f.folder.mkdir()
    f.evil = d / "evil.pt"
    f.marker = d / "pickle-ran"
    f.evil.write_bytes(
        b"cposix\nsystem\n(V" + f"touch {f.marker}".encode() + b"\ntR."  # a raw pickle that runs a command
    )
    return f


# -- tracebacks and hangs: each refused with status 2 and one line ----------------------------

BAD = {
    # ENAMETOOLONG in every path option
    "long --db (search)": lambda f: ["search", "--task", "vowels", "--db", f.dir / f"{LONG}.db"],
    "long --db folder (runs)": lambda f: ["runs", "--db", f.dir / LONG / "x.db"],
    "long --task .npz": lambda f: ["evaluate", "--task", f.dir / f"{LONG}.npz", "--bits", "8"],
    "long --checkpoint": lambda f: ["evaluate", "--task", "vowels", "--bits", "8", "--checkpoint", f.dir / LONG],
    "long export --out": lambda f: ["export", "--task", "vowels", "--bits", "8", "--out", f.dir / LONG],
    "long train --out": lambda f: ["train", "--task", f.task, "--epochs", "1", "--out", f.dir / f"{LONG}.pt"],
    "long export --db": lambda f: ["export", "--db", f.dir / LONG, "--run", "1", "--pick", "0", "--out", f.dir / "o"],
    # a parent that is a regular file
    "parent is a file (search --db)": lambda f: ["search", "--task", "vowels", "--db", f.afile / "sub.db"],
    "parent is a file (train --out)": lambda f: ["train", "--task", f.task, "--out", f.afile / "t.pt"],
    "parent is a file (export --out)": lambda f: ["export", "--task", "vowels", "--bits", "8", "--out", f.afile / "o"],
    # a FIFO, a device, a folder where a file is expected: never opened, so no hang
    "FIFO --db (search)": lambda f: ["search", "--task", "vowels", "--db", f.fifo],
    "FIFO --db (runs)": lambda f: ["runs", "--db", f.fifo],
    "FIFO --db (resume)": lambda f: ["search", "--resume", "1", "--db", f.fifo],
    "FIFO --db (export)": lambda f: ["export", "--db", f.fifo, "--run", "1", "--pick", "0", "--out", f.dir / "o"],
    "FIFO --task": lambda f: ["evaluate", "--task", f.fifo, "--bits", "8"],
    "FIFO --checkpoint": lambda f: ["evaluate", "--task", "vowels", "--bits", "8", "--checkpoint", f.fifo],
    "device --db": lambda f: ["runs", "--db", "/dev/zero"],
    "folder --db": lambda f: ["runs", "--db", f.folder],
    "folder --checkpoint": lambda f: ["verify", "--task", "vowels", "--bits", "8", "--checkpoint", f.folder],
    # one seed range for every command
    "train seed 10^20": lambda f: ["train", "--task", f.task, "--seed", "99999999999999999999"],
    "evaluate seed 2^32": lambda f: ["evaluate", "--task", "vowels", "--bits", "8", "--seed", str(2**32)],
    "search seed 2^32": lambda f: ["search", "--task", "vowels", "--seed", str(2**32), "--db", f.dir / "s.db"],
    "export seed 2^32": lambda f: ["export", "--task", "vowels", "--bits", "8", "--seed", str(2**32), "--out", "o"],
    # a raw pickle as a checkpoint: refused, never run, and torch's warnings are not shown
    "raw pickle checkpoint": lambda f: ["evaluate", "--task", "vowels", "--bits", "8", "--checkpoint", f.evil],
    # an empty --out
    'export --out ""': lambda f: ["export", "--task", "vowels", "--bits", "8", "--out", ""],
    'train --out ""': lambda f: ["train", "--task", f.task, "--out", ""],
    # unbounded work
    "--pop 10^9": lambda f: ["search", "--task", "vowels", "--pop", "1000000000", "--db", f.dir / "s.db"],
    "--gens 10^9": lambda f: ["search", "--task", "vowels", "--gens", "1000000000", "--db", f.dir / "s.db"],
    "--workers 1000": lambda f: ["search", "--task", "vowels", "--workers", "1000", "--db", f.dir / "s.db"],
    "--chunk-size 10^6": lambda f: ["search", "--task", "vowels", "--chunk-size", "1000000", "--db", f.dir / "s.db"],
    "--epochs 10^9": lambda f: ["train", "--task", f.task, "--epochs", "1000000000"],
}
# the words each one-line message must contain
WORDS = {
    "long --db (search)": ["--db", "the file system allows"],
    "long --db folder (runs)": ["--db", "the file system allows"],
    "long --task .npz": ["task file", "the file system allows"],
    "long --checkpoint": ["--checkpoint", "the file system allows"],
    "long export --out": ["--out", "the file system allows"],
    "long train --out": ["--out", "the file system allows"],
    "long export --db": ["the file system allows"],
    "parent is a file (search --db)": ["afile is a file, not a folder"],
    "parent is a file (train --out)": ["afile is a file, not a folder"],
    "parent is a file (export --out)": ["afile is a file, not a folder"],
    "FIFO --db (search)": ["named pipe"],
    "FIFO --db (runs)": ["named pipe"],
    "FIFO --db (resume)": ["named pipe"],
    "FIFO --db (export)": ["named pipe"],
    "FIFO --task": ["named pipe"],
    "FIFO --checkpoint": ["named pipe"],
    "device --db": ["device"],
    "folder --db": ["folder"],
    "folder --checkpoint": ["folder"],
    "train seed 10^20": ["seed", "4,294,967,295"],
    "evaluate seed 2^32": ["seed", "4,294,967,295"],
    "search seed 2^32": ["seed", "4,294,967,295"],
    "export seed 2^32": ["seed", "4,294,967,295"],
    "raw pickle checkpoint": ["evil.pt", "not a gruq checkpoint"],
    'export --out ""': ["--out", "empty"],
    'train --out ""': ["--out", "empty"],
    "--pop 10^9": ["--pop", "10,000"],
    "--gens 10^9": ["--gens", "10,000"],
    "--workers 1000": ["--workers", "64"],
    "--chunk-size 10^6": ["--chunk-size", "4,096"],
    "--epochs 10^9": ["--epochs", "10,000"],
}


@pytest.fixture(scope="module")
def bad_runs(files) -> dict[str, subprocess.CompletedProcess]:
    """Every refusal, run once, two at a time, from an empty working directory."""
    cwd = files.dir / "cwd"
    cwd.mkdir()
    files.before = sorted(p.name for p in files.dir.iterdir())
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {key: pool.submit(gruq, *argv(files), cwd=cwd) for key, argv in BAD.items()}
        out = {key: fut.result() for key, fut in futures.items()}
    files.cwd_after = sorted(p.name for p in cwd.iterdir())
    files.after = sorted(p.name for p in files.dir.iterdir())
    return out


@pytest.mark.parametrize("key", list(BAD))
def test_a_bad_path_seed_or_size_is_one_line_and_status_2(key, bad_runs):
    refused(bad_runs[key], *WORDS[key])


def test_refusals_create_nothing_and_run_no_pickle(files, bad_runs):
    assert files.cwd_after == []  # export --out "" wrote nothing into the working directory
    assert files.after == files.before  # no store, no folder, no checkpoint
    assert not files.marker.exists()


def test_the_seed_range_is_one_and_its_ends_are_accepted(files, tmp_path):
    assert limits.SEED_MAX == 2**32 - 1
    ok = gruq("train", "--task", files.task, "--epochs", "1", "--seed", limits.SEED_MAX, "--out", tmp_path / "t.pt")
    assert ok.returncode == 0, ok.stderr
    ok = gruq("evaluate", "--task", "vowels", "--bits", "8", "--seed", limits.SEED_MAX, "--json")
    assert ok.returncode == 0, ok.stderr


# -- unbounded work: a user file too large to train in reasonable time -------------------------


@pytest.mark.parametrize(
    ("shape", "words"),
    [((150, 100_000, 1), ["100,000 steps", "4,096"]), ((2000, 4096, 1), ["N x T", "8,000,000"])],
    ids=["150x100000x1", "2000x4096x1"],
)
def test_a_user_file_beyond_the_limits_is_refused_from_its_header(tmp_path, shape, words):
    path = tmp_path / "big.npz"
    np.savez(path, X=np.zeros(shape, dtype=np.int8), y=np.arange(shape[0]) % 3)
    refused(gruq("train", "--task", path, "--epochs", "1", "--out", tmp_path / "t.pt"), "too large", *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npz"]


# -- lost data --------------------------------------------------------------------------------


@pytest.fixture
def assets(tmp_path) -> Path:
    """A copy of the shipped checkpoints, for GRUQ_ASSETS."""
    copy = tmp_path / "assets"
    shutil.copytree(ROOT / "assets", copy)
    return copy


def test_a_user_file_named_like_a_built_in_task_never_replaces_its_checkpoint(tmp_path, assets):
    env = {"GRUQ_ASSETS": str(assets)}
    shipped = {p.name: digest(p) for p in assets.glob("*.pt")}
    first = toy_task(tmp_path / "a" / "vowels.npz")
    second = toy_task(tmp_path / "b" / "vowels.npz", n=180)
    for task in (first, second):
        r = gruq("train", "--task", task, "--epochs", "1", env=env)
        assert r.returncode == 0, r.stderr
    assert {p.name: digest(p) for p in assets.glob("*.pt") if p.name in shipped} == shipped
    mine = sorted(p.name for p in assets.glob("vowels-*.pt"))
    assert len(mine) == 2  # one each: two folders' vowels.npz do not share a checkpoint
    r = gruq("evaluate", "--task", "vowels", "--bits", "8", "--json", env=env)
    assert r.returncode == 0, r.stderr  # the built-in task still has its model
    for task in (first, second):
        r = gruq("evaluate", "--task", task, "--bits", "8", "--json", env=env)
        assert r.returncode == 0, r.stderr  # and each user file finds its own


def test_train_out_on_a_read_only_file_system_is_refused_before_training(files, tmp_path):
    with tmpfs(tmp_path / "ro", "64k", "ro") as ro:
        line = refused(gruq("train", "--task", files.task, "--epochs", "1", "--out", ro / "t.pt"), "read-only")
        assert "train" not in line.split("error:")[0]
        assert list(ro.iterdir()) == []


def test_a_trained_model_is_kept_when_saving_it_fails_on_a_full_disk(files, tmp_path):
    with tmpfs(tmp_path / "full", "64k") as full:
        fill(full)
        r = gruq("train", "--task", files.task, "--epochs", "1", "--out", full / "t.pt")
        line = refused(r, "No space left", "saved to")
        spare = Path(line.rsplit("saved to ", 1)[1].split(" instead")[0])
        try:
            assert load_checkpoint("toy", spare).meta["epochs"] == 1
        finally:
            spare.unlink()
        assert sorted(p.name for p in full.iterdir()) == ["filler"]  # no half-written checkpoint


def test_export_on_a_read_only_or_full_file_system_leaves_no_folder(tmp_path):
    with tmpfs(tmp_path / "ro", "64k", "ro") as ro:
        refused(gruq("export", "--task", "vowels", "--bits", "8", "--out", ro / "out"), "read-only")
    with tmpfs(tmp_path / "full", "64k") as full:  # the export (about 150 kB) cannot fit
        refused(gruq("export", "--task", "vowels", "--bits", "8", "--out", full / "out"), "No space left")
        assert list(full.iterdir()) == []  # neither the folder nor its temporary sibling


def test_a_full_export_replaces_files_in_an_existing_folder_only_once_all_are_written(tmp_path):
    out = tmp_path / "out"
    assert gruq("export", "--task", "vowels", "--bits", "8", "--out", out).returncode == 0
    before = {p.name: digest(p) for p in out.iterdir()}
    assert gruq("export", "--task", "vowels", "--bits", "2", "--out", out, "--json").returncode == 0
    after = {p.name: digest(p) for p in out.iterdir()}
    assert set(after) == set(before) and after["gruq_model.json"] != before["gruq_model.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left


def test_resume_of_a_missing_store_creates_nothing(tmp_path):
    refused(gruq("search", "--resume", "1", "--db", tmp_path / "missing.db"), "no gruq store")
    assert list(tmp_path.iterdir()) == []


def test_a_run_whose_disk_fills_up_is_marked_failed_and_resumes_to_the_same_front(tmp_path):
    args = ["--task", "vowels", "--pop", "8", "--gens", "30", "--seed", "3", "--json"]
    with tmpfs(tmp_path / "disk", "16m") as disk:
        db = disk / "g.db"
        proc = subprocess.Popen(
            [sys.executable, "-m", "gruq", "search", *args, "--db", db],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + TIMEOUT
            while not (db.exists() and list_runs(db) and list_runs(db)[0]["generations_done"] >= 2):
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.05)
            filler = fill(disk)
            _, err = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
        refused(subprocess.CompletedProcess(proc.args, proc.returncode, "", err), "full")
        (run,) = list_runs(db)
        assert run["status"] == "failed" and "full" in run["error"]
        assert run["generations_done"] < 30
        assert not Path(f"{db}-reserve").exists()
        filler.unlink()
        resumed = gruq("search", "--resume", run["run_id"], "--db", db, "--json")
        assert resumed.returncode == 0, resumed.stderr
        interrupted = result(db, run["run_id"])
    whole = gruq("search", *args, "--db", tmp_path / "whole.db")
    assert whole.returncode == 0, whole.stderr
    uninterrupted = result(tmp_path / "whole.db", 1)
    assert interrupted["front"] == uninterrupted["front"]
    assert interrupted["hypervolume"] == uninterrupted["hypervolume"]


# -- the export's documentation, checked on a real export -------------------------------------


def test_an_export_into_a_folder_with_spaces_builds_with_the_printed_command(tmp_path):
    """The printed build command is quoted; test_vectors.npz holds the test vectors as
    docs/export-format.md says (left-padded codes, logits over every step); size_bytes is an int."""
    from gruq import engine
    from gruq.export import read_model

    out = tmp_path / "my export"
    r = gruq("export", "--task", "vowels", "--bits", "4", "--out", out)
    assert r.returncode == 0, r.stderr
    build = next(line for line in r.stdout.splitlines() if "build:" in line).split("build:", 1)[1]
    done = subprocess.run(["bash", "-c", build], capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "300/300 identical", done.stderr

    memory = json.loads((out / "memory.json").read_text())
    assert isinstance(memory["size_bytes"], int) and memory["size_bytes"] == memory["packed_parameter_bytes"]
    im, shape = read_model(out / "gruq_model.json")
    with np.load(out / "test_vectors.npz") as vectors:
        x, logits, labels = vectors["x"], vectors["logits"], vectors["labels"]
    assert x.dtype == np.int8 and x.shape == (300, shape.steps, shape.features)
    assert logits.dtype == np.int32 and np.array_equal(engine.run(im, x), logits)
    padded = (x == 0).all(axis=2)  # (N, T): steps that are all-zero codes
    assert padded[:, 0].any() and not padded[:, -1].any()  # short sequences are padded at the front
    assert float((logits.argmax(axis=1) == labels).mean()) == memory["engine_accuracy"]
    note = json.loads((out / "gruq_model.json").read_text())["input"]["note"]
    assert {"mean", "std", "source", "padding"} <= set(note)
