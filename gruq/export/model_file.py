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


def to_dict(im: IntegerModel, shape: ModelShape, task: str = "", input_note: dict | None = None) -> dict[str, Any]:
    """The model file's content for `im` (JSON-ready)."""
    f = im.fmt
    linear = {}
    for op in LINEAR:
        name = OPS[op]
        w = im.weights[name]
        linear[name] = {
            "input": "x" if op in INPUT_LINEAR else "h",
            "rows": int(w.shape[0]),
            "cols": int(w.shape[1]),
            "weight_format": _fmt(f.weight[name]),
            "weights": _packed(w, f.weight[name].bits),
            "accumulator_frac": f.acc_frac[name],
            "bias": _ints(im.biases[name]),
        }
    luts = {}
    for name, index in LUTS.items():
        fin = f.out[index]
        luts[name] = {"index": index, "index_lo": fin.lo, "entries": fin.levels, "values": _ints(im.lut[name])}
    head_w = im.head_weight
    return {
        "format": FORMAT_NAME,
        "version": VERSION,
        "task": task,
        "genome": list(im.genome),
        "operators": list(OPS),
        "shape": {"features": shape.features, "hidden": shape.hidden, "classes": shape.classes, "steps": shape.steps},
        "input": {**_fmt(f.x), **({"note": input_note} if input_note else {})},
        "state": _fmt(f.h),
        "formats": {name: _fmt(fo) for name, fo in f.out.items()},
        "linear": linear,
        "shifts": shifts(f),
        "luts": luts,
        "head": {
            "rows": int(head_w.shape[0]),
            "cols": int(head_w.shape[1]),
            "weight_format": _fmt(f.head_weight),
            "weights": _packed(head_w, f.head_weight.bits),
            "bias": _ints(im.head_bias),
            "logit_frac": f.logit_frac,
        },
    }


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


def from_dict(d: dict[str, Any]) -> tuple[IntegerModel, ModelShape]:
    """The integer model a model file describes (the inverse of `to_dict`)."""
    if d.get("format") != FORMAT_NAME or d.get("version") != VERSION:
        raise GruqError(f"not a {FORMAT_NAME} file of version {VERSION}")
    try:
        shape = ModelShape(**{k: int(v) for k, v in d["shape"].items()})
        out = {name: _unfmt(fo) for name, fo in d["formats"].items()}
        weight, acc_frac, weights, biases = {}, {}, {}, {}
        for name, lin in d["linear"].items():
            weight[name] = _unfmt(lin["weight_format"])
            acc_frac[name] = int(lin["accumulator_frac"])
            weights[name] = _weights(lin, int(lin["rows"]), int(lin["cols"]))
            biases[name] = np.asarray(lin["bias"], dtype=np.int64)
        head = d["head"]
        fmt = Formats(
            x=_unfmt(d["input"]), weight=weight, acc_frac=acc_frac, out=out, head_weight=_unfmt(head["weight_format"])
        )
        genome = validate(int(b) for b in d["genome"])
        lut = {name: np.asarray(t["values"], dtype=np.int64) for name, t in d["luts"].items()}
        im = IntegerModel(
            genome=genome,
            cells=(CellModel(genome=genome, fmt=fmt, weights=weights, biases=biases, lut=lut),),
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
