"""Compare: fronts of several runs on one chart, and which operators each task keeps wide."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import ui
from gruq import figures, store, views
from gruq.errors import GruqError
from gruq.genome import MAX_BITS, bops, homogeneous, size_bytes
from gruq.ops import N_OPS, layer_names
from gruq.stats import pct_ci
from gruq.views import KB

ui.setup("Compare runs")
st.title("Compare runs")
st.markdown(
    "Overlay the fronts of several runs (tasks, seeds, limits), then group the solutions they found by "
    "their bit patterns: the operators a task **keeps wide** are the ones its accuracy depends on."
)

db = ui.db_path()
try:
    runs = [r for r in ui.list_runs() if r["generations_done"] > 0]
except GruqError as exc:
    st.error(str(exc))
    st.stop()
if len(runs) < 1:
    st.info("No run has finished a generation yet. Launch some on the first page.")
    st.stop()

by_id = {r["run_id"]: r for r in runs}
# by default the latest finished runs that minimised the same thing as the newest of them:
# fronts against size and fronts against bit operations do not compare
finished = [r for r in runs if r["status"] == "finished"] or runs[:1]
default = [r["run_id"] for r in finished if r["objective"] == finished[0]["objective"]][:4]
chosen = st.multiselect(
    "Runs to compare", list(by_id), default=default, key="compare_runs", format_func=lambda i: ui.run_label(by_id[i])
)
if not chosen:
    st.info("Choose at least one run.")
    st.stop()

fronts: dict[str, pd.DataFrame] = {}
tasks_of: dict[str, str] = {}
n_val: dict[str, int | None] = {}
objectives = set()
for run_id in chosen:
    r = by_id[run_id]
    try:
        shape = ui.shape_of(r["task"], ui.run_checkpoint(r))
        cost = "bops" if r["objective"] == "bops" else "size_bytes"
        front = views.reported_front(views.run_front(views.points_frame(store.individuals(db, run_id)), cost))
    except GruqError as exc:
        st.warning(f"Run {run_id}: {exc}")
        continue
    objectives.add(r["objective"])
    full = homogeneous(MAX_BITS, shape.layers)
    front = front.assign(
        size_pct=100 * front["size_bytes"] / size_bytes(full, shape), bops_pct=100 * front["bops"] / bops(full, shape)
    )
    name = ui.run_name(r)
    fronts[name] = front
    n_val[name] = ui.split_sizes(r["task"]).get("val")  # the validation sequences behind its accuracies
    tasks_of[name] = ui.task_label(r["task"])

several_tasks = len(set(tasks_of.values())) > 1
axis = st.radio(
    "Horizontal axis",
    ["size_pct", "size_bytes", "bops_pct"],
    horizontal=True,
    # the runs' own measure by default: fronts that minimised bit operations, against bit operations
    index=2 if objectives == {"bops"} else 0 if several_tasks else 1,
    key="compare_axis",
    format_func=lambda a: {
        "size_pct": "size, % of all-8-bit (compares tasks)",
        "size_bytes": "size in kB",
        "bops_pct": "bit operations, % of all-8-bit",
    }[a],
)
if len(objectives) > 1:
    st.caption("Some of these runs minimised size and others bit operations: each front is best for its own objective.")
st.plotly_chart(figures.fronts_overlay(fronts, axis), key="compare_fronts")
empty = [name for name, f in fronts.items() if not len(f)]
if empty:
    st.caption(f"No front (no scheme met its limits): {'; '.join(empty)}. The Live run page says why.")

st.header("Which operators does each task keep wide?")
tol = st.slider(
    "Only solutions within this many accuracy points of their run's best (the useful ones)",
    0.0,
    50.0,
    5.0,
    step=0.5,
    key="compare_tol",
    help="A front also holds tiny models that have given up on accuracy; they say little about which operators matter.",
)
members = [
    (name, tuple(g), a, sz)
    for name, f in fronts.items()
    if len(f)
    for g, a, sz in zip(f["genome"], f["accuracy"], f["size_bytes"])
    if a >= f["accuracy"].max() - tol / 100 - 1e-12
]
width = len(members[0][1]) if members else N_OPS  # 17 bit widths per layer: group one layer count at a time
if any(len(m[1]) != width for m in members):
    left = sorted({name for name, g, _, _ in members if len(g) != width})
    members = [m for m in members if len(m[1]) == width]
    st.caption(
        f"Grouped: the {width // N_OPS}-layer models only. Left out (another layer count, so other operators): "
        + "; ".join(left)
    )
if len(members) < 2:
    st.info("Not enough solutions to group yet.")
    st.stop()
k = st.slider(
    f"Number of groups (hierarchical clustering of the {width}-bit-width vectors)",
    1,
    min(8, len(members)),
    min(3, len(members)),
    key="compare_k",
)
names = [f"{name.split(' · ')[0]} · {pct_ci(a, n_val[name], '%')} · {sz / KB:.2f} kB" for name, _, a, sz in members]
cl = views.cluster_genomes([m[1] for m in members], names, k)
st.plotly_chart(figures.bits_heatmap(cl.genomes, cl.names, cl.labels), key="compare_heatmap")
st.caption(
    "Each row is one solution from a front, each column an operator; colour = bits (red narrow, blue wide). "
    "Rows are grouped by cluster (c1 = widest on average); black lines separate the clusters. "
    "The accuracies in the row names, with their 95% intervals, are on validation data: "
    + "; ".join(
        f"{ui.split_sizes(r['task']).get('val', '?')} sequences for {ui.task_label(r['task'])}"
        for r in {by_id[i]["task"]: by_id[i] for i in chosen}.values()
    )
    + ". One sequence is 100/n accuracy points: a difference of a few sequences is noise."
)

st.subheader("Mean bits per operator")
per_task = {}
for task in sorted(set(tasks_of.values())):
    gs = [m[1] for m in members if tasks_of[m[0]] == task]
    if gs:
        per_task[task] = pd.Series(pd.DataFrame(gs, columns=list(layer_names(width // N_OPS))).mean(), name=task)
# operators as rows, so that the table fits any width; coloured like the heatmap (no matplotlib needed)
mean_table = pd.concat([pd.DataFrame(per_task).T, cl.mean_bits]).T
st.dataframe(
    mean_table.style.format("{:.1f}").map(figures.bit_css),
    key="compare_means",
    height=35 * (len(mean_table) + 1) + 3,
)
for task in per_task:
    gs = [m[1] for m in members if tasks_of[m[0]] == task]
    wide = ", ".join(f"{op} ({b:.1f})" for op, b in views.wide_operators(gs))
    st.markdown(f"- **{task}** keeps widest: {wide}")
