"""Explorer: one quantization scheme operator by operator, and a what-if editor."""

from __future__ import annotations

import json

import streamlit as st

import ui
from gruq import figures, store, views
from gruq.errors import GruqError
from gruq.genome import MAX_BITS, MIN_BITS, bops, expand, homogeneous, size_bytes
from gruq.ops import DESCRIPTION, LINEAR, N_OPS, OPS, layer_names
from gruq.stats import pct_ci, pct_interval, wilson_acc
from gruq.views import KB

ui.setup("Explorer")
st.title("Explorer: one scheme, operator by operator")
st.markdown(
    "Pick a solution (from a run's front, or the same bits everywhere), then **move any operator's bits** "
    "to see what happens to accuracy and size. Everything below follows the bits you set."
)

db = ui.db_path()
try:
    runs = ui.list_runs()
except GruqError as exc:
    st.error(str(exc))
    runs = []

clicked = None
if st.query_params.get("bits"):
    try:
        clicked = views.genome_from(st.query_params["bits"])
    except GruqError as exc:
        st.warning(f"Ignoring the bits in the address: {exc}")

# ---------------------------------------------------------------- where the scheme comes from

options: list[tuple[str, tuple[int, ...]]] = []
front = None
run = None
scored: dict[tuple[int, ...], dict] = {}  # genome -> the run's row: the run has a model for these
c1, c2 = st.columns(2)
with c1:
    if runs:
        run = ui.choose_run(runs, key="explorer_run")
        task = run["task"]
    else:
        from gruq import tasks as _tasks

        task = st.selectbox(
            "Task", list(_tasks.NAMES), index=1, format_func=lambda n: ui.TASK_LABELS[n], key="explorer_task"
        )
if run is not None:
    try:
        points = views.points_frame(store.individuals(db, run["run_id"]))
        cost = views.cost_of(run["objective"])
        front = views.run_front(points, cost)  # the same front (and CSV) as the Live page
        scored = {tuple(r["genome"]): r for r in points.to_dict("records")}
    except GruqError as exc:
        st.error(str(exc))
        front = None
checkpoint = ui.run_checkpoint(run)  # the float model the run searched (None: the task's own)
try:
    shape = ui.shape_of(task, checkpoint)
except GruqError as exc:
    st.error(str(exc))
    st.stop()
layers, names = shape.layers, layer_names(shape.layers)  # 17 genes per layer, l0.lin_xr ... when stacked
if clicked is not None and len(clicked) in (N_OPS, N_OPS * layers):
    options.append(("the scheme you opened (its bits are in the address)", expand(clicked, layers)))
elif clicked is not None:
    st.warning(f"Ignoring the bits in the address: {len(clicked)} widths, but this model has {N_OPS * layers}.")


n = ui.split_sizes(task)  # the validation sequences behind every accuracy below
if front is not None:  # each member's reported model (after the final fine-tuning if it had one), as Live shows it
    models = views.front_models(front, run["config"], task)
    for row, label in zip(views.reported_front(front).to_dict("records"), models):
        accuracy = pct_ci(float(row["accuracy"]), n.get("val"), "%")  # with its 95% interval, as every accuracy
        options.append(
            (f"front: {accuracy} validation ({label}) at {views.format_cost(row[cost], cost)}", tuple(row["genome"]))
        )
for b in range(MAX_BITS, MIN_BITS - 1, -1):
    options.append((f"all {b}-bit", homogeneous(b, layers)))
with c2:
    labels = [o[0] for o in options]
    start_label = st.selectbox("Start from", labels, index=0, key=f"start_{task}_{run['run_id'] if run else ''}")
start = dict(options)[start_label]

# ---------------------------------------------------------------- what-if sliders

source = (task, checkpoint, start)
if st.session_state.get("whatif_source") != source or any(f"wi_{n}" not in st.session_state for n in names):
    for name, b in zip(names, start):
        st.session_state[f"wi_{name}"] = int(b)
    st.session_state["whatif_source"] = source


def sliders(layer: int) -> None:
    """The 17 sliders of one layer's operators (keys wi_<gene name>: wi_lin_xr, or wi_l1.lin_xr when stacked)."""
    cols = st.columns(6)
    for i, op in enumerate(OPS):
        with cols[i % 6]:
            st.slider(
                f"{op}{' (weights)' if i in LINEAR else ''}",
                MIN_BITS,
                MAX_BITS,
                key=f"wi_{names[layer * N_OPS + i]}",
                help=f"{DESCRIPTION[op]}: its bits set the {'weights' if i in LINEAR else 'output'}",
            )


with st.container(border=True):
    h1, h2 = st.columns([4, 1])
    h1.subheader("What if? Set each operator's bits")
    if h2.button("Back to the start", key="whatif_reset"):
        for name, b in zip(names, start):
            st.session_state[f"wi_{name}"] = int(b)
        st.rerun()
    if layers == 1:
        sliders(0)
    else:
        st.caption(f"This model stacks {layers} GRU layers: 17 operators each, one tab per layer.")
        for k, tab in enumerate(st.tabs([f"layer {k}" for k in range(layers)])):
            with tab:
                sliders(k)
genome = tuple(int(st.session_state[f"wi_{name}"]) for name in names)
edited = genome != tuple(start)

# ---------------------------------------------------------------- scores

# Which model the numbers belong to: the run's own model of a scheme it scored (fine-tuned
# weights included: gruq.scheme_model), else post-training quantization of the float model.
run_id = run["run_id"] if run is not None else None
source = run_id if genome in scored else None
start_source = run_id if tuple(start) in scored else None
full = homogeneous(MAX_BITS, layers)
full_source = run_id if full in scored else None
size, size8 = size_bytes(genome, shape), size_bytes(full, shape)
ops_, ops8 = bops(genome, shape), bops(full, shape)
val = val_start = val8 = test = None
label, kind8, swapped8, delta = "post-training", "post-training", False, None


def reference(run_source: int | None, g: tuple[int, ...]) -> tuple[float, str, bool]:
    """What to set this scheme's accuracy against: `g`'s validation accuracy, its model, and
    whether that is not the model the run reported for `g`. A post-training scheme is set
    against post-training quantization of `g` (cheap), not against the run's fine-tuned model
    of it: that difference would read as the cost of the edit. Otherwise `g`'s own model."""
    kind = ui.model_label(str(db), run_source, task, g, checkpoint)
    if kind != label and label == "post-training":
        return ui.model_accuracy(str(db), None, task, g, "val", checkpoint), label, True
    return ui.model_accuracy(str(db), run_source, task, g, "val", checkpoint), kind, False


with ui.explained():
    with st.spinner("Scoring on validation data..."):
        label = ui.model_label(str(db), source, task, genome, checkpoint)
        val = ui.model_accuracy(str(db), source, task, genome, "val", checkpoint)
        val_start, start_kind, swapped_start = reference(start_source, tuple(start))
        val8, kind8, swapped8 = reference(full_source, full)
c = st.columns(4)
if edited and val is not None and val_start is not None:
    like = " (both post-training)" if swapped_start else "" if start_kind == label else f" (start: {start_kind})"
    delta = f"{100 * (val - val_start):+.1f} pp vs start{like}"
c[0].metric(
    "accuracy, validation",
    f"{100 * val:.1f}%" if val is not None else "—",
    delta=delta,
    help=(
        f"{n['val']} validation sequences, 95% interval {pct_interval(wilson_acc(val, n['val']))}; "
        f"all-8-bit: {100 * val8:.1f}% ({kind8})"
        if val is not None and val8 is not None
        else None
    ),
)
test_slot = c[1].empty()  # filled last: the integer engine on test data takes longest
test_slot.metric("accuracy, test (integer engine)", "…", help="computing...")
c[2].metric(
    "model size",
    f"{size / KB:.2f} kB",
    delta=f"{-100 * (1 - size / size8):.0f}% vs all-8-bit",
    delta_color="inverse" if size < size8 else "off",
)
c[3].metric(
    "bit operations per sequence",
    f"{ops_ / 1e6:.2f} M",
    delta=f"{-100 * (1 - ops_ / ops8):.0f}% vs all-8-bit",
    delta_color="inverse" if ops_ < ops8 else "off",
)


def val_n(accuracy: float) -> str:
    """A validation accuracy's n and 95% interval, as every accuracy on the page carries them."""
    return f"n={n['val']}, 95% interval {pct_interval(wilson_acc(accuracy, n['val']))}"


if source is not None:
    whose = (
        "the one on the run's front"
        if bool(scored[genome].get("on_front"))
        else "the one the run scored for these bits (they are not on its front)"
    )
    st.markdown(
        f"**Model: {label}**, the one run {run_id} reported for these bits: its validation accuracy "
        f"**{100 * val:.1f}%** ({val_n(val)}) is {whose}, and the C model you download below is this model."
        if val is not None
        else f"**Model: {label}** (run {run_id})."
    )
else:
    scored_val = f": validation accuracy **{100 * val:.1f}%** ({val_n(val)})" if val is not None else ""
    st.markdown(
        f"**Model: {label}.** Run {run_id} never scored these bits, so they are shown after post-training "
        f"quantization of the float model, without the run's fine-tuning{scored_val}."
        if run is not None
        else f"**Model: {label}** quantization of the float model{scored_val}."
    )
if val is not None and val8 is not None:
    if views.cost_of(run["objective"] if run is not None else None) == "bops":  # speak of what the run minimised
        cost8 = f"{ops8 / 1e6:.2f} M bit operations per sequence"
        saving = (
            f"needs {100 * (1 - ops_ / ops8):.0f}% fewer bit operations (at most "
            f"{100 * (1 - bops(homogeneous(MIN_BITS, layers), shape) / ops8):.0f}%, with 2 bits everywhere)"
        )
    else:
        cost8 = f"{size8 / KB:.2f} kB"
        saving = (
            f"is {100 * (1 - size / size8):.0f}% smaller (at most "
            f"{100 * (1 - size_bytes(homogeneous(MIN_BITS, layers), shape) / size8):.0f}% is possible: biases "
            "and the classifier are always kept)"
        )
    st.caption(
        f"The all-8-bit model ({kind8}{', like this scheme' if swapped8 else ''}): {100 * val8:.1f}% on "
        f"validation data ({val_n(val8)}), {cost8}. This scheme is {100 * (val - val8):+.1f} points from it "
        f"(one validation sequence is {100 / n['val']:.1f} points) and {saving}."
    )

for k, fig in enumerate(figures.layer_diagrams(genome)):  # one cell per layer
    st.plotly_chart(fig, key="explorer_cell" if k == 0 else f"explorer_cell_{k}", config={"displayModeBar": False})

c1, c2 = st.columns([11, 9])
with c1:
    st.markdown("**Bits per operator**" + (", layer by layer" if layers > 1 else ""))
    if layers == 1:
        table = views.genome_table(genome, shape).drop(columns=["#", "layer", "bytes at 8 bits"])
        config = {
            "weight bytes": st.column_config.NumberColumn("bytes", format="%.0f"),
            "bits set": st.column_config.TextColumn("sets the"),
        }
    else:
        table = views.layer_bits_table(genome, shape)
        config = {c: st.column_config.NumberColumn(c, format="%.0f") for c in table.columns if c.endswith("bytes")}
    st.dataframe(table, hide_index=True, key="explorer_table", height=35 * 18 + 3, column_config=config)
with c2:
    st.markdown("**Where the bytes go** (weights of the six linear operators, and the part every scheme pays)")
    eight = views.size_breakdown(full, shape)
    st.plotly_chart(
        figures.size_bars(views.size_breakdown(genome, shape), eight),
        key="explorer_sizes",
        config={"displayModeBar": False},
    )
with ui.explained():
    test = ui.test_result(str(db), source, task, genome, checkpoint)
test_slot.metric(
    "accuracy, test (integer engine)",
    f"{100 * test['accuracy']:.1f}%" if test else "—",
    help=(
        f"Integer-only inference of the {label} model on {test['n']} held-out test sequences, 95% interval "
        f"{pct_interval(test['ci95'])}: the numbers a chip would produce."
        if test
        else None
    ),
)
if test:
    st.markdown(
        f"Test accuracy of this model (integer engine): **{100 * test['accuracy']:.2f}%** "
        f"(95% interval {pct_interval(test['ci95'])}, n={test['n']}); the exported check program prints the same."
    )
if test:
    c1, c2 = st.columns([11, 9])
    with c1:
        st.markdown(
            f"**Confusion matrix on test data** ({test['n']} sequences never used by the search; "
            "the diagonal counts the right answers)"
        )
        st.plotly_chart(
            figures.confusion_chart(test["confusion"], test["labels"]),
            key="explorer_cm",
            config={"displayModeBar": False},
        )
    with c2:
        st.markdown("**How to read this**")
        st.markdown(
            "- Red boxes in the diagram are narrow (2-3 bits), blue ones wide (7-8 bits).\n"
            "- Only the six thick-bordered **linear** operators store weights, so only they change the size; "
            "the others change the arithmetic, and so the accuracy and the bit operations.\n"
            "- Test accuracy comes from the integer-only engine, the same arithmetic a microcontroller runs; "
            "validation accuracy is what the search ranked schemes by.\n"
            "- Choose between schemes on validation accuracy and size, not on test accuracy: a scheme picked "
            "because its test accuracy came out best carries an optimistic test accuracy (the Reproduce page "
            "picks on a separate split for this reason)."
        )

# ---------------------------------------------------------------- downloads

st.subheader("Downloads")
d = st.columns(3)
record = {
    "task": task,
    "bits": dict(zip(names, genome)),
    "checkpoint": checkpoint,
    "genome": list(genome),
    "size_bytes": size,
    "bops": ops_,
    "model": label,
    "val_accuracy": val,
    "val_sequences": n.get("val"),
    "val_ci95": list(wilson_acc(val, n["val"])) if val is not None and n.get("val") else None,
    "test_accuracy": test["accuracy"] if test else None,
    "test_sequences": test["n"] if test else None,
    "test_ci95": list(test["ci95"]) if test else None,
}
d[0].download_button(
    "This scheme (JSON)",
    json.dumps(record, indent=1),
    file_name=views.scheme_file_name(genome, "json", run_id, task),
    mime="application/json",
    key="dl_genome",
    on_click="ignore",
)
if front is not None and len(front):
    d[1].download_button(
        "The run's front (CSV)",
        # the Live page's CSV: the reported models' numbers, their split, n, interval and model
        views.front_csv(views.reported_front(front), n.get("val"), models),
        file_name=views.front_file_name(run["run_id"], run["generations_done"]),
        mime="text/csv",
        key="dl_front",
        on_click="ignore",
    )
try:
    import gruq.export  # noqa: F401

    has_export = True
except ImportError:
    has_export = False
if has_export:
    with d[2]:
        slot = st.empty()  # the Build button, replaced by the Download button once built
        want = st.session_state.get("export_for") == (task, checkpoint, genome, source)
        if not want and slot.button(
            "Build the integer model + C code",
            key="build_export",
            help=f"The {label} model: integer model file, a C99 kernel and a check program, as a zip.",
        ):
            st.session_state["export_for"] = (task, checkpoint, genome, source)
            want = True
        if want:
            with ui.explained():
                zip_name = views.scheme_file_name(genome, "zip", run_id, task)
                data = ui.export_zip(str(db), source, task, genome, checkpoint, zip_name.removesuffix(".zip"))
                slot.download_button(
                    "Download the export (zip)",
                    data,
                    file_name=zip_name,
                    mime="application/zip",
                    key="dl_export",
                    on_click="ignore",
                )

# ---------------------------------------------------------------- on a microcontroller

st.subheader("On a microcontroller (Cortex-M4)")
if st.session_state.get("m4_for") != (task, checkpoint, genome, source) and not st.button(
    "Measure on a Cortex-M4 (QEMU)",
    key="measure_m4",
    help="Cross-compiles the C kernel for a Cortex-M4 and runs it on qemu-system-arm's mps2-an386 board.",
):
    st.caption("Flash, RAM, stack and instructions per time step of this scheme's C kernel on a Cortex-M4.")
else:
    st.session_state["m4_for"] = (task, checkpoint, genome, source)
    with ui.explained():
        m4 = ui.cortex_m4_costs(str(db), source, task, genome, checkpoint)
        if m4 is None:
            st.info(
                "Needs Debian's gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm "
                "(`scripts/setup --cortex-m4` installs them)."
            )
        else:
            m = st.columns(5)
            m[0].metric("flash", f"{m4['flash_bytes'] / KB:.2f} kB", help="kernel code, tables and parameters")
            m[1].metric("static RAM", f"{m4['ram_bytes']} B")
            m[2].metric("stack", f"{m4['stack_bytes']} B", help="deepest call chain, from GCC's -fstack-usage")
            m[3].metric("instructions per step", f"{m4['instructions_per_step']:,.0f}")
            m[4].metric("instructions per MAC", f"{m4['instructions_per_mac']:.2f}")
            st.caption(
                f"{m4['macs_per_step']:,} multiply-accumulates per step. Instructions counted by QEMU "
                "(-icount), not cycles of real silicon (no wait states or stalls); arm-none-eabi-gcc -O2."
            )
            if "unpacked" in m4:
                u = m4["unpacked"]
                st.caption(
                    f"With weights stored one byte each (-DGRUQ_WEIGHTS_UNPACKED=1): {u['flash_bytes'] / KB:.2f} kB "
                    f"of flash, {u['instructions_per_step']:,.0f} instructions per step."
                )
