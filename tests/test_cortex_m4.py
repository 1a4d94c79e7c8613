"""The cortex-m4 export target: the kernel cross-compiled for a Cortex-M4 and run
under qemu-system-arm's mps2-an386 board, bit-identical to the integer engine,
with its flash, RAM, stack and instruction counts measured.

CI time: each of the 12 models (4 tasks x all-2 / all-8 / mixed) is checked on
the first 10 sequences of its test split (cortex_m4.MEASURE_SEQUENCES: the run
that also counts instructions, for sub-byte genomes once per weight storage);
the whole vowels test split (300 sequences) is checked once with
`make -C DIR run`. Needs gcc-arm-none-eabi, libnewlib-arm-none-eabi and
qemu-system-arm (scripts/setup installs them); without them the tests fail.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from conftest import small

from gruq.cli import main
from gruq.errors import GruqError
from gruq.export import c_source, export, write_export
from gruq.export.plan import wide_ops
from gruq.export.targets import cortex_m4
from gruq.genome import ModelShape, homogeneous
from gruq.model import checkpoint_path
from gruq.scheme import build

TASKS = ("smnist", "vowels", "har", "ecg")
MIXED = (3, 8, 2, 5, 6, 4, 7, 2, 8, 5, 3, 6, 4, 2, 7, 5, 6)
GENOMES = {"all2": homogeneous(2), "all8": homogeneous(8), "mixed": MIXED}
KEYS = ("flash_bytes", "ram_bytes", "stack_bytes", "instructions_per_step", "macs_per_step")


@pytest.fixture(autouse=True)
def toolchain():
    missing = cortex_m4.missing_tools()
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run scripts/setup (apt-get install {cortex_m4.DEBIAN_PACKAGES})")


def _real(task: str) -> None:
    if not checkpoint_path(task).is_file():
        pytest.fail(f"no checkpoint {checkpoint_path(task)}: run `python -m gruq train --task {task}`")


# -- the 12 models -----------------------------------------------------------------


@pytest.mark.parametrize("name", list(GENOMES))
@pytest.mark.parametrize("task", TASKS)
def test_real_models_are_identical_on_the_cortex_m4(task, name, tmp_path):
    _real(task)
    record = export(task, GENOMES[name], tmp_path, target="cortex-m4")
    m4 = record["cortex_m4"]
    n = cortex_m4.MEASURE_SEQUENCES
    assert m4["check"] == f"{n}/{n} identical"
    saved = json.loads((tmp_path / "memory.json").read_text())["cortex_m4"]
    assert all(isinstance(saved[k], int | float) and saved[k] > 0 for k in KEYS)
    shape = record["shape"]
    assert m4["macs_per_step"] == 3 * shape["hidden"] * (shape["features"] + shape["hidden"])
    # flash holds at least the packed parameters and the tables, but no test vector
    assert record["rom_bytes"] <= m4["flash_bytes"] < record["rom_bytes"] + 4096
    assert m4["ram_bytes"] == 2 * shape["hidden"]  # gruq_infer's static state
    assert m4["stack"]["dynamic"] == []
    if name == "all8":
        assert m4["instructions_per_mac"] <= 3.0, m4
        assert "unpacked" not in m4
    else:  # the faster, larger storage is measured beside the packed one
        assert m4["unpacked"]["flash_bytes"] > m4["flash_bytes"]
        assert m4["unpacked"]["instructions_per_step"] < m4["instructions_per_step"]


def test_make_run_checks_a_whole_split_and_its_exit_status_tells(tmp_path):
    _real("vowels")
    record = export("vowels", MIXED, tmp_path, target="cortex-m4")
    n = record["sequences"]
    run = subprocess.run(["make", "-s", "-C", str(tmp_path), "run"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().splitlines()[-1] == f"{n}/{n} identical"
    # break the first sequence's expected logits: the QEMU run must fail
    path = tmp_path / c_source.VECTORS_C
    head, tail = path.read_text().split(c_source.LOGITS_MARK + "\n", 1)
    first, rest = tail.split(",", 1)
    path.write_text(head + c_source.LOGITS_MARK + "\n" + str(int(first) + 1) + "," + rest)
    bad = subprocess.run(
        ["make", "-s", "-C", str(tmp_path), "run", "SEQUENCES=3"], capture_output=True, text=True, timeout=600
    )
    assert bad.returncode != 0
    assert bad.stdout.strip().splitlines()[-1] == "2/3 identical"


# -- a random model: host build unchanged, both storages, the CLI ---------------------

SHAPE = dict(features=5, hidden=9, classes=3, steps=6)  # widths not multiples of 4: the plain tails run


@pytest.fixture(scope="module")
def random_model():
    s = small(**SHAPE, n=cortex_m4.MEASURE_SEQUENCES, seed=7, weight_scale=2.0)  # all are timed
    return s, ModelShape(**SHAPE)


def test_host_build_is_unchanged_beside_the_target_files(random_model, tmp_path):
    s, shape = random_model
    im = build(MIXED, s.model, s.calib)
    record = write_export(im, shape, im.quantize_input(s.X), tmp_path, target="cortex-m4")
    assert set(cortex_m4.FILES) <= {p.name for p in tmp_path.iterdir()}
    assert not any(name.endswith(".c") for name in cortex_m4.FILES)  # `cc *.c` compiles the host files only
    from gruq.export import run_check

    host = run_check(tmp_path)
    assert host["last_line"] == f"{len(s.X)}/{len(s.X)} identical", host["output"]
    assert record["cortex_m4"]["check"] == f"{len(s.X)}/{len(s.X)} identical"


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7])
def test_every_width_decodes_exactly_packed_and_unpacked(random_model, tmp_path, bits):
    """Rows of 5 and 9 codes start mid-byte; 7-bit groups of four reach a fifth byte."""
    s, shape = random_model
    im = build(homogeneous(bits), s.model, s.calib)
    record = write_export(im, shape, im.quantize_input(s.X), tmp_path, target="cortex-m4")
    n = len(s.X)
    assert record["cortex_m4"]["check"] == f"{n}/{n} identical"
    result = cortex_m4.run(tmp_path, unpacked=True)
    assert result["last_line"] == f"{n}/{n} identical", result["output"]


def test_the_int64_path_is_exact_too(random_model, tmp_path, monkeypatch):
    """Operators the exporter cannot prove narrow run in int64: force that path everywhere."""
    s, shape = random_model
    im = build(MIXED, s.model, s.calib)
    monkeypatch.setattr(c_source, "wide_ops", lambda im: dict.fromkeys(wide_ops(im), True))
    record = write_export(im, shape, im.quantize_input(s.X), tmp_path, target="cortex-m4")
    assert "#define GRUQ_ADD_R_WIDE 1" in (tmp_path / c_source.MODEL_H).read_text()
    assert record["cortex_m4"]["check"] == f"{len(s.X)}/{len(s.X)} identical"


def test_cli_export_with_the_target(tmp_path, capsys):
    _real("ecg")
    out = tmp_path / "out"
    code = main(["export", "--task", "ecg", "--bits", "8", "--out", str(out), "--target", "cortex-m4", "--json"])
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    assert all(k in record["cortex_m4"] for k in KEYS)
    assert record["build_cortex_m4"] == f"make -C {out} run"


def test_missing_toolchain_is_one_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cortex_m4.shutil, "which", lambda name: None)
    with pytest.raises(GruqError, match="apt-get install gcc-arm-none-eabi"):
        cortex_m4.require()
    code = main(["export", "--task", "ecg", "--bits", "8", "--out", str(tmp_path / "o"), "--target", "cortex-m4"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "qemu-system-arm" in err[0]
    assert not (tmp_path / "o").exists()


# -- parsing the measurements -------------------------------------------------------


def test_timing_converts_ticks_to_instructions_with_the_calibration():
    out = "timer: 5000 ticks for 200000 instructions\nticks: steps 1000 over 10 steps, head 50 over 2 sequences\n"
    t = cortex_m4.parse_timing(out)
    assert t == {
        "instructions_per_tick": 40.0,
        "instructions_per_step": 4000.0,
        "instructions_head": 1000.0,
        "sequences": 2,
    }
    assert cortex_m4.parse_timing("4/4 identical\n") is None


def test_stack_is_the_deepest_call_chain():
    ci = (
        'node: { title: "gruq_run" label: "gruq_run\\nk.c:1:1\\n24 bytes (static)" }\n'
        'node: { title: "gruq_step" label: "gruq_step\\nk.c:2:1\\n200 bytes (static)" }\n'
        'node: { title: "gruq_logits" label: "gruq_logits\\nk.c:3:1\\n16 bytes (static)" }\n'
        'node: { title: "gruq_infer" label: "gruq_infer\\nk.c:4:1\\n8 bytes (static)" }\n'
        'edge: { sourcename: "gruq_run" targetname: "gruq_step" }\n'
        'edge: { sourcename: "gruq_run" targetname: "gruq_logits" }\n'
        'edge: { sourcename: "gruq_run" targetname: "memset" }\n'
        'edge: { sourcename: "gruq_infer" targetname: "gruq_run" }\n'
    )
    stack = cortex_m4.stack_usage(ci)
    assert stack["per_entry"] == {"gruq_run": 224, "gruq_infer": 232}
    assert stack["stack_bytes"] == 232 and stack["uncounted"] == ["memset"]
    with pytest.raises(GruqError, match="recursive"):
        cortex_m4.stack_usage(ci + 'edge: { sourcename: "gruq_step" targetname: "gruq_run" }\n')


def test_wide_flags_follow_the_bounds(random_model):
    s, _ = random_model
    im = build(homogeneous(8), s.model, s.calib)
    wide = wide_ops(im)
    assert set(wide) == {"add_r", "add_z", "add_n", "add_h", "mul_rn", "mul_zn", "mul_zh", "sub_z"}
    # products of two op outputs (at most 8 bits each) always fit in int32
    assert not wide["mul_zn"] and not wide["mul_zh"] and not wide["sub_z"]
    assert np.all([isinstance(v, bool) for v in wide.values()])


def test_shifts_int32_cannot_express_are_wide_even_for_zero_values():
    from gruq.export import plan

    assert plan._requant_bound(0, 32) > plan.INT32_LIMIT  # 1 << 31 is not an int32
    assert plan._requant_bound(0, -31) > plan.INT32_LIMIT
    assert plan._requant_bound(100, 31) == 100 + (1 << 30)
    assert plan._requant_bound(100, -3) == 800


@pytest.mark.parametrize("unpacked", [0, 1])
def test_the_arm_kernel_is_warning_free_under_pedantic_conversion_checks(random_model, tmp_path, unpacked):
    s, shape = random_model
    im = build(MIXED, s.model, s.calib)
    write_export(im, shape, im.quantize_input(s.X), tmp_path)
    flags = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft", "-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic"]
    flags += ["-Wconversion", "-Werror", f"-DGRUQ_WEIGHTS_UNPACKED={unpacked}"]
    comp = subprocess.run(
        ["arm-none-eabi-gcc", *flags, "-c", str(tmp_path / c_source.KERNEL_C), "-o", str(tmp_path / "k.o")],
        capture_output=True,
        text=True,
    )
    assert comp.returncode == 0 and comp.stderr == "", comp.stderr
