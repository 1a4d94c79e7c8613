"""The memory report of an exported model: what a microcontroller must hold.

Figures are those of the generated C kernel (gruq_kernel.c), counted from the
model's shape and shifts; the packed parameter bytes equal
gruq.genome.size_bytes whenever every weight matrix fills whole bytes (true
for the built-in tasks; otherwise each matrix adds its padding, < 1 byte).
"""

from __future__ import annotations

from typing import Any

from gruq.export.packing import packed_size
from gruq.export.plan import ADDS, LUTS, MULS, shifts
from gruq.genome import ACC_BITS, HEAD_BITS, ModelShape, size_bytes
from gruq.ops import INPUT_LINEAR, LINEAR, OPS, layer_prefix
from gruq.scheme import IntegerModel


def _fmt(f) -> dict[str, Any]:
    return {"bits": f.bits, "frac": f.frac, "signed": f.signed}


def _cell_formats(f) -> dict[str, Any]:
    return {
        "input": _fmt(f.x),
        "weights": {name: _fmt(w) for name, w in f.weight.items()},
        "accumulator_frac": dict(f.acc_frac),
        "outputs": {name: _fmt(o) for name, o in f.out.items()},
        "state": _fmt(f.h),
    }


def formats_record(im: IntegerModel) -> dict[str, Any]:
    """Every tensor's format, for reports: input, weights, accumulators, outputs, head
    (a stacked model's per-cell formats under "layers", the last layer's at the top)."""
    f = im.fmt
    record = {**_cell_formats(f), "head_weight": _fmt(f.head_weight), "logit_frac": f.logit_frac}
    if im.layers > 1:
        record["input"] = _fmt(im.cells[0].fmt.x)
        record["layers"] = [_cell_formats(c.fmt) for c in im.cells]
    return record


def _cell_ops(fmt, inputs: int, hidden: int) -> dict[str, int]:
    """Integer operations of one cell's step (all H units) on `inputs` input codes."""
    H, F = hidden, inputs
    plan = shifts(fmt)
    macs = 3 * H * F + 3 * H * H
    rounded = [name for name in list(ADDS) + list(MULS) + ["sub_z"] if plan[name]["shr"] > 0]
    aligns = sum((plan[n]["shl_a"] != 0) + (plan[n]["shl_b"] != 0) for n in ADDS)
    requant_shifts = sum(plan[n]["shr"] != 0 for n in list(ADDS) + list(MULS) + ["sub_z"])
    return {
        "multiplies": macs + 3 * H,
        "adds": macs + 6 * H + 5 * H + len(rounded) * H,
        "shifts": (aligns + requant_shifts) * H,
        "lookups": 3 * H,
        "saturations": (6 + 8) * H,
        "weight_unpacks": macs,
    }


def ops_per_step(im: IntegerModel, shape: ModelShape) -> dict[str, int]:
    """Integer operations of one time step of the kernel (all H units of every layer).

    multiplies: the six matrix-vector products' MACs and the three element-wise
    products; adds: MAC accumulations, bias adds, the four adds and 1 - z, and
    the rounding half of every shift right; shifts: the non-zero aligning and
    requantizing shifts; lookups: sigmoid, sigmoid, tanh; saturations: the six
    int32 accumulators and the eight requantized outputs; weight_unpacks: bit
    extractions of packed weights (one per weight read). Layer 0 reads the
    F features, every layer above reads the H codes of the one below.
    """
    total: dict[str, int] = {}
    for k, cell in enumerate(im.cells):
        inputs = shape.features if k == 0 else shape.hidden
        for key, v in _cell_ops(cell.fmt, inputs, shape.hidden).items():
            total[key] = total.get(key, 0) + v
    return total


def ops_head(shape: ModelShape) -> dict[str, int]:
    """Integer operations of the classifier head, once per sequence."""
    n = shape.hidden * shape.classes
    return {"multiplies": n, "adds": n, "saturations": shape.classes}


def report(im: IntegerModel, shape: ModelShape) -> dict[str, Any]:
    """The memory report (JSON-ready): bytes by kind and operation counts."""
    weights: dict[str, int | float] = {}
    for k, cell in enumerate(im.cells):
        inputs = shape.features if k == 0 else shape.hidden
        for op in LINEAR:
            name = OPS[op]
            count = shape.hidden * (inputs if op in INPUT_LINEAR else shape.hidden)
            weights[layer_prefix(k, im.layers) + name] = packed_size(count, cell.fmt.weight[name].bits)
    biases = im.layers * 6 * shape.hidden * ACC_BITS // 8
    head_w = packed_size(shape.classes * shape.hidden, HEAD_BITS)
    head_b = shape.classes * ACC_BITS // 8
    params = sum(weights.values()) + biases + head_w + head_b
    luts = {  # one byte per entry (<= 8-bit codes)
        layer_prefix(k, im.layers) + name: len(c.lut[name]) for k, c in enumerate(im.cells) for name in LUTS
    }
    genome_size = size_bytes(im.genome, shape)
    state, scratch = im.layers * shape.hidden, shape.hidden  # int8 codes: every layer's h, the new h
    per_step = ops_per_step(im, shape)
    return {
        "genome": list(im.genome),
        "shape": {"features": shape.features, "hidden": shape.hidden, "classes": shape.classes, "steps": shape.steps},
        "layers": im.layers,
        "size_bytes": genome_size,
        "packed_parameter_bytes": params,
        "packed_equals_size_bytes": params == genome_size,
        "parameters": {
            "weights": weights,
            "weights_total": sum(weights.values()),
            "biases": biases,
            "head_weights": head_w,
            "head_bias": head_b,
        },
        "lut_bytes": sum(luts.values()),
        "luts": luts,
        "rom_bytes": params + sum(luts.values()),
        "state_bytes": state,
        "scratch_bytes": scratch,
        "ram_bytes": state + scratch,
        "io_bytes": {"input_per_step": shape.features, "logits": 4 * shape.classes},
        "ops_per_step": per_step,
        "ops_head_per_sequence": ops_head(shape),
        "ops_per_sequence": {k: v * shape.steps + ops_head(shape).get(k, 0) for k, v in per_step.items()},
        "formats": formats_record(im),
    }
