"""Export of stacked GRU models: the one cell (gruq_cell.h) runs once per layer and
time step with that layer's constants, bit-identical to the integer engine.

The shipped two-layer model is exported through the CLI and in-process at all-2,
all-8 and a random 34-gene genome; a three-layer model made here is exported,
compiled with -std=c99 -Wall -Wextra -Werror, read back from its model file, and
its memory report checked against per-layer sums by hand. The two-layer model
also runs under QEMU on the Cortex-M4 target.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import small

from gruq import engine
from gruq.export import c_source, export, read_model, run_check, write_export
from gruq.export.targets import cortex_m4
from gruq.genome import ModelShape, homogeneous, size_bytes

ROOT = Path(__file__).resolve().parents[1]
TWO_LAYER = ROOT / "assets" / "vowels_2layer.pt"
RANDOM34 = tuple(int(b) for b in np.random.default_rng(13).integers(2, 9, 34))
SHAPE3 = dict(features=3, hidden=8, classes=4, steps=6)

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")


@pytest.fixture(scope="module")
def three_layer():
    s = small(**SHAPE3, n=30, seed=7, weight_scale=2.0, layers=3)
    from gruq.scheme import build

    return s, ModelShape(**SHAPE3, layers=3), build


def _export3(three_layer, genome, out: Path) -> dict:
    s, shape, build = three_layer
    im = build(genome, s.model, s.calib)
    labels = np.arange(len(s.X)) % shape.classes
    return write_export(im, shape, im.quantize_input(s.X), out, labels=labels, task="random3", split="random")


@needs_cc
def test_cli_export_check_of_the_shipped_two_layer_model_is_identical(tmp_path):
    bits = ",".join(map(str, RANDOM34))
    args = ["export", "--task", "vowels", "--checkpoint", str(TWO_LAYER), "--bits", bits, "--out", str(tmp_path)]
    r = subprocess.run([sys.executable, "-m", "gruq", *args, "--check"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "check: 300/300 identical" in r.stdout
    model = json.loads((tmp_path / "gruq_model.json").read_text())
    assert model["shape"]["layers"] == 2 and [c["genome"] for c in model["layers"]] == [
        list(RANDOM34[:17]),
        list(RANDOM34[17:]),
    ]


@needs_cc
@pytest.mark.parametrize("b", [2, 8])
def test_shipped_two_layer_model_is_identical_at_homogeneous_widths(tmp_path, b):
    record = export("vowels", homogeneous(b, 2), tmp_path, checkpoint=TWO_LAYER)
    assert record["layers"] == 2
    assert run_check(tmp_path)["last_line"] == "300/300 identical"


@needs_cc
@pytest.mark.parametrize("genome", [homogeneous(2, 3), homogeneous(8, 3), RANDOM34 + RANDOM34[:17]])
def test_three_layer_export_compiles_warning_free_and_is_identical(three_layer, tmp_path, genome):
    _export3(three_layer, genome, tmp_path)
    result = run_check(tmp_path)  # -std=c99 -Wall -Wextra -Werror -O2
    assert result["compiled"], result["output"]
    assert result["last_line"] == "30/30 identical"


def test_stacked_header_defines_every_layer_and_the_kernel_is_one_cell(three_layer, tmp_path):
    _export3(three_layer, RANDOM34 + RANDOM34[:17], tmp_path)
    header = (tmp_path / c_source.MODEL_H).read_text()
    assert "#define GRUQ_LAYERS 3" in header
    for k in range(3):
        assert f"#define GRUQ_L{k}_ADD_H_SHR" in header and f"gruq_l{k}_lin_hn_w" in header
    assert "#define GRUQ_ADD_H_SHR" not in header  # no unprefixed layer
    # the cell's code exists once, in gruq_cell.h; the kernel includes it per layer
    kernel = (tmp_path / c_source.KERNEL_C).read_text()
    assert "gruq_dot3(gruq_row" not in kernel and (tmp_path / c_source.CELL_H).read_text().count("gruq_dot3(") == 2
    assert len(re.findall(r'#include "gruq_cell.h"', kernel)) == 4  # layers 0..3, each under #if GRUQ_LAYERS


def test_stacked_model_file_reproduces_the_engine(three_layer, tmp_path):
    s, shape, build = three_layer
    genome = RANDOM34 + RANDOM34[:17]
    _export3(three_layer, genome, tmp_path)
    im = build(genome, s.model, s.calib)
    im2, shape2 = read_model(tmp_path / "gruq_model.json")
    assert shape2 == shape and im2.genome == genome and im2.layers == 3
    assert [c.fmt for c in im2.cells] == [c.fmt for c in im.cells]
    x = im.quantize_input(s.X)
    assert np.array_equal(engine.run(im2, x), engine.run(im, x))


def test_stacked_memory_report_sums_the_layers(three_layer, tmp_path):
    _, shape, _ = three_layer
    genome = RANDOM34 + RANDOM34[:17]
    record = _export3(three_layer, genome, tmp_path)
    H, F, C, L = shape.hidden, shape.features, shape.classes, 3
    assert record["layers"] == L and record["parameters"]["head_weights"] == C * H
    assert record["packed_parameter_bytes"] == size_bytes(genome, shape)  # 8 x 3 and 8 x 8 fill whole bytes
    assert record["parameters"]["biases"] == L * 6 * H * 4
    linear = ("lin_xr", "lin_hr", "lin_xz", "lin_hz", "lin_xn", "lin_hn")
    assert set(record["parameters"]["weights"]) == {f"l{k}.{n}" for k in range(L) for n in linear}
    luts = sum(2 ** genome[17 * k + i] for k in range(L) for i in (2, 6, 11))
    assert record["lut_bytes"] == luts
    assert record["state_bytes"] == L * H and record["scratch_bytes"] == H
    ops = record["ops_per_step"]
    macs = 3 * H * (F + H) + (L - 1) * 3 * H * (H + H)
    assert ops["multiplies"] == macs + L * 3 * H and ops["weight_unpacks"] == macs
    assert ops["lookups"] == L * 3 * H
    assert len(record["formats"]["layers"]) == L
    assert record["formats"]["layers"][1]["input"] == record["formats"]["layers"][0]["state"]


def test_two_layer_model_is_identical_on_the_cortex_m4(tmp_path):
    missing = cortex_m4.missing_tools()
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run scripts/setup")
    record = export("vowels", RANDOM34, tmp_path, checkpoint=TWO_LAYER, target="cortex-m4")
    m4 = record["cortex_m4"]
    n = cortex_m4.MEASURE_SEQUENCES
    assert m4["check"] == f"{n}/{n} identical"
    H, F = record["shape"]["hidden"], record["shape"]["features"]
    assert m4["macs_per_step"] == 3 * H * (F + H) + 3 * H * (H + H)
    assert m4["ram_bytes"] == 3 * H  # gruq_infer's static state: two layers' h and the scratch row
    assert m4["stack"]["dynamic"] == []


def test_the_stacked_arm_kernel_is_warning_free_under_pedantic_conversion_checks(three_layer, tmp_path):
    missing = cortex_m4.missing_tools()
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run scripts/setup")
    _export3(three_layer, RANDOM34 + RANDOM34[:17], tmp_path)
    flags = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft", "-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic"]
    flags += ["-Wconversion", "-Werror"]
    comp = subprocess.run(
        ["arm-none-eabi-gcc", *flags, "-c", str(tmp_path / c_source.KERNEL_C), "-o", str(tmp_path / "k.o")],
        capture_output=True,
        text=True,
    )
    assert comp.returncode == 0 and comp.stderr == "", comp.stderr
