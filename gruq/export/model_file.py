"""The model file: a self-contained JSON description of one integer model.

Everything integer inference needs is in it (formats, packed weights, biases,
shifts, look-up tables, the head), so a tool in any language can run the model
without gruq; `read_model` turns it back into a `gruq.scheme.IntegerModel`,
which is how the tests prove it complete. The format is documented field by
field in docs/export-format.md.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

from gruq.errors import GruqError
from gruq.export.packing import pack, packed_size, unpack
from gruq.export.plan import LUTS, shifts
from gruq.fixedpoint import Format
from gruq.genome import ModelShape, validate
from gruq.ops import INPUT_LINEAR, LINEAR, OPS
from gruq.scheme import CellModel, Formats, IntegerModel

FORMAT_NAME = "gruq-integer-model"
VERSION = 1
PACKING = "le-bitpacked-twos-complement"


def _fmt(f: Format) -> dict[str, Any]:
    return {"bits": f.bits, "frac": f.frac, "signed": f.signed}


def _unfmt(d: dict[str, Any]) -> Format:
    return Format(int(d["bits"]), int(d["frac"]), bool(d["signed"]))


def _packed(codes: np.ndarray, bits: int) -> dict[str, Any]:
    data = pack(codes, bits)
    return {"bits": bits, "packing": PACKING, "bytes": len(data), "data": base64.b64encode(data).decode("ascii")}


def _ints(a: np.ndarray) -> list[int]:
    return [int(v) for v in np.asarray(a).ravel()]


def _cell_dict(cell: CellModel) -> dict[str, Any]:
    """One cell's part of the model file: its formats, linear operators, shifts and tables."""
    f = cell.fmt
    linear = {}
    for op in LINEAR:
        name = OPS[op]
        w = cell.weights[name]
        linear[name] = {
            "input": "x" if op in INPUT_LINEAR else "h",
            "rows": int(w.shape[0]),
            "cols": int(w.shape[1]),
            "weight_format": _fmt(f.weight[name]),
            "weights": _packed(w, f.weight[name].bits),
            "accumulator_frac": f.acc_frac[name],
            "bias": _ints(cell.biases[name]),
        }
    luts = {}
    for name, index in LUTS.items():
        fin = f.out[index]
        luts[name] = {"index": index, "index_lo": fin.lo, "entries": fin.levels, "values": _ints(cell.lut[name])}
    return {
        "state": _fmt(f.h),
        "formats": {name: _fmt(fo) for name, fo in f.out.items()},
        "linear": linear,
        "shifts": shifts(f),
        "luts": luts,
    }


def to_dict(im: IntegerModel, shape: ModelShape, task: str = "", input_note: dict | None = None) -> dict[str, Any]:
    """The model file's content for `im` (JSON-ready). A one-layer model's cell is at
    the top level; a stacked model's cells are in "layers" (each with its own genes
    and its input format: the 8-bit input for layer 0, the layer below's state above)."""
    f = im.fmt
    head_w = im.head_weight
    shape_d = {"features": shape.features, "hidden": shape.hidden, "classes": shape.classes, "steps": shape.steps}
    d: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": VERSION,
        "task": task,
        "genome": list(im.genome),
        "operators": list(OPS),
        "shape": shape_d,
        "input": {**_fmt(im.cells[0].fmt.x), **({"note": input_note} if input_note else {})},
    }
    if im.layers == 1:
        d.update(_cell_dict(im.cells[0]))
    else:
        shape_d["layers"] = im.layers
        d["layers"] = [{"genome": list(c.genome), "input": _fmt(c.fmt.x), **_cell_dict(c)} for c in im.cells]
    d["head"] = {
        "rows": int(head_w.shape[0]),
        "cols": int(head_w.shape[1]),
        "weight_format": _fmt(f.head_weight),
        "weights": _packed(head_w, f.head_weight.bits),
        "bias": _ints(im.head_bias),
        "logit_frac": f.logit_frac,
    }
    return d


def write_model(
    path: Path, im: IntegerModel, shape: ModelShape, task: str = "", input_note: dict | None = None
) -> Path:
    path = Path(path)
    path.write_text(json.dumps(to_dict(im, shape, task, input_note), indent=1) + "\n")
    return path


def _weights(d: dict[str, Any], rows: int, cols: int) -> np.ndarray:
    w = d["weights"]
    if w.get("packing") != PACKING:
        raise GruqError(f"unknown weight packing {w.get('packing')!r}")
    bits = int(w["bits"])
    data = base64.b64decode(w["data"])
    if len(data) != packed_size(rows * cols, bits):
        raise GruqError(f"packed weights hold {len(data)} bytes, expected {packed_size(rows * cols, bits)}")
    return unpack(data, bits, rows * cols).reshape(rows, cols)


def _cell_from(d: dict[str, Any], genes, x: Format, head_weight: Format) -> CellModel:
    """One cell of a model file (the inverse of `_cell_dict`)."""
    out = {name: _unfmt(fo) for name, fo in d["formats"].items()}
    weight, acc_frac, weights, biases = {}, {}, {}, {}
    for name, lin in d["linear"].items():
        weight[name] = _unfmt(lin["weight_format"])
        acc_frac[name] = int(lin["accumulator_frac"])
        weights[name] = _weights(lin, int(lin["rows"]), int(lin["cols"]))
        biases[name] = np.asarray(lin["bias"], dtype=np.int64)
    fmt = Formats(x=x, weight=weight, acc_frac=acc_frac, out=out, head_weight=head_weight)
    lut = {name: np.asarray(t["values"], dtype=np.int64) for name, t in d["luts"].items()}
    return CellModel(genome=tuple(genes), fmt=fmt, weights=weights, biases=biases, lut=lut)


def from_dict(d: dict[str, Any]) -> tuple[IntegerModel, ModelShape]:
    """The integer model a model file describes (the inverse of `to_dict`)."""
    if d.get("format") != FORMAT_NAME or d.get("version") != VERSION:
        raise GruqError(f"not a {FORMAT_NAME} file of version {VERSION}")
    try:
        shape = ModelShape(**{k: int(v) for k, v in d["shape"].items()})
        head = d["head"]
        head_fmt = _unfmt(head["weight_format"])
        genome = validate((int(b) for b in d["genome"]), shape.layers)
        if "layers" in d:
            if len(d["layers"]) != shape.layers:
                raise ValueError(f"{len(d['layers'])} layers listed, shape says {shape.layers}")
            cell_models = tuple(
                _cell_from(c, validate(int(b) for b in c["genome"]), _unfmt(c["input"]), head_fmt) for c in d["layers"]
            )
        else:
            cell_models = (_cell_from(d, genome, _unfmt(d["input"]), head_fmt),)
        im = IntegerModel(
            genome=genome,
            cells=cell_models,
            head_weight=_weights(head, int(head["rows"]), int(head["cols"])),
            head_bias=np.asarray(head["bias"], dtype=np.int64),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise GruqError(f"malformed {FORMAT_NAME} file ({type(exc).__name__}: {exc})") from None
    return im, shape


def read_model(path: Path) -> tuple[IntegerModel, ModelShape]:
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GruqError(f"cannot read model file {path}: {exc}") from None
    return from_dict(d)
