"""Export an integer model for deployment: model file, C99 kernel, check, memory report.

    export(task, genome, out_dir)   a task's checkpoint under a genome -> files + report
    write_export(im, shape, x_codes, out_dir, ...)   the same from an IntegerModel
    run_check(out_dir)              compile and run the exported check program
    (target="cortex-m4": also a bare-metal build run under QEMU, and its measured costs;
     gruq.export.targets)
    archive(out_dir, folder)        the export as zip bytes, its files inside `folder`/
    export_archive(task, genome)    export into a temporary directory -> (zip bytes, report),
                                    for the app's download button
    read_model(path)                a model file back into an IntegerModel

Files written into out_dir (docs/export-format.md describes each):
    gruq_model.json   the self-contained integer model
    memory.json       the memory report (also returned)
    test_vectors.npz  the test vectors as plain arrays (x codes, engine logits, labels)
    gruq_model.h, gruq_kernel.h, gruq_kernel.c, test_vectors.h, test_vectors.c, check.c
and `cc -std=c99 -Wall -Wextra -Werror -O2 out_dir/*.c -o check && ./check`
prints "N/N identical". With target="cortex-m4" also Makefile, mps2_an386.ld,
startup_cortex_m4.S, cortex_m4_timer.h: `make -C out_dir run` prints the same under QEMU.
"""

from __future__ import annotations

import io
import json
import shlex
import shutil
import subprocess
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gruq.errors import GruqError
from gruq.export import c_source
from gruq.export.memory import report
from gruq.export.model_file import read_model, write_model
from gruq.export.plan import check_ranges
from gruq.export.targets import HOST, cortex_m4
from gruq.export.targets import module as target_module
from gruq.genome import ModelShape, expand, layers_of, validate
from gruq.paths import output_dir, staged_dir

MODEL_JSON, MEMORY_JSON, VECTORS_NPZ = "gruq_model.json", "memory.json", "test_vectors.npz"
FILES = (MODEL_JSON, MEMORY_JSON, VECTORS_NPZ) + c_source.FILES
TARGET_FILES = cortex_m4.FILES  # written only with target="cortex-m4"
CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-O2")
BUILD = "cc " + " ".join(CFLAGS) + " *.c -o check && ./check"

__all__ = [
    "BUILD",
    "CFLAGS",
    "FILES",
    "archive",
    "export",
    "export_archive",
    "portable",
    "read_model",
    "run_check",
    "write_export",
]


def check_dir(out_dir: str | Path) -> Path:
    """out_dir, if it can receive an export: absent, or a directory that holds no foreign
    C file (every *.c in it is compiled by the build command), on a writable file system.
    Creates nothing."""
    out = output_dir(out_dir, "--out")
    if out.is_dir():
        foreign = sorted(p.name for p in out.glob("*.c") if p.name not in c_source.FILES)
        if foreign:
            raise GruqError(
                f"{out} already holds other C files ({', '.join(foreign)}); export into an empty or new directory"
            )
    return out


def write_export(
    im,
    shape: ModelShape,
    x_codes: np.ndarray,
    out_dir: str | Path,
    *,
    labels: np.ndarray | None = None,
    task: str = "",
    split: str = "",
    input_note: dict | None = None,
    target: str = HOST,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write every export file for the integer model `im` and the input codes
    (N, T, F) of the test vectors; returns the memory report with the paths.
    A `target` other than the host adds its files and its measured costs
    (record[target key], e.g. "cortex_m4")."""
    from gruq import engine

    x_codes = np.asarray(x_codes, dtype=np.int64)
    if x_codes.ndim != 3 or x_codes.shape[1:] != (shape.steps, shape.features) or len(x_codes) == 0:
        raise GruqError(
            f"test vectors must be (N, {shape.steps}, {shape.features}) codes with N >= 1; got {x_codes.shape}"
        )
    for k, cell in enumerate(im.cells):  # layer k > 0 reads H codes of the layer below
        check_ranges(cell.fmt, shape.features if k == 0 else shape.hidden, shape.hidden)
    tgt = target_module(target)
    if tgt is not None:
        tgt.require()
    out = check_dir(out_dir)
    logits = engine.run(im, x_codes)
    record = {
        "task": task,
        "split": split,
        "sequences": int(len(x_codes)),
        **report(im, shape),
        "out": str(out),
        "files": {name: str(out / name) for name in FILES},
        "build": BUILD,
        **(extra or {}),
    }
    record["size_bytes"] = _whole(record["size_bytes"])
    if labels is not None:
        from gruq.stats import wilson_acc

        record["engine_accuracy"] = float((logits.argmax(axis=1) == np.asarray(labels)).mean())
        record["ci95"] = list(wilson_acc(record["engine_accuracy"], record["sequences"]))
        if split == "test":  # what a run's `check` command gives with --split test
            record["test_accuracy"] = record["engine_accuracy"]
    with staged_dir(out) as tmp:  # all files or none: never a half-written export
        for name, text in c_source.sources(im, shape, x_codes, logits, labels, task, split).items():
            (tmp / name).write_text(text)
        write_model(tmp / MODEL_JSON, im, shape, task, input_note)
        write_vectors(tmp / VECTORS_NPZ, x_codes, logits, labels)
        if tgt is not None:  # written and measured in the staging folder, moved with the rest
            record["target"] = target
            record["files"].update({name: str(out / name) for name in tgt.write(tmp)})
            record[tgt.KEY] = tgt.measure(tmp, shape, im.genome)
            record["build_" + tgt.KEY] = tgt.BUILD.replace("DIR", shlex.quote(str(out)))
        (tmp / MEMORY_JSON).write_text(json.dumps(portable(record), indent=1) + "\n")
    return record


def write_vectors(path: Path, x_codes: np.ndarray, logits: np.ndarray, labels: np.ndarray | None) -> None:
    """test_vectors.npz: the test vectors as plain arrays, for a reimplementation in any
    language (docs/export-format.md): x (N, T, F) int8 input codes, logits (N, C) int32
    engine logits, and labels (N,) int64 when known."""
    arrays = {"x": np.asarray(x_codes, dtype=np.int8), "logits": np.asarray(logits, dtype=np.int32)}
    if labels is not None:
        arrays["labels"] = np.asarray(labels, dtype=np.int64)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _whole(value: float) -> int | float:
    """A byte count as an int when it is whole (it is whenever each matrix fills whole bytes)."""
    return int(value) if float(value).is_integer() else float(value)


def portable(record: dict[str, Any]) -> dict[str, Any]:
    """The memory report as memory.json holds it: file names relative to the export's
    folder, no absolute path (the folder may be moved, zipped or built on a server)."""
    folder = str(record.get("out", ""))
    out = {k: v.replace(folder, ".") if folder and isinstance(v, str) else v for k, v in record.items() if k != "out"}
    out["files"] = {name: name for name in record.get("files", {})}
    return out


def export(
    task: str,
    genome: Sequence[int],
    out_dir: str | Path,
    checkpoint: str | Path | None = None,
    split: str = "test",
    finetune_epochs: int = 0,
    seed: int = 0,
    target: str = HOST,
    *,
    model=None,
    built=None,
) -> dict[str, Any]:
    """Export the model of scheme `genome` on `task`, with every sequence of `split`
    as a test vector. The model is `model` (a `gruq.scheme_model.SchemeModel`, e.g.
    a run's front member, `built` its already built Checkpoint), else the one the
    options name: post-training, or fine-tuned for `finetune_epochs` exactly as
    `gruq evaluate` does. Returns the memory report, the paths, the model's label
    and, when the labels are known, the integer engine's accuracy on the vectors
    (`engine_accuracy`; also `test_accuracy` for the test split), with its
    number of sequences and 95% interval. `target="cortex-m4"` adds the
    bare-metal build and its measured costs."""
    from gruq.evaluate import load
    from gruq.scheme import build
    from gruq.scheme_model import from_options, weights_sha256

    genome = validate(genome, layers_of(genome))
    tgt = target_module(target)
    if tgt is not None:
        tgt.require()
    out = check_dir(out_dir)  # fail before the slow part
    checkpoint = str(checkpoint) if checkpoint else None
    data, base = load(model.task if model else task, model.checkpoint if model else checkpoint)
    genome = expand(genome, base.model.layers)  # 17 genes are used for every layer
    recipe = model or from_options(task, genome, checkpoint, finetune_epochs, seed)
    part = data.split(split)
    ckpt = built if built is not None else recipe.build()
    im = build(genome, ckpt.model, ckpt.calibration)
    shape = model_shape(ckpt.model, data.steps)
    if shape.features != data.features or shape.classes < data.classes:
        raise GruqError(
            f"the checkpoint ({shape.features} features, {shape.classes} classes) does not fit task "
            f"{data.name!r} ({data.features} features, {data.classes} classes)"
        )
    note = {k: v for k, v in data.extra.items() if k != "index"}
    note["source"] = data.source
    extra: dict[str, Any] = {"model": recipe.label, "recipe": recipe.to_dict(), "weights_sha256": weights_sha256(ckpt)}
    if recipe.finetuning is not None:
        extra["finetune"] = {"epochs": recipe.finetuning.epochs, "seed": recipe.finetuning.seed}
    return write_export(
        im,
        shape,
        im.quantize_input(part.X),
        out,
        labels=part.y,
        task=data.name,
        split=split,
        input_note=note,
        target=target,
        extra=extra,
    )


def model_shape(model, steps: int) -> ModelShape:
    """The shape of a float checkpoint's model (its own hidden size, not the task's default)."""
    return ModelShape(
        features=int(model.gru.input_size),
        hidden=int(model.hidden),
        classes=int(model.head.out_features),
        steps=int(steps),
        layers=int(model.layers),
    )


def run_check(out_dir: str | Path, cc: str = "cc", timeout: float = 300) -> dict[str, Any]:
    """Compile out_dir/*.c with CFLAGS and run ./check: {"ok", "compile_seconds", "output"}."""
    import time

    out = Path(out_dir)
    if shutil.which(cc) is None:
        raise GruqError(f"no C compiler {cc!r} on PATH")
    exe = out / "check"
    t0 = time.perf_counter()
    comp = subprocess.run(
        [cc, *CFLAGS, *sorted(str(p) for p in out.glob("*.c")), "-o", str(exe)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.perf_counter() - t0
    if comp.returncode != 0:
        return {"ok": False, "compiled": False, "compile_seconds": seconds, "output": comp.stderr}
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=timeout, cwd=out)
    lines = run.stdout.strip().splitlines()
    return {
        "ok": run.returncode == 0,
        "compiled": True,
        "compile_seconds": seconds,
        "returncode": run.returncode,
        "output": run.stdout,
        "last_line": lines[-1] if lines else "",
    }


def archive(out_dir: str | Path, folder: str = "gruq_export") -> bytes:
    """The export's files as a zip (in memory), e.g. for a download button, inside one
    `folder`: name it after the zip's file name, so two exports unpacked in one place
    land in two folders instead of overwriting each other."""
    out = Path(out_dir)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in FILES + TARGET_FILES:
            if (out / name).is_file():
                zf.write(out / name, arcname=f"{folder}/{name}")
    return buf.getvalue()


def export_archive(
    task: str,
    genome: Sequence[int],
    checkpoint: str | Path | None = None,
    split: str = "test",
    finetune_epochs: int = 0,
    seed: int = 0,
    target: str = HOST,
    *,
    model=None,
    built=None,
) -> tuple[bytes, dict[str, Any]]:
    """`export` into a temporary directory; returns the zip of its files and the
    report (whose paths no longer exist): what a download button needs."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gruq-export-") as tmp:
        record = export(task, genome, tmp, checkpoint, split, finetune_epochs, seed, target, model=model, built=built)
        return archive(tmp), record
