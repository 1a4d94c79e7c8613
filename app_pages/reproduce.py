"""Reproduce: the published claim on the four tasks, read from reports/ (made by `gruq reproduce`)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

import ui
from gruq.errors import GruqError
from gruq.report import command_line, figure_paths
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
    "Does giving each GRU operator its own bit width beat using the same width everywhere? Per task, an NSGA-II "
    "search, then the same fine-tuning for the front it found and for the all-2-bit ... all-8-bit models, all "
    f"scored on the **test split**. Made with `{command_line(b)}` in **{summary['wall_seconds'] / 60:.1f} min**."
)
rows = []
for task, t in summary["tasks"].items():
    rows.append(
        {
            "task": task,
            "all-8-bit test acc %": round(t["acc8"] * 100, 2),
            "8-bit size kB": t["size8"] / 1000,
            "cap %": round((1 - t["size_cap"] / t["size8"]) * 100, 1),
            "reduction within 0.5 pp %": round(t["within_0.5pp"]["reduction"] * 100, 1),
            "reduction within 1 pp %": round(t["within_1pp"]["reduction"] * 100, 1),
            "hv mixed": round(t["hv_mixed"], 4),
            "hv homogeneous": round(t["hv_homogeneous"], 4),
        }
    )
st.dataframe(pd.DataFrame(rows), hide_index=True)

task = st.selectbox("Task", list(summary["tasks"]), key="reproduce_task")
t = summary["tasks"][task]
paths = figure_paths(task)
if (REPORTS / paths["front"]).is_file():
    st.image(
        str(REPORTS / paths["front"]),
        caption="test accuracy against size: fine-tuned mixed front (blue) and "
        "homogeneous genomes (orange; hollow: before fine-tuning)",
    )
for key, label in (("within_0.5pp", "Smallest within 0.5 pp"), ("within_1pp", "Smallest within 1 pp")):
    p = t[key]
    st.markdown(
        f"**{label}** of all-8-bit: {p['reduction'] * 100:.1f}% smaller, {p['accuracy'] * 100:.2f}% test "
        f"accuracy, {p['size_bytes'] / 1000:.2f} kB, bits `{','.join(map(str, p['bits']))}`"
    )
    st.code(p["check"], language="sh")
if (REPORTS / paths["bits"]).is_file():
    st.image(str(REPORTS / paths["bits"]), caption="bits per operator of the front's genomes, grouped by cluster")
try:
    st.markdown(load_task(REPORTS, task)["widths"]["statement"])
except (GruqError, KeyError):
    pass
