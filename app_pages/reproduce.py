"""Reproduce: the published claim on the four tasks, read from reports/ (made by `gruq reproduce`)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

import ui
from gruq.errors import GruqError
from gruq.report import FITNESS_NAMES, command_line, figure_paths
from gruq.reproduce import load_summary, load_task

ui.setup("Reproduce")
st.title("Reproduce: mixed against homogeneous precision")
REPORTS = Path(os.environ.get("GRUQ_REPORTS", ui.ROOT / "reports"))

try:
    summary = load_summary(REPORTS)
except GruqError as exc:
    st.info(f"{exc}. The report is made on the command line; it takes up to an hour.")
    st.stop()

b = summary["budget"]
st.markdown(
    "Does giving each GRU operator its own bit width beat using the same width everywhere? Per task and seed, an "
    "NSGA-II search ranks schemes on **validation** data; the front and the all-2-bit ... all-8-bit models get the "
    "same fine-tuning; the pick (the smallest within 0.5 pp of all-8-bit) is made on the **select** half of the test "
    "split, and the figures below are on the other, **holdout** half, never used to choose. With both search "
    "fitnesses (post-training accuracy, accuracy after one fine-tuning epoch, at equal time), the one whose pick is "
    "smaller on select is used (reports/README.md compares them). "
    f"Made with `{command_line(b, source=summary.get('source'))}` in **{summary['wall_seconds'] / 60:.1f} min**."
)
rows = []
for task, t in summary["tasks"].items():
    for s in t["seeds"]:
        p = s["pick"]
        rows.append(
            {
                "task": task,
                "seed": s["seed"],
                "reduction %": round(p["reduction"] * 100, 1),
                "size kB": p["size_bytes"] / 1000,
                "holdout acc %": round(p["test_accuracy"] * 100, 2),
                "95% CI %": f"{p['test_ci95'][0] * 100:.1f}-{p['test_ci95'][1] * 100:.1f}",
                "all-8-bit holdout %": round(p["test_acc8"] * 100, 2),
                "delta pp": round(p["test_delta_pp"], 2),
                "hv mixed": round(s["hv_mixed"], 4),
                "hv homogeneous": round(s["hv_homogeneous"], 4),
                "search fitness": FITNESS_NAMES.get(s.get("fitness", {}).get("used", "ptq"), "post-training"),
            }
        )
st.dataframe(pd.DataFrame(rows), hide_index=True)
st.markdown(
    " · ".join(
        f"**{task}**: mean reduction {t['reduction_mean'] * 100:.1f}%, mean delta {t['test_delta_pp_mean']:+.2f} pp"
        for task, t in summary["tasks"].items()
    )
)

task = st.selectbox("Task", list(summary["tasks"]), key="reproduce_task")
t = summary["tasks"][task]
try:
    records = load_task(REPORTS, task)
except GruqError:
    records = []
n = records[0].get("sequences", {}) if records else {}
if n:
    st.caption(
        f"{task}: {n.get('val')} validation sequences (the search ranks on them), {n.get('select')} select "
        f"(the pick), {n.get('holdout')} holdout (reported)."
    )
paths = figure_paths(task)
if (REPORTS / paths["front"]).is_file():
    st.image(
        str(REPORTS / paths["front"]),
        caption="holdout accuracy against size (first seed): fine-tuned mixed front (blue) and "
        "homogeneous genomes (orange; hollow: before fine-tuning)",
    )
for s in t["seeds"]:
    p = s["pick"]
    st.markdown(
        f"**Seed {s['seed']}**: {p['reduction'] * 100:.1f}% smaller than all-8-bit, {p['test_accuracy'] * 100:.2f}% "
        f"holdout accuracy (95% CI {p['test_ci95'][0] * 100:.1f}-{p['test_ci95'][1] * 100:.1f}%"
        + (f", n={n['holdout']}" if n else "")
        + f"), {p['test_delta_pp']:+.2f} pp against all-8-bit, {p['size_bytes'] / 1000:.2f} kB, "
        f"bits `{','.join(map(str, p['bits']))}`"
    )
    st.code(p["check"], language="sh")
if (REPORTS / paths["bits"]).is_file():
    st.image(str(REPORTS / paths["bits"]), caption="bits per operator of the front's genomes, grouped by cluster")
if records:
    st.markdown(records[0]["widths"]["statement"])
