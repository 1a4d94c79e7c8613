"""Export: packing, the model file, the C99 kernel against the integer engine.

The C tests compile every exported directory with exactly the documented
command (cc -std=c99 -Wall -Wextra -Werror -O2 DIR/*.c) and run ./check,
which must print "N/N identical" last and exit 0.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import small
from hypothesis import given, settings
from hypothesis import strategies as st

from gruq import engine
from gruq.cli import main
from gruq.export import CFLAGS, FILES, archive, c_source, export, portable, read_model, run_check, write_export
from gruq.export.packing import pack, packed_size, unpack
from gruq.genome import ModelShape, homogeneous, size_bytes
from gruq.model import Checkpoint, GRUClassifier, calibrate, checkpoint_path
from gruq.ops import N_OPS
from gruq.scheme import build

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")

# A random model whose weight matrices fill whole bytes at every width
# (hidden * features and hidden^2 multiples of 8), so packed bytes == size_bytes.
SHAPE = dict(features=4, hidden=8, classes=3, steps=7)


def _genomes() -> dict[str, tuple[int, ...]]:
    rng = np.random.default_rng(2024)
    mixed = {f"mixed{i}": tuple(int(b) for b in rng.integers(2, 9, N_OPS)) for i in range(4)}
    return {"all2": homogeneous(2), "all8": homogeneous(8), **mixed}


GENOMES = _genomes()


@pytest.fixture(scope="module")
def random_model():
    s = small(**SHAPE, n=40, seed=5, weight_scale=2.0)
    return s, ModelShape(**SHAPE)


def _export_random(random_model, genome, out: Path) -> dict:
    s, shape = random_model
    im = build(genome, s.model, s.calib)
    labels = np.arange(len(s.X)) % shape.classes
    return write_export(im, shape, im.quantize_input(s.X), out, labels=labels, task="random", split="random")


def _compile_and_run(out: Path) -> subprocess.CompletedProcess:
    exe = out / "check"
    sources = sorted(str(p) for p in out.glob("*.c"))
    comp = subprocess.run(["cc", *CFLAGS, *sources, "-o", str(exe)], capture_output=True, text=True)
    assert comp.returncode == 0, comp.stderr
    assert comp.stderr == "", comp.stderr  # no warning at all
    return subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)


# -- packing -------------------------------------------------------------------


@st.composite
def codes_and_bits(draw):
    bits = draw(st.integers(min_value=1, max_value=16))
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    codes = draw(st.lists(st.integers(min_value=lo, max_value=hi), max_size=200))
    return np.array(codes, dtype=np.int64), bits


@given(codes_and_bits())
@settings(max_examples=200, deadline=None)
def test_unpack_inverts_pack(cb):
    codes, bits = cb
    data = pack(codes, bits)
    assert len(data) == packed_size(len(codes), bits)
    assert np.array_equal(unpack(data, bits, len(codes)), codes)


def test_packing_layout_is_little_endian_twos_complement():
    # the example of docs/export-format.md
    assert pack(np.array([-2, 1, 0, -1, 1]), 2) == bytes([0xC6, 0x01])
    assert pack(np.array([-1, 2]), 8) == bytes([0xFF, 0x02])
    # 3 = 011 in bits 0-2, -4 = 100 in bits 3-5, 1 = 001 in bits 6-8
    assert pack(np.array([3, -4, 1]), 3) == bytes([0b01100011, 0b0])


# -- the C kernel against the integer engine -----------------------------------------


@needs_cc
@pytest.mark.parametrize("name", list(GENOMES))
def test_exported_check_is_identical(random_model, tmp_path, name):
    genome = GENOMES[name]
    record = _export_random(random_model, genome, tmp_path)
    run = _compile_and_run(tmp_path)
    lines = run.stdout.strip().splitlines()
    n = record["sequences"]
    assert lines[-1] == f"{n}/{n} identical", run.stdout
    assert run.returncode == 0
    assert record["packed_parameter_bytes"] == size_bytes(genome, random_model[1])
    assert record["packed_equals_size_bytes"]


@needs_cc
@pytest.mark.parametrize("name", ["F3-H8-C4", "F1-H5-C2", "F6-H12-C5-big"])
def test_exported_check_on_other_shapes(models, tmp_path, name):
    """Odd shapes (a matrix ending mid-byte) and saturating weights, a random genome each."""
    s = models[name]
    m = s.model
    shape = ModelShape(m.gru.input_size, m.hidden, m.head.out_features, s.X.shape[1])
    rng = np.random.default_rng(len(name))
    im = build(tuple(int(b) for b in rng.integers(2, 9, N_OPS)), m, s.calib)
    record = write_export(im, shape, im.quantize_input(s.X), tmp_path)
    run = _compile_and_run(tmp_path)
    n = record["sequences"]
    assert run.returncode == 0 and run.stdout.strip().splitlines()[-1] == f"{n}/{n} identical"


def test_schemes_beyond_int64_are_refused(random_model, tmp_path):
    """Formats so far apart that an aligned operand could exceed 2^62 are refused, not exported wrong."""
    from dataclasses import replace

    from gruq.errors import GruqError

    s, shape = random_model
    calib = replace(s.calib, layers=({**s.calib.ops, "add_h": -33},))  # h with 40 fraction bits
    im = build(homogeneous(8), s.model, calib)
    with pytest.raises(GruqError, match="cannot export"):
        write_export(im, shape, im.quantize_input(s.X), tmp_path)
    assert not any(tmp_path.iterdir())  # refused before writing anything


@needs_cc
def test_long_sequences_use_numeric_rows(random_model, tmp_path, monkeypatch):
    """Rows longer than a portable string literal are written as numbers instead."""
    monkeypatch.setattr(c_source, "STRING_ROW_MAX", 5)
    record = _export_random(random_model, GENOMES["mixed1"], tmp_path)
    assert '"\\x' not in (tmp_path / c_source.VECTORS_C).read_text()
    run = _compile_and_run(tmp_path)
    n = record["sequences"]
    assert run.returncode == 0 and run.stdout.strip().splitlines()[-1] == f"{n}/{n} identical"


@needs_cc
def test_corrupted_test_vector_fails_the_check(random_model, tmp_path):
    record = _export_random(random_model, GENOMES["mixed0"], tmp_path)
    path = tmp_path / c_source.VECTORS_C
    text = path.read_text().splitlines()
    i = text.index(c_source.LOGITS_MARK) + 1  # the first sequence's logits
    values = text[i].rstrip(",").split(",")
    values[0] = str(int(values[0]) + 1)
    text[i] = ",".join(values) + ","
    path.write_text("\n".join(text) + "\n")
    run = _compile_and_run(tmp_path)
    n = record["sequences"]
    assert run.returncode != 0
    lines = run.stdout.strip().splitlines()
    assert lines[-1] == f"{n - 1}/{n} identical"
    assert lines[0].startswith("sequence 0: logit 0")
    assert len(lines) <= c_source.MAX_SHOWN + 3


@needs_cc
def test_many_mismatches_print_a_few_lines(random_model, tmp_path):
    record = _export_random(random_model, GENOMES["all8"], tmp_path)
    path = tmp_path / c_source.VECTORS_C
    head, tail = path.read_text().split(c_source.LOGITS_MARK)
    rows, rest = tail.split("};", 1)
    rows = "\n".join(
        ",".join("7" for _ in line.rstrip(",").split(",")) + "," if line else "" for line in rows.split("\n")
    )
    path.write_text(head + c_source.LOGITS_MARK + rows + "};" + rest)
    run = _compile_and_run(tmp_path)
    assert run.returncode == 1
    assert len(run.stdout.strip().splitlines()) <= c_source.MAX_SHOWN + 3
    assert run.stdout.strip().splitlines()[-1] == f"0/{record['sequences']} identical"


def test_c_sources_are_integer_only_with_allowed_includes(random_model, tmp_path):
    _export_random(random_model, GENOMES["mixed1"], tmp_path)
    for name in c_source.FILES:
        text = (tmp_path / name).read_text()
        for word in ("float", "double", "malloc", "calloc", "realloc", "free"):
            assert not re.search(rf"\b{word}\b", text), f"{word!r} in {name}"
        includes = set(re.findall(r'#\s*include\s*[<"]([^>"]+)[>"]', text))
        local = {c_source.MODEL_H, c_source.KERNEL_H, c_source.CELL_H, c_source.VECTORS_H}  # the cell: per layer
        allowed = (
            set(c_source.KERNEL_INCLUDES) | local | ({"stdio.h", "stdlib.h"} if name == c_source.CHECK_C else set())
        )
        if name == c_source.KERNEL_C:  # the compiler's own Arm C Language Extensions, on Arm cores with DSP only
            allowed.add("arm_acle.h")
            assert "#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)" in text
        assert includes <= allowed, (name, includes - allowed)
    mains = [n for n in c_source.FILES if n.endswith(".c") and "int main(" in (tmp_path / n).read_text()]
    assert mains == [c_source.CHECK_C]
    kernel = (tmp_path / c_source.KERNEL_C).read_text()
    assert "implementation-defined" in kernel  # the portable arithmetic shift is explained


# -- model file and memory report ---------------------------------------------------


def test_model_file_reproduces_the_engine(random_model, tmp_path):
    s, shape = random_model
    genome = GENOMES["mixed2"]
    _export_random(random_model, genome, tmp_path)
    im = build(genome, s.model, s.calib)
    im2, shape2 = read_model(tmp_path / "gruq_model.json")
    assert shape2 == shape and im2.genome == genome and im2.fmt == im.fmt
    x = im.quantize_input(s.X)
    assert np.array_equal(engine.run(im2, x), engine.run(im, x))
    for name in im.weights:
        assert np.array_equal(im2.weights[name], im.weights[name])


def test_memory_report(random_model, tmp_path):
    _, shape = random_model
    genome = GENOMES["mixed3"]
    record = _export_random(random_model, genome, tmp_path)
    on_disk = json.loads((tmp_path / "memory.json").read_text())
    assert on_disk == json.loads(json.dumps(portable(record)))
    assert "out" not in on_disk and on_disk["files"] == {n: n for n in FILES}  # no server path
    assert str(tmp_path) not in (tmp_path / "memory.json").read_text()
    H, F, C = shape.hidden, shape.features, shape.classes
    assert record["packed_parameter_bytes"] == size_bytes(genome, shape)
    p = record["parameters"]
    assert p["biases"] == 6 * H * 4 and p["head_weights"] == C * H and p["head_bias"] == 4 * C
    assert record["lut_bytes"] == 2 ** genome[2] + 2 ** genome[6] + 2 ** genome[11]
    assert record["state_bytes"] == H and record["scratch_bytes"] == H
    ops = record["ops_per_step"]
    assert ops["multiplies"] == 3 * H * (F + H) + 3 * H
    assert ops["lookups"] == 3 * H
    assert record["formats"]["state"]["bits"] == genome[16]
    assert set(FILES) == set(record["files"])
    assert all(Path(p).is_file() for p in record["files"].values())
    names = set(__import__("zipfile").ZipFile(__import__("io").BytesIO(archive(tmp_path))).namelist())
    assert {f"gruq_export/{n}" for n in FILES} == names
    named = __import__("zipfile").ZipFile(__import__("io").BytesIO(archive(tmp_path, "gruq-run3-all4"))).namelist()
    assert {f"gruq-run3-all4/{n}" for n in FILES} == set(named)  # the folder a download unpacks to: its own name


def test_padding_is_reported_when_matrices_do_not_fill_bytes(tmp_path):
    s = small(features=1, hidden=5, classes=2, steps=4, n=10, seed=1)
    shape = ModelShape(features=1, hidden=5, classes=2, steps=4)
    im = build(homogeneous(3), s.model, s.calib)
    record = write_export(im, shape, im.quantize_input(s.X), tmp_path)
    assert not record["packed_equals_size_bytes"]
    assert 0 < record["packed_parameter_bytes"] - size_bytes(homogeneous(3), shape) < 6


def test_out_dir_with_foreign_c_files_is_refused(random_model, tmp_path):
    from gruq.errors import GruqError

    (tmp_path / "main.c").write_text("int main(void) { return 0; }\n")
    with pytest.raises(GruqError, match="other C files"):
        _export_random(random_model, GENOMES["all8"], tmp_path)


# -- the command line -----------------------------------------------------------


@pytest.fixture(scope="module")
def npz_task(tmp_path_factory):
    """A user task (.npz) and a random checkpoint that fits it."""
    d = tmp_path_factory.mktemp("npz")
    gen = np.random.default_rng(0)
    X = gen.standard_normal((160, 5, 3)).astype(np.float32)
    y = np.arange(160) % 3
    np.savez(d / "toy.npz", X=X, y=y)
    import torch

    torch.manual_seed(0)
    model = GRUClassifier(3, 8, 3).eval()
    ckpt = Checkpoint(model=model, calibration=calibrate(model, X), meta={"task": "toy"})
    ckpt.save(d / "toy.pt")
    return d / "toy.npz", d / "toy.pt"


@needs_cc
def test_cli_export_task(npz_task, tmp_path, capsys):
    task, ckpt = npz_task
    out = tmp_path / "out"
    bits = "2,3,4,5,6,7,8,2,3,4,5,6,7,8,2,3,4"
    assert (
        main(
            [
                "export",
                "--task",
                str(task),
                "--bits",
                bits,
                "--checkpoint",
                str(ckpt),
                "--out",
                str(out),
                "--check",
                "--json",
            ]
        )
        == 0
    )
    record = json.loads(capsys.readouterr().out)
    assert record["genome"] == [int(b) for b in bits.split(",")]
    assert (
        record["check"]["ok"]
        and record["check"]["last_line"] == f"{record['sequences']}/{record['sequences']} identical"
    )
    assert record["sequences"] == 32  # the .npz task's test split


def test_cli_export_from_a_run_front(npz_task, tmp_path, capsys):
    from gruq.evaluate import accuracies, load
    from gruq.genome import bops
    from gruq.store import RunStore, Scored

    task, ckpt = npz_task
    shape = ModelShape(features=3, hidden=8, classes=3, steps=5)
    front = [homogeneous(8), homogeneous(2), homogeneous(4)]
    data, base = load(str(task), str(ckpt))
    val = accuracies(base, front, data.val)  # what a post-training run reports: the export must be that model
    db = tmp_path / "runs.db"
    with RunStore(db) as st_:
        run_id = st_.create_run(str(task), {"task": str(task), "objective": "size"}, 0, 1)
        scored = [Scored(g, a, size_bytes(g, shape), bops(g, shape), 0, True) for g, a in zip(front, val)]
        st_.commit_generation(
            run_id, 0, hypervolume=0.5, seconds=1.0, evaluations=3, scored=scored, front=front, checkpoint={}
        )
    out = tmp_path / "out"
    assert (
        main(
            [
                "export",
                "--db",
                str(db),
                "--run",
                str(run_id),
                "--pick",
                "1",
                "--checkpoint",
                str(ckpt),
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    record = json.loads(capsys.readouterr().out)
    assert record["genome"] == list(homogeneous(4))  # sizes: all-2 < all-4 < all-8
    assert record["front_member"]["pick"] == 1
    assert record["model"] == "post-training" and record["test_accuracy"] == record["engine_accuracy"]
    code = main(
        ["export", "--db", str(db), "--run", str(run_id), "--pick", "3", "--checkpoint", str(ckpt), "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--pick must be 0 to 2" in err and len(err.strip().splitlines()) == 1
    code = main(["export", "--db", str(db), "--run", "99", "--pick", "0", "--out", str(out)])
    assert code == 2 and "no run 99" in capsys.readouterr().err


@pytest.mark.parametrize(
    "case",
    [
        "out_is_file",
        "unknown_task",
        "missing_checkpoint",
        "db_without_run",
        "run_without_db",
        "no_bits",
        "missing_db",
        "both",
    ],
)
def test_cli_export_errors(npz_task, tmp_path, capsys, case):
    task, ckpt = npz_task
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    out = str(tmp_path / "out")
    argv = {
        "out_is_file": ["--task", str(task), "--bits", "4", "--checkpoint", str(ckpt), "--out", str(afile)],
        "unknown_task": ["--task", "nosuchtask", "--bits", "4", "--out", out],
        "missing_checkpoint": [
            "--task",
            str(task),
            "--bits",
            "4",
            "--checkpoint",
            str(tmp_path / "no.pt"),
            "--out",
            out,
        ],
        "db_without_run": ["--db", str(tmp_path / "x.db"), "--out", out],
        "run_without_db": ["--task", str(task), "--bits", "4", "--run", "1", "--pick", "0", "--out", out],
        "no_bits": ["--task", str(task), "--out", out],
        "missing_db": ["--db", str(tmp_path / "none.db"), "--run", "1", "--pick", "0", "--out", out],
        "both": [
            "--db",
            str(tmp_path / "x.db"),
            "--run",
            "1",
            "--pick",
            "0",
            "--task",
            str(task),
            "--bits",
            "4",
            "--out",
            out,
        ],
    }[case]
    assert main(["export", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gruq: error:")


@pytest.mark.parametrize("bits", ["9", "1,2", "x"])
def test_cli_export_bad_bits(tmp_path, capsys, bits):
    with pytest.raises(SystemExit) as exc:
        main(["export", "--task", "vowels", "--bits", bits, "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# -- the real tasks (their checkpoints are made by `python -m gruq train`) ---------------

REAL = ("smnist", "vowels", "har", "ecg")


@needs_cc
@pytest.mark.parametrize("task", REAL)
def test_real_task_export_is_identical(task, tmp_path):
    if not checkpoint_path(task).is_file():
        pytest.fail(f"no checkpoint {checkpoint_path(task)}: run `python -m gruq train --task {task}`")
    rng = np.random.default_rng(sum(map(ord, task)))
    genome = tuple(int(b) for b in rng.integers(2, 9, N_OPS))
    record = export(task, genome, tmp_path)
    n = record["sequences"]
    assert n >= 300
    result = run_check(tmp_path)
    assert result["compiled"], result["output"]
    assert result["last_line"] == f"{n}/{n} identical", result["output"]
    assert result["ok"]
    assert record["packed_parameter_bytes"] == record["size_bytes"]
