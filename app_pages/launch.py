"""Launch: choose a task, an objective, limits and a budget; start a search.

This page (the default page of app.py) collects the
settings, checks them with gruq's own validation and starts a background run
process that writes to the run store; the Live run page then follows it.
"""

from __future__ import annotations

import streamlit as st

import ui
from gruq.errors import GruqError, SettingError
from gruq.genome import MAX_BITS, MIN_BITS
from gruq.ops import DESCRIPTION, LINEAR, OPS
from gruq.stats import pct_interval, wilson_acc
from gruq.views import KB

ui.setup("Launch a search")
st.title("gruq · find the smallest GRU that still works")
st.markdown(
    "A recurrent network (GRU) has **17 arithmetic operators** per cell. gruq gives each one its own number "
    "of bits (2 to 8) and uses a genetic algorithm to find the schemes with the **best accuracy for each model "
    "size**. Choose a task and your limits below, launch, and watch the trade-offs appear live. "
    "New to quantization? Start with the **Learn** page."
)


@st.cache_data(show_spinner="Loading the task...")
def task_facts(task: str, checkpoint: str | None = None) -> dict:
    """Summary, model shape and size bounds of a task with its float model (`checkpoint`,
    None: the task's own, whose shape is known without reading it)."""
    from dataclasses import asdict

    from gruq import tasks
    from gruq.genome import homogeneous, size_bytes
    from gruq.search.backend import model_shape

    data = tasks.load(task)
    shape = model_shape(task, checkpoint) if checkpoint else data.shape
    return {
        **data.summary(),
        "shape": asdict(shape),
        "hidden": shape.hidden,
        "layers": shape.layers,
        "size8": size_bytes(homogeneous(MAX_BITS, shape.layers), shape),
        "size2": size_bytes(homogeneous(MIN_BITS, shape.layers), shape),
    }


def shape_of(facts: dict):
    """The model shape of the chosen task and float model (stacked layers included)."""
    from gruq.genome import ModelShape

    return ModelShape(**facts["shape"])


@st.cache_data(show_spinner=False)
def float_accuracy(task: str, path: str, mtime_ns: int) -> dict:
    """The float model's accuracies its checkpoint records (cached per file version): validation,
    and for an imported model, test and the user's own model on the same raw test sequences."""
    from pathlib import Path

    from gruq.model import load_checkpoint

    meta = load_checkpoint(task, Path(path)).meta
    return {k: meta.get(k) for k in ("val_accuracy", "test_accuracy", "source_test_accuracy")}


def checkpoint_facts(task: str, checkpoint: str | None = None) -> dict:
    """Whether the task has a float model (`checkpoint`, else its own), and its accuracy. It
    needs torch (gruq.model), whose import is most of a cold start: the page asks last."""
    from pathlib import Path

    from gruq.model import checkpoint_path

    path = Path(checkpoint) if checkpoint else checkpoint_path(task)
    if not path.is_file():
        return {"trained": False, "float_val": None}
    try:
        acc = float_accuracy(task, str(path), path.stat().st_mtime_ns)
        return {"trained": True, "float_val": acc["val_accuracy"], "imported": acc}
    except GruqError as exc:
        st.error(str(exc))
        return {"trained": False, "float_val": None}


# ---------------------------------------------------------------- task

st.header("1 · Task")
from gruq import tasks as _tasks  # noqa: E402  (cheap: no data is loaded here)

OWN = "my own data (.npz)"
MODEL = "my own trained GRU (.pt) and its data (.npz)"
STACKED = "vowels, two stacked layers"
CHOICES = {
    OWN: "your own data: upload a .npz with X (N, T, F) and y (N); gruq trains the float GRU",
    MODEL: "your own trained GRU: upload its PyTorch state_dict (.pt) with its data (.npz); stacked layers welcome",
    STACKED: "vowels with the shipped two-layer GRU (34 operators: 17 per layer)",
}
choice = st.radio(
    "Which sequences should the GRU classify?",
    [*_tasks.NAMES, OWN, MODEL, STACKED],
    index=1,
    key="task_choice",
    format_func=lambda n: ui.TASK_LABELS.get(n) or CHOICES[n],
)
task: str | None = choice
checkpoint: str | None = None  # the float model to quantize when it is not the task's own
if choice == OWN:
    task = ui.own_task_picker()
elif choice == MODEL:
    task, checkpoint = ui.own_model_picker()
elif choice == STACKED:
    from gruq.model import checkpoint_path

    task, checkpoint = "vowels", str(checkpoint_path("vowels", layers=2))
need_model = choice == MODEL and checkpoint is None  # the data are there, the model not (yet)
facts = None
if task:
    try:
        facts = task_facts(task, checkpoint)
    except GruqError as exc:
        st.error(str(exc))
if facts:
    c = st.columns(4)
    c[0].metric("steps x features", f"{facts['steps']} x {facts['features']}")
    c[1].metric("classes", facts["classes"])
    # until the user's model is uploaded, its shape (and so its size) is not known
    c[2].metric("model size, all 8-bit", "—" if need_model else f"{facts['size8'] / KB:.2f} kB")
    float_slot = c[3].empty()
    float_slot.metric("float accuracy (validation)", "…", help="reading the float model...")
    gru = (
        "Your model's layers, hidden units and sizes show once it is imported"
        if need_model
        else f"{facts['layers']} stacked GRU layers of {facts['hidden']} hidden units (17 operators each)"
        if facts["layers"] > 1
        else f"GRU with {facts['hidden']} hidden units"
    )
    st.caption(
        f"Sequences: {facts['train']} to train, {facts['val']} to score schemes during the search "
        f"(validation), {facts['test']} held out to report (test). {gru}."
    )
    training_slot = st.container()

# ---------------------------------------------------------------- objective and limits

st.header("2 · What to minimise, and your limits")
objective = st.radio(
    "Beside accuracy, minimise",
    ["size", "bops"],
    horizontal=True,
    key="objective",
    format_func=lambda o: {
        "size": "model size (bytes of weights)",
        "bops": "bit operations per sequence (BOPs: compute cost)",
    }[o],
)
c1, c2 = st.columns(2)
with c1:
    size_mode = st.radio("Maximum model size", ["none", "kB", "% of all-8-bit"], horizontal=True, key="size_mode")
    max_kb = max_pct = reach = None
    if size_mode == "kB":
        default = round((facts["size8"] * 0.6 if facts else 10_000) / KB, 2)
        max_kb = st.number_input(
            "Largest size allowed (kB = 1000 bytes)",
            min_value=0.01,
            value=default,
            step=0.1,
            format="%.2f",
            key="max_kb",
        )
        reach = st.empty()  # filled below, once the allowed bits per operator are known
    elif size_mode == "% of all-8-bit":
        max_pct = st.number_input(
            "Largest size allowed (% of the all-8-bit model)",
            min_value=1.0,
            max_value=100.0,
            value=60.0,
            step=1.0,
            key="max_pct",
        )
        reach = st.empty()
with c2:
    min_acc_pct = st.number_input(
        "Minimum accuracy on validation data (%; 0 = none)",
        min_value=0.0,
        max_value=100.0,
        value=0.0,
        step=1.0,
        key="min_acc",
    )
    floor_slot = st.empty()

if facts and not need_model:  # the sizes a limit can take (of the model to quantize)
    # also loads the browser's chart library now, not when the first front arrives (seconds on a busy machine)
    from gruq import figures
    from gruq.genome import homogeneous, size_bytes

    shape = shape_of(facts)
    sizes = {b: size_bytes(homogeneous(b, shape.layers), shape) for b in range(MIN_BITS, MAX_BITS + 1)}
    with c1:
        st.plotly_chart(
            figures.uniform_sizes_chart(sizes),
            key="uniform_sizes",
            config={"displayModeBar": False},
        )

LAYERS = facts["layers"] if facts else 1


def range_sliders(prefix: str) -> dict[str, tuple[int, int]]:
    """17 range sliders, keyed range_<prefix><op>: prefix "" for every layer, "l1." for layer 1 alone."""
    out = {}
    cols = st.columns(3)
    for i, name in enumerate(OPS):
        kind = "weights" if i in LINEAR else "output"
        with cols[i % 3]:
            out[prefix + name] = st.slider(
                f"{name} · {DESCRIPTION[name]} ({kind})",
                MIN_BITS,
                MAX_BITS,
                (MIN_BITS, MAX_BITS),
                key=f"range_{prefix}{name}",
            )
    return out


with st.expander("Allowed bits per operator (optional): narrow a range, or pin an operator to one width"):
    st.caption(
        "Each operator of the GRU cell (see the Learn page). Thick-bordered ones in the diagram, the "
        "linear operators, hold the weights: only their bits change the model's size. "
        "Setting both ends to the same value pins the operator."
        + (
            " In a stacked model, the first tab sets an operator in every layer; a layer's own tab, where "
            "narrowed, overrides it for that layer."
            if LAYERS > 1
            else ""
        )
    )
    if LAYERS == 1:
        ranges = range_sliders("")
        layer_ranges: dict[str, tuple[int, int]] = {}
    else:
        tabs = st.tabs(["every layer", *(f"layer {k}" for k in range(LAYERS))])
        with tabs[0]:
            ranges = range_sliders("")
        layer_ranges = {}
        for k in range(LAYERS):
            with tabs[k + 1]:
                picked = range_sliders(f"l{k}.")
                layer_ranges.update({n: r for n, r in picked.items() if r != (MIN_BITS, MAX_BITS)})


def gene_bounds() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Lowest and highest width of every gene (17 per layer): every-layer ranges, then a layer's own."""
    bounds = [layer_ranges.get(f"l{k}.{op}", ranges[op]) for k in range(LAYERS) for op in OPS]
    return tuple(lo for lo, _ in bounds), tuple(hi for _, hi in bounds)


def reachable() -> str:
    """The sizes the allowed bits can reach, naming the operators whose range raises the smallest."""
    from gruq.genome import size_bytes
    from gruq.ops import layer_names

    shape = shape_of(facts)
    low, high = gene_bounds()
    lo, hi = size_bytes(low, shape), size_bytes(high, shape)
    raised = [n for i, n in enumerate(layer_names(LAYERS)) if i % len(OPS) in LINEAR and low[i] > MIN_BITS]
    why = f" (raised by {', '.join(raised)})" if raised else " (every operator at 2 bits)"
    if size_mode == "kB":
        return f"Reachable with the allowed bits: from {lo / KB:.2f} kB{why} to {hi / KB:.2f} kB."
    s8 = facts["size8"]
    return (
        f"Reachable with the allowed bits: {100 * lo / s8:.0f}%{why} to {100 * hi / s8:.0f}% "
        "(biases and the classifier are always kept)."
    )


if reach is not None and facts and not need_model:
    reach.caption(reachable())
if all(lo == hi for lo, hi in zip(*gene_bounds())):
    st.warning(
        "Every operator is pinned to one width: there is only one scheme, so there is nothing to search. "
        'Widen the range of at least one operator (open "Allowed bits per operator").'
    )

# ---------------------------------------------------------------- budget

st.header("3 · Budget")
c = st.columns(4)
pop = c[0].number_input("Population (schemes per generation)", min_value=4, max_value=512, value=16, step=4, key="pop")
gens = c[1].number_input("Generations (the first included)", min_value=1, max_value=500, value=8, step=1, key="gens")
ft = c[2].number_input(
    "Fine-tuning epochs per scheme (0 = none, much faster)", min_value=0, max_value=50, value=0, key="ft"
)
seed = c[3].number_input("Seed (same seed, same result)", min_value=0, max_value=2**31 - 1, value=0, key="seed")
st.caption(
    f"The search will score at most {int(pop) * int(gens)} schemes. On vowels a generation of 16 takes about "
    "a second without fine-tuning; larger tasks take longer."
)
with st.expander("Where to compute (optional): a Dask cluster"):
    from gruq.store import settings

    scheduler = st.text_input(
        "Dask scheduler address (empty: this machine)",
        value=settings.load(ui.db_path()).get("scheduler", ""),
        placeholder="tcp://HOST:8786, or local:2 for two worker processes here",
        key="scheduler",
        help="Start `dask scheduler` on one machine and `dask worker tcp://HOST:8786` on others that have gruq "
        "installed (see the README). The result is the same wherever it computes.",
    ).strip()

# ---------------------------------------------------------------- check and launch


def build_config() -> dict:
    cfg: dict = {
        "task": task,
        "pop": int(pop),
        "gens": int(gens),
        "seed": int(seed),
        "objective": objective,
        "finetune_epochs": int(ft),
    }
    if max_kb is not None:
        cfg["max_size_kb"] = float(max_kb)
    if max_pct is not None:
        cfg["max_size_pct"] = float(max_pct)
    if min_acc_pct > 0:
        cfg["min_accuracy"] = float(min_acc_pct) / 100.0
    if scheduler:
        cfg["scheduler"] = scheduler
    if checkpoint:
        cfg["checkpoint"] = checkpoint
    every = {}  # lin_xr: every layer; once a layer has its own, l0.lin_xr ... l{L-1}.lin_xr (each layer's)
    for op in OPS:
        own = {k: layer_ranges[f"l{k}.{op}"] for k in range(LAYERS) if f"l{k}.{op}" in layer_ranges}
        every.update({f"l{k}.{op}": own.get(k, ranges[op]) for k in range(LAYERS)} if own else {op: ranges[op]})
    cfg["bits_ranges"] = {n: [lo, hi] for n, (lo, hi) in every.items() if lo < hi and (lo, hi) != (MIN_BITS, MAX_BITS)}
    cfg["pins"] = {n: lo for n, (lo, hi) in every.items() if lo == hi}
    return cfg


# the form's name for each search setting gruq may refuse (SettingError.setting)
FIELDS = {
    "max_size_kb": "The largest size allowed",
    "max_size_pct": "The largest size allowed",
    "max_size_bytes": "The largest size allowed",
}


def form_wording(exc: SettingError) -> str:
    """gruq's refusal of a setting, in the words of this form (the CLI words it with its flags)."""
    f = exc.facts
    if exc.setting == "pins":
        return "Every operator is pinned to one width: there is only one scheme, so there is nothing to search."
    if exc.setting == "scheduler" and "problem" in f:
        return (
            f'The Dask scheduler address (under "Where to compute") {f["problem"]}. '
            "Leave it empty to compute on this machine."
        )
    if "smallest_bytes" not in f:
        return str(exc)
    asked = f"{f['max_size_bytes'] / KB:.2f} kB"
    if exc.setting == "max_size_pct":
        asked = f"{cfg.get('max_size_pct'):g}% of all-8-bit ({asked})"
    text = (
        f"{FIELDS.get(exc.setting, exc.setting)}, {asked}, is below the smallest model these bits allow, "
        f"{f['smallest_bytes'] / KB:.2f} kB"
    )
    narrowed = f.get("narrowed") or {}
    if narrowed:
        names = ", ".join(
            f"{op} pinned at {lo}" if lo == hi else f"{op} at least {lo}" for op, (lo, hi) in narrowed.items()
        )
        return f"{text}, because of {names}. Allow lower bits for these operators, or a larger size."
    return f"{text} (every operator at 2 bits). Allow a larger size."


def check(cfg: dict) -> list[str]:
    """What cannot work, in words (empty if the run can start): gruq's own checks."""
    from gruq.search.config import SearchConfig
    from gruq.search.constraints import resolve

    if not cfg["task"]:
        return ["Choose a task (or upload your data) first."]
    if need_model:
        return ["Upload your model's state_dict (.pt) to go with these data (or choose one imported before)."]
    problems = []
    try:
        sc = SearchConfig.from_dict(cfg)
        if facts:
            resolve(sc, shape_of(facts))
    except SettingError as exc:
        problems.append(form_wording(exc))
    except GruqError as exc:
        problems.append(str(exc))
    if facts and not facts["trained"]:
        problems.append("The search needs the trained float model of this task first (see above).")
    return problems


# ---------------------------------------------------------------- the float model (needs torch: last)

if facts and task and not need_model:
    facts.update(checkpoint_facts(task, checkpoint))
    if facts["float_val"] is None:
        float_slot.metric("float accuracy (validation)", "not trained")
    else:
        with float_slot.container():  # the accuracy with its n and 95% interval, as everywhere
            st.metric("float accuracy (validation)", f"{100 * facts['float_val']:.1f}%")
            st.caption(
                f"{facts['val']} sequences, 95% interval {pct_interval(wilson_acc(facts['float_val'], facts['val']))}"
            )
    if not facts["trained"]:
        with training_slot:
            ui.training_panel(task)
    imported = facts.get("imported") or {}
    if imported.get("source_test_accuracy") is not None:
        training_slot.caption(
            f"Imported: on the {facts['test']} test sequences, your model scores "
            f"{100 * imported['source_test_accuracy']:.2f}% and gruq's float copy of it "
            f"{100 * imported['test_accuracy']:.2f}% (equal when the import is exact; 95% interval "
            f"{pct_interval(wilson_acc(imported['test_accuracy'], facts['test']))})."
        )
    if facts["float_val"] is not None and min_acc_pct > 100 * facts["float_val"]:
        floor_slot.warning(
            f"The unquantized model itself scores {100 * facts['float_val']:.1f}% on validation data: "
            "a higher floor will probably leave no solution."
        )
elif facts and need_model:
    float_slot.metric("float accuracy (validation)", "no model yet", help="upload your model's state_dict above")

st.header("4 · Launch")
cfg = build_config()
try:
    runs = ui.list_runs()
    store_problems = []
except GruqError as exc:  # a store gruq cannot read: said once, and nothing is launched into it
    runs, store_problems = [], [str(exc)]
problems = check(cfg) + store_problems
for p in problems:
    st.error(p)
if not problems:
    st.success(
        "These settings can run. The search works in the background: you can close the browser and "
        "come back; runs are kept in " + str(ui.db_path()) + "."
    )
if st.button("Launch the search", type="primary", disabled=bool(problems), key="launch"):
    from gruq.search.launch import launch
    from gruq.store import settings

    try:
        with st.spinner("Starting the run..."):
            run_id = launch(ui.db_path(), cfg)
    except GruqError as exc:
        st.error(str(exc))
    else:
        settings.save(ui.db_path(), scheduler=scheduler)  # remembered for the next launch
        st.session_state["run_id"] = run_id
        st.session_state["launched"] = run_id
        st.switch_page("app_pages/live_run.py", query_params={"run": str(run_id)})

if runs:
    st.divider()
    st.subheader("Earlier runs")
    st.caption("Open one on the Live run page; runs survive a reload or a restart of this app.")
    st.dataframe(
        [
            {
                "run": r["run_id"],
                "task": ui.task_label(r["task"]),
                "status": r["status"],
                "generations": f"{r['generations_done']}/{r['generations']}",
                "schemes scored": r["evaluations"],
                "started": r["created_at"],
            }
            for r in runs[:20]
        ],
        hide_index=True,
    )
