"""Streamlit helpers shared by app.py and the pages (the app side, not the library).

Pages import this module and gruq; gruq never imports it. Everything a page
shows comes from the run store (see `db_path`) or from gruq's functions.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import streamlit as st

from gruq.errors import GruqError

ROOT = Path(__file__).resolve().parent
DEFAULT_DB = ROOT / "runs" / "gruq.db"
TASK_LABELS = {
    "smnist": "smnist: handwritten digits read row by row (28 steps x 28 pixels, 10 classes)",
    "vowels": "vowels: which of 9 speakers said a Japanese vowel (up to 29 steps x 12, 9 classes) - fastest",
    "har": "har: human activity from a phone's motion sensors (128 steps x 6, 6 classes)",
    "ecg": "ecg: heartbeat type from one ECG channel (140 steps x 1, 5 classes)",
}


def db_path() -> Path:
    """The run store: $GRUQ_DB, else runs/gruq.db next to app.py."""
    env = os.environ.get("GRUQ_DB")
    return Path(env) if env else DEFAULT_DB


_FROZEN_MODULES = 0  # len(sys.modules) when the collector last froze


def spare_the_collector() -> None:
    """Hide the long-lived objects of imported modules from the garbage collector.

    Streamlit collects every generation after every script run, fragment runs
    included (runner.postScriptGC). Once the pages have imported torch, pandas and
    plotly the server holds some 270,000 tracked objects, nearly all of them the
    modules' own functions, classes and tables, and each collection walked them
    all: 0.3-1.8 s per run at load 6-9, paid between Launch and the Live page and
    again between every two polls of the Live page. gc.freeze() moves what is
    alive now to a generation collections skip; doing it only after new imports
    (at the start of a run, after the previous run's collection) leaves the
    objects of later runs to the collector as before."""
    global _FROZEN_MODULES
    if len(sys.modules) != _FROZEN_MODULES:
        gc.freeze()
        _FROZEN_MODULES = len(sys.modules)


def start_runner() -> None:
    """Keep a warm runner for the store, so launched runs start in about a second.

    GRUQ_RUNNER=0 turns it off (launches then spawn a process each, as the tests of pages do)."""
    if os.environ.get("GRUQ_RUNNER", "1") == "0":
        return
    from gruq.search import runner

    try:
        runner.ensure(db_path())
    except OSError as exc:
        st.toast(f"Runs will start slowly: the warm runner could not start ({exc}).")


def uploads_dir() -> Path:
    """Where uploaded data sets go: uploads/ next to the run store (runs/uploads by default)."""
    return db_path().parent / "uploads"


def setup(title: str, icon: str = ":material/memory:") -> None:
    st.set_page_config(page_title=f"gruq · {title}", page_icon=icon, layout="wide")


@contextmanager
def explained() -> Iterator[None]:
    """Show a GruqError as a message instead of stopping the page."""
    try:
        yield
    except GruqError as exc:
        st.error(str(exc))


def task_label(task: str) -> str:
    if task in TASK_LABELS:
        return task
    return f"{Path(task).name} (your data)"


def run_label(run: dict[str, Any]) -> str:
    """How a run is named in pickers: stable while it runs (its status is shown elsewhere)."""
    cfg = run.get("config") or {}
    when = (run.get("created_at") or "")[:16].replace("T", " ")
    model = f" · model {Path(cfg['checkpoint']).name}" if cfg.get("checkpoint") else ""
    return (
        f"run {run['run_id']} · {task_label(run['task'])}{model} · population {cfg.get('pop', '?')} x "
        f"{run['generations']} generations · seed {run['seed']} · {when} UTC"
    )


def run_name(run: dict[str, Any]) -> str:
    """A run's short name for legends: task, seed, and what it minimised or fine-tuned if not the default."""
    cfg = run.get("config") or {}
    parts = [f"run {run['run_id']}", task_label(run["task"]), f"seed {run['seed']}"]
    if cfg.get("checkpoint"):
        parts.insert(2, f"model {Path(cfg['checkpoint']).name}")
    if run.get("objective") == "bops":
        parts.append("min. bit operations")
    if cfg.get("finetune_epochs"):
        parts.append(f"fine-tuned {cfg['finetune_epochs']} epoch{'s' if cfg['finetune_epochs'] != 1 else ''}")
    return " · ".join(parts)


def query_int(name: str) -> int | None:
    value = st.query_params.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def list_runs() -> list[dict[str, Any]]:
    from gruq import store

    path = db_path()
    if not path.exists():
        return []
    return store.list_runs(path)


def choose_run(runs: list[dict[str, Any]], key: str, label: str = "Run") -> dict[str, Any] | None:
    """A run picker that remembers the choice in the URL (?run=ID) and the session."""
    if not runs:
        return None
    ids = [r["run_id"] for r in runs]
    asked = query_int("run")
    wanted = asked or st.session_state.get("run_id")
    index = ids.index(wanted) if wanted in ids else 0
    if "run" in st.query_params and asked not in ids:  # never show another run as if it were the one asked for
        st.warning(f"There is no run {st.query_params['run'][:20]} in this store: showing run {ids[index]}.")
    choice = st.selectbox(
        label, ids, index=index, key=key, format_func=lambda i: run_label(next(r for r in runs if r["run_id"] == i))
    )
    st.session_state["run_id"] = choice
    if st.query_params.get("run") != str(choice):
        st.query_params["run"] = str(choice)
    return next(r for r in runs if r["run_id"] == choice)


# ---------------------------------------------------------------- a user's own task


def _safe_stem(name: str) -> str:
    import re

    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem).strip("_")[:40] or "data"
    return stem


def save_upload(name: str, data: bytes) -> Path:
    """Save an uploaded .npz under runs/uploads/ with a name no built-in task has.

    The task's name (the file stem) also names its checkpoint, so the stem
    carries a content hash: two different files never share a checkpoint.
    """
    import hashlib

    uploads = uploads_dir()
    uploads.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()[:8]
    path = uploads / f"{_safe_stem(name)}-{digest}.npz"
    if not path.exists():
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def own_task_picker(prefix: str = "") -> str | None:
    """Upload a .npz (or pick one uploaded before); returns its path, checked by gruq.

    A file the uploader holds but gruq refuses shows its error and nothing else:
    no earlier upload stands in for it (they are kept, and offered again once the
    refused file is removed). `prefix` keeps the widgets of two pickers apart."""
    from gruq.tasks.npz import load_npz

    st.markdown(
        "Your file needs two arrays: **X** of shape (sequences, steps, features) and **y**, one integer "
        "class per sequence; at least 150 sequences and 3 per class. gruq splits it 60/20/20 "
        "into train / validation / test."
    )
    up = st.file_uploader("Upload a .npz", type=["npz"], key=f"{prefix}upload")
    if up is not None:
        path = save_upload(up.name, up.getvalue())
        try:
            load_npz(path, name=up.name)  # errors name the file as the user knows it
        except GruqError as exc:
            path.unlink(missing_ok=True)
            st.error(f"This file cannot be used: {exc}")
            return refused(bool(uploaded_data()))
        st.session_state[f"{prefix}own_task"] = str(path)
    known = uploaded_data()
    if not known:
        return None
    current = st.session_state.get(f"{prefix}own_task")
    index = known.index(current) if current in known else 0
    return st.selectbox(
        "Uploaded data sets", known, index=index, format_func=lambda p: Path(p).name, key=f"{prefix}own_pick"
    )


def uploaded_data() -> list[str]:
    """The data sets uploaded before (kept under uploads/), by name."""
    uploads = uploads_dir()
    return sorted(str(p) for p in uploads.glob("*.npz")) if uploads.exists() else []


def imported_models(task: str) -> list[str]:
    """The models imported before for the data set `task`, by name."""
    folder = models_dir()
    return sorted(str(p) for p in folder.glob(f"{Path(task).stem}+*.pt")) if folder.exists() else []


def refused(earlier: bool) -> None:
    """After a refused upload: nothing is chosen; the earlier uploads, if there are any, are
    said to be kept (a first upload that fails has none to speak of)."""
    if earlier:
        st.caption("Your earlier uploads are kept: remove the refused file above (its x) to choose one of them again.")
    return None


def models_dir() -> Path:
    """Where uploaded state_dicts and their imported gruq checkpoints go: uploads/models/."""
    return uploads_dir() / "models"


def import_upload(task: str, name: str, data: bytes) -> Path:
    """Import an uploaded state_dict against the data `task` (gruq.importer); the checkpoint's path.

    The state_dict is kept under a content-hashed name and the checkpoint is named
    `<data stem>+<model stem>.pt`, so the same pair is imported once. A refusal
    (gruq's one line, naming the file as the user knows it) keeps nothing."""
    import hashlib

    from gruq.importer import import_state_dict

    folder = models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{_safe_stem(name)}-{hashlib.sha256(data).hexdigest()[:8]}"
    source, out = folder / f"{stem}.state_dict", folder / f"{Path(task).stem}+{stem}.pt"
    if out.is_file():
        return out
    fresh = not source.exists()
    if fresh:
        tmp = source.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(source)
    try:
        import_state_dict(source, task, out)
    except GruqError as exc:
        if fresh:
            source.unlink(missing_ok=True)
        raise GruqError(str(exc).replace(str(source), name).replace(str(task), Path(task).name)) from None
    return out


def own_model_picker() -> tuple[str | None, str | None]:
    """Your data (.npz) and your trained GRU's state_dict (.pt), imported by gruq.importer.

    Returns (data path, checkpoint path); the checkpoint is None until a model is
    imported for the chosen data (and after a refused upload, whose error is shown)."""
    st.markdown(
        "Save your model with `torch.save(model.state_dict(), 'model.pt')`: one `torch.nn.GRU` (1 to 4 "
        "unidirectional layers, with biases) and one `torch.nn.Linear` head on the last layer's final hidden "
        "state. First the data it reads (as your model reads it, unnormalised; **y** = the output index of each "
        "class), then the model."
    )
    task = own_task_picker(prefix="model_")
    if task is None:
        return None, None
    up = st.file_uploader("Upload your model's state_dict (.pt)", type=["pt", "pth"], key="model_upload_pt")
    if up is not None:
        import hashlib

        refusals = st.session_state.setdefault("model_refusals", {})  # not re-imported on every rerun
        key = (task, up.name, hashlib.sha256(up.getvalue()).hexdigest())
        if key not in refusals:
            try:
                with st.spinner("Importing your model: checking it against the data and calibrating it..."):
                    st.session_state["own_model"] = str(import_upload(task, up.name, up.getvalue()))
            except GruqError as exc:
                refusals[key] = str(exc)
        if key in refusals:
            st.error(f"This model cannot be used: {refusals[key]}")
            return task, refused(bool(imported_models(task)))
    known = imported_models(task)
    if not known:
        return task, None
    current = st.session_state.get("own_model")
    index = known.index(current) if current in known else 0
    chosen = st.selectbox(
        "Models imported for this data set",
        known,
        index=index,
        format_func=lambda p: Path(p).stem.partition("+")[2],
        key="own_model_pick",
    )
    return task, chosen


def _train_pid_file(task: str) -> Path:
    return uploads_dir() / f"{Path(task).stem}.train.pid"


def training_panel(task: str) -> None:
    """Explain that a float model is needed first, and offer to train it in the background."""
    import subprocess
    import sys

    from gruq.model import checkpoint_path
    from gruq.store import pids

    if task in TASK_LABELS:
        st.error(
            f"No trained float model for {task} at {checkpoint_path(task)}. Train it once with "
            f"`python -m gruq train --task {task}`, then reload this page."
        )
        return
    pid_file, log = _train_pid_file(task), uploads_dir() / f"{Path(task).stem}.train.log"
    pid = int(pid_file.read_text()) if pid_file.exists() else None

    @st.fragment(run_every=2.0 if pids.alive(pid) else None)
    def status() -> None:
        alive = pids.alive(pid)
        if checkpoint_path(task).is_file():
            st.rerun(scope="app")  # the launch page now finds the model
        elif alive:
            st.info("Training the float model in the background (usually under a minute)...")
        else:
            st.warning(
                "The search quantizes a trained float model, and this data set has none yet. Train one "
                "first (a GRU with 32 hidden units, in the background; the page updates when it is done)."
            )
            if pid is not None and log.exists():
                import re

                lines = [ln for ln in re.split(r"[\r\n]+", log.read_text(errors="replace")) if ln.strip()]
                st.error(f"The last training attempt stopped: {lines[-1] if lines else 'no output'}")
            if st.button("Train the float model", key="train_own"):
                uploads_dir().mkdir(parents=True, exist_ok=True)
                with open(log, "ab") as out:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "gruq", "train", "--task", task],
                        cwd=ROOT,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                pid_file.write_text(str(proc.pid))
                st.rerun(scope="app")

    status()


# ---------------------------------------------------------------- cached gruq calls


def run_checkpoint(run: dict[str, Any] | None) -> str | None:
    """The float checkpoint a run quantized (an imported or stacked model), None for the task's own.

    Every page hands it on, so the shapes, baselines, rebuilt models and exports
    are those of the model the run searched."""
    return ((run or {}).get("config") or {}).get("checkpoint")


@st.cache_data(show_spinner=False)
def task_shape(task: str, checkpoint: str | None = None) -> dict:
    """The model shape of a task's model (as a dict, for the cache): the evaluator's; the task's
    own model is not loaded (see gruq.search.backend.model_shape), another checkpoint is."""
    from dataclasses import asdict

    from gruq.search.backend import model_shape

    return asdict(model_shape(task, checkpoint))


def shape_of(task: str, checkpoint: str | None = None):
    from gruq.genome import ModelShape

    return ModelShape(**task_shape(task, checkpoint))


@st.cache_data(show_spinner="Scoring the all-2-bit ... all-8-bit baselines on validation data...")
def baseline_accuracies(
    task: str, finetune_epochs: int = 0, seed: int = 0, checkpoint: str | None = None
) -> list[float]:
    """Validation accuracy of the homogeneous 2..8-bit genomes (every layer), scored by the
    same evaluator the search uses (gruq.search.backend)."""
    from gruq.genome import MAX_BITS, MIN_BITS, homogeneous
    from gruq.search.backend import default_backend
    from gruq.search.config import SearchConfig

    cfg = SearchConfig(task=task, finetune_epochs=finetune_epochs, seed=seed, checkpoint=checkpoint)
    evaluator = default_backend(cfg).evaluator
    layers = evaluator.shape.layers
    return [float(a) for a in evaluator.accuracy([homogeneous(b, layers) for b in range(MIN_BITS, MAX_BITS + 1)])]


@st.cache_data(show_spinner=False, max_entries=512)
def val_accuracy(task: str, genome: tuple[int, ...], checkpoint: str | None = None) -> float:
    """What-if scoring: one genome on the validation split (post-training quantization)."""
    from gruq.search.backend import default_backend
    from gruq.search.config import SearchConfig

    return float(default_backend(SearchConfig(task=task, checkpoint=checkpoint)).evaluator.accuracy([genome])[0])


@st.cache_data(show_spinner=False)
def split_sizes(task: str) -> dict[str, int]:
    """Sequences per split of a task: the n every accuracy on the page carries
    (empty for a task gruq cannot load, such as the tests' synthetic one)."""
    from gruq import tasks

    try:
        s = tasks.load(task).summary()
    except GruqError:
        return {}
    return {k: int(s[k]) for k in ("train", "val", "test")}


@st.cache_resource(show_spinner="Rebuilding this scheme's model...", max_entries=16)
def scheme_model(db: str, run_id: int | None, task: str, genome: tuple[int, ...], checkpoint: str | None = None):
    """(recipe, Checkpoint) of a scheme's model (gruq.scheme_model): the model behind
    run `run_id`'s numbers for it (fine-tuned weights included, checked; the run's
    config names its float checkpoint), or, with run_id None, post-training
    quantization of the float `checkpoint` (None: the task's own)."""
    from gruq.scheme_model import SchemeModel, load_from_run

    if run_id is None:
        recipe = SchemeModel(task, genome, checkpoint)
        return recipe, recipe.build()
    return load_from_run(db, run_id, genome)


def model_label(db: str, run_id: int | None, task: str, genome: tuple[int, ...], checkpoint: str | None = None) -> str:
    return scheme_model(db, run_id, task, genome, checkpoint)[0].label


@st.cache_data(show_spinner=False, max_entries=256)
def model_accuracy(
    db: str, run_id: int | None, task: str, genome: tuple[int, ...], split: str = "val", checkpoint: str | None = None
) -> float:
    """A scheme's model's accuracy on a split (the exact simulation, bit-identical to the engine)."""
    recipe, ckpt = scheme_model(db, run_id, task, genome, checkpoint)
    return float(recipe.accuracy(split, ckpt))


@st.cache_data(show_spinner="Running the integer engine on the test data...", max_entries=128)
def test_result(db: str, run_id: int | None, task: str, genome: tuple[int, ...], checkpoint: str | None = None) -> dict:
    """Test accuracy (n, 95% Wilson interval) and confusion matrix of a scheme's model from
    the integer-only engine (the reference of truth; the exported check prints the same)."""
    from gruq import engine
    from gruq.evaluate import load
    from gruq.scheme import build
    from gruq.stats import wilson_acc
    from gruq.views import confusion

    _, ckpt = scheme_model(db, run_id, task, genome, checkpoint)
    data, _ = load(task, checkpoint)
    pred = engine.predict(build(genome, ckpt.model, ckpt.calibration), data.test.X)
    labels = data.extra.get("labels")
    names = [str(v) for v in labels] if labels is not None and len(labels) == data.classes else None
    accuracy = float((pred == data.test.y).mean())
    return {
        "accuracy": accuracy,
        "ci95": wilson_acc(accuracy, len(pred)),
        "confusion": confusion(data.test.y, pred, data.classes),
        "labels": names,
        "n": int(len(pred)),
    }


@st.cache_data(show_spinner="Writing the integer model and its C kernel...", max_entries=16)
def export_zip(
    db: str,
    run_id: int | None,
    task: str,
    genome: tuple[int, ...],
    checkpoint: str | None = None,
    folder: str = "gruq_export",
) -> bytes:
    """The export (zip) of a scheme's model: the same model the page's numbers belong to,
    its files inside `folder` (the download's file name without ".zip")."""
    import tempfile

    from gruq.export import archive, export

    recipe, ckpt = scheme_model(db, run_id, task, genome, checkpoint)
    with tempfile.TemporaryDirectory(prefix="gruq-export-") as tmp:
        export(task, genome, Path(tmp) / "out", model=recipe, built=ckpt)
        return archive(Path(tmp) / "out", folder)


@st.cache_data(show_spinner="Cross-compiling for a Cortex-M4 and running it under QEMU...", max_entries=16)
def cortex_m4_costs(
    db: str, run_id: int | None, task: str, genome: tuple[int, ...], checkpoint: str | None = None
) -> dict | None:
    """The export report's "cortex_m4" record (flash, RAM, stack, instructions per
    step) of the scheme's model (`scheme_model`), or None when the Arm toolchain or
    QEMU is not installed."""
    import tempfile

    from gruq.export import export
    from gruq.export.targets import cortex_m4

    if not cortex_m4.available():
        return None
    recipe, ckpt = scheme_model(db, run_id, task, genome, checkpoint)
    with tempfile.TemporaryDirectory(prefix="gruq-m4-") as tmp:
        return export(task, genome, Path(tmp) / "out", target="cortex-m4", model=recipe, built=ckpt)["cortex_m4"]
