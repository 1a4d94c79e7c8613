"""A user's own task from a .npz file.

The file must hold two plain arrays (any other arrays are ignored):
    X  (N, T, F)  real numbers (float, int or bool): N sequences of T steps x F features
    y  (N,)       integer class labels >= 0 (floats are accepted if they are whole numbers)

It is opened with np.load(path, allow_pickle=False); the .npy headers of X and
y are checked before anything is read, so object (pickled) arrays and
arrays beyond gruq.limits (too large to train in reasonable time and
memory) are refused without being loaded. Every problem is a
GruqError with one line saying what is wrong.

Labels are remapped to 0..C-1 in increasing order of the original values,
which are kept in Task.extra['labels'] (extra['labels'][k] is class k).
Splits: 60% train / 20% val / 20% test, stratified and seeded; val and test
need at least 30 sequences each (so N >= 150) and every class needs at
least 3 sequences (one per split). Channels are z-scored with train-split
statistics. Defaults: hidden 32, 30 epochs; the task's name is the file stem.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from gruq.errors import GruqError
from gruq.limits import check_task_shape
from gruq.paths import input_file, shown
from gruq.tasks.base import Split, Task
from gruq.tasks.split import Normaliser, check_seed, index_extra, rng, stratified_split

FRACTIONS = (0.6, 0.2, 0.2)
MIN_SPLIT = 30  # fewest sequences in val and in test
MIN_PER_CLASS = 3


def _header(archive: zipfile.ZipFile, key: str, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of array `key`, read from its .npy header only."""
    try:
        with archive.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
    except Exception as exc:  # noqa: BLE001 - any failure means a damaged member
        raise GruqError(f"{where}: array {key!r} is not a readable .npy array ({exc})") from None
    return tuple(int(n) for n in shape), np.dtype(dtype)


def _check_headers(path: Path, where: str) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            found = sorted(n[:-4] for n in names if n.endswith(".npy"))
            for key in ("X", "y"):
                if f"{key}.npy" not in names:
                    raise GruqError(
                        f"{where}: no array {key!r} (found: {', '.join(found) or 'none'}); "
                        "a task file needs X (N, T, F) and y (N)"
                    )
            x_shape, x_dtype = _header(archive, "X", where)
            y_shape, y_dtype = _header(archive, "y", where)
    except (zipfile.BadZipFile, OSError) as exc:
        raise GruqError(f"{where}: not a readable .npz file ({exc})") from None
    for key, dtype in (("X", x_dtype), ("y", y_dtype)):
        if dtype.hasobject:
            raise GruqError(
                f"{where}: {key} is an object array (pickled Python objects); gruq reads only plain numeric arrays"
            )
        if dtype.kind not in "biuf":
            raise GruqError(f"{where}: {key} holds {_kind(dtype)}; it must hold real numbers")
    if len(x_shape) != 3:
        raise GruqError(f"{where}: X has shape {x_shape}; it must be 3-D (sequences N, steps T, features F)")
    if len(y_shape) != 1:
        raise GruqError(f"{where}: y has shape {y_shape}; it must be 1-D (one label per sequence)")
    n, steps, features = x_shape
    if y_shape[0] != n:
        raise GruqError(f"{where}: X has {n} sequences but y has {y_shape[0]} labels")
    if steps < 1 or features < 1:
        raise GruqError(f"{where}: X has shape {x_shape}; sequences need at least 1 step and 1 feature")
    check_task_shape(n, steps, features, where)  # gruq.limits: what trains in reasonable time and memory


def _kind(dtype: np.dtype) -> str:
    """What an array holds, in words (not numpy's dtype code)."""
    return {
        "U": "text",
        "S": "bytes (text)",
        "c": "complex numbers",
        "M": "dates",
        "m": "time spans",
        "V": "records (a structured array)",
    }.get(dtype.kind, f"values of type {dtype.name}")


def _labels(y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Classes 0..C-1 and the original label values."""
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise GruqError(f"{where}: y has non-finite labels (NaN or inf); labels must be integers >= 0")
        whole = y == np.round(y)
        if not whole.all():
            raise GruqError(
                f"{where}: y has non-integer labels (e.g. {float(y[~whole][0]):g}); labels must be integers >= 0"
            )
        if np.abs(y).max(initial=0) > 2**53:
            raise GruqError(f"{where}: y has labels too large to be class labels")
        y = y.astype(np.int64)
    y = y.astype(np.int64)
    if (y < 0).any():
        raise GruqError(f"{where}: y has negative labels (e.g. {int(y[y < 0][0])}); labels must be integers >= 0")
    values, classes = np.unique(y, return_inverse=True)
    return classes.astype(np.int64), values


def load_npz(path: str | Path, seed: int = 0, name: str | None = None) -> Task:
    """The task in `path`. Errors start with `name` (default: the path), so an app can
    name an uploaded file as its user knows it, not by where the server keeps it."""
    seed = check_seed(seed)
    path = Path(path).expanduser()
    where = name or str(path)
    try:
        input_file(path)  # never a folder, pipe or device; no name too long
    except GruqError as exc:  # said with `where`, the name the user knows: "mine.npz: a folder, not a file"
        reason = str(exc).replace(shown(path), "", 1).lstrip(": ").removeprefix("is ")
        raise GruqError(f"{where}: {reason}") from None
    if not zipfile.is_zipfile(path):
        raise GruqError(f"{where}: not a .npz file (not a zip archive); save one with np.savez(path, X=X, y=y)")
    _check_headers(path, where)
    try:
        with np.load(path, allow_pickle=False) as data:
            X, y = data["X"], data["y"]
    except Exception as exc:  # noqa: BLE001 - headers were fine, so the data are damaged
        raise GruqError(f"{where}: cannot read X and y ({type(exc).__name__}: {exc})") from None

    bad = int(X.size - np.count_nonzero(np.isfinite(X)))
    if bad:
        raise GruqError(f"{where}: X has {bad} non-finite values (NaN or inf)")
    y, values = _labels(y, where)
    if len(values) < 2:
        raise GruqError(f"{where}: y has {len(values)} class; a classification task needs at least 2")
    counts = np.bincount(y)
    if counts.min() < MIN_PER_CLASS:
        rare = values[int(np.argmin(counts))]
        raise GruqError(
            f"{where}: class {rare} has only {counts.min()} sequences; "
            f"every class needs at least {MIN_PER_CLASS} (one per split)"
        )
    n = len(y)
    n_val = n_test = int(round(n * FRACTIONS[1]))
    if n_val < MIN_SPLIT:
        raise GruqError(
            f"{where}: only {n} sequences; gruq needs at least {int(np.ceil(MIN_SPLIT / FRACTIONS[1]))} "
            f"so that validation and test get {MIN_SPLIT} each"
        )
    parts = stratified_split(y, (n - n_val - n_test, n_val, n_test), rng(seed))
    norm = Normaliser.fit(X[parts[0]])
    train, val, test = (Split(X=norm(X[i]), y=y[i]) for i in parts)
    return Task(
        name=path.stem,
        train=train,
        val=val,
        test=test,
        classes=len(values),
        hidden=32,
        epochs=30,
        source=f"user file {path.name}",
        extra={
            "seed": seed,
            "path": str(path.resolve()),
            "labels": tuple(v.item() for v in values),
            **norm.to_extra(),
            "index": index_extra(parts),
        },
    )
