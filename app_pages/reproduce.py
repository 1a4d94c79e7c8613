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
from gruq.stats import wilson_acc

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


unreadable: dict[str, str] = {}  # task -> why its result.json was not read: said once, under the table


def task_records(task: str) -> list[dict]:
    """A task's per-seed records (result.json): the holdout n and the paired interval of
    the difference to all-8-bit, which summary.json does not carry. A damaged file costs
    those extras, not the page."""
    try:
        return load_task(REPORTS, task)
    except GruqError as exc:
        unreadable[task] = str(exc)
        return []


def ci_text(interval: list[float] | tuple[float, float] | None, scale: float = 100.0, sign: bool = False) -> str:
    """An interval as "93.3-99.0" (accuracies) or "+0.00 to +2.00" (differences in pp); "" if unknown."""
    if interval is None:
        return ""
    lo, hi = interval[0] * scale, interval[1] * scale
    return f"{lo:+.2f} to {hi:+.2f}" if sign else f"{lo:.1f}-{hi:.1f}"


def with_ci(value: str, interval: str) -> str:
    """A figure and its interval in one cell, "92.20 (89.5-94.2)": one column, not two, so the
    table fits a laptop's width without hiding an interval."""
    return f"{value} ({interval})" if interval else value


rows = []
for task, t in summary["tasks"].items():
    by_seed = {r.get("seed"): r for r in task_records(task)}
    for s in t["seeds"]:
        p = s["pick"]
        record = by_seed.get(s["seed"], {})
        n_holdout = (record.get("sequences") or {}).get("holdout")
        acc8_ci = ci_text(wilson_acc(p["test_acc8"], n_holdout)) if n_holdout else ""
        delta_ci = ci_text((record.get("pick") or {}).get("test_delta_ci95_pp"), 1.0, True)
        rows.append(
            {
                "task": task,
                "seed": s["seed"],
                "kB (smaller)": f"{p['size_bytes'] / 1000:.2f} (-{p['reduction'] * 100:.1f}%)",
                "n": n_holdout,
                "holdout % (95% CI)": with_ci(f"{p['test_accuracy'] * 100:.2f}", ci_text(p["test_ci95"])),
                "8-bit % (95% CI)": with_ci(f"{p['test_acc8'] * 100:.2f}", acc8_ci),
                "Δ pp (paired CI)": with_ci(f"{p['test_delta_pp']:+.2f}", delta_ci),
                "hv mixed/homog.": f"{s['hv_mixed']:.3f} / {s['hv_homogeneous']:.3f}",
                "search fitness": FITNESS_NAMES.get((s.get("fitness") or {}).get("used") or "ptq", "post-training"),
            }
        )
HELP = {
    "kB (smaller)": "The pick's model size, and how much smaller it is than all-8-bit.",
    "n": "Holdout sequences every accuracy in the row is measured on.",
    "holdout % (95% CI)": "The pick's holdout accuracy, with its 95% Wilson interval.",
    "8-bit % (95% CI)": "All-8-bit's holdout accuracy (same fine-tuning), with its 95% Wilson interval.",
    "Δ pp (paired CI)": "Pick minus all-8-bit, in points, with a paired bootstrap 95% interval (same sequences).",
    "hv mixed/homog.": "Hypervolume of the mixed-precision front / of the all-2-bit ... all-8-bit genomes.",
    "search fitness": "What the search ranked schemes by: post-training accuracy, or after one fine-tuning epoch.",
}
st.dataframe(
    pd.DataFrame(rows),
    hide_index=True,
    height=38 + 35 * len(rows),  # every task and seed at once: no scrolling inside the table
    column_config={name: st.column_config.Column(help=text) for name, text in HELP.items()},
)
st.caption(
    "The pick of each task and seed: its size (and saving against all-8-bit), holdout accuracies on n sequences "
    "with a 95% Wilson interval, the difference to all-8-bit (Δ, in points) with a paired bootstrap 95% interval "
    "(the same sequences), and the hypervolumes of the mixed and homogeneous fronts. Means are over seeds, with "
    "their range (min..max)."
)
for why in unreadable.values():
    st.info(f"Shown without its holdout n and paired intervals: {why}")


def spread(values: list[float], fmt: str) -> str:
    return f"({format(min(values), fmt)}..{format(max(values), fmt)})"


st.markdown(
    " · ".join(
        f"**{task}**: mean reduction {t['reduction_mean'] * 100:.1f}% "
        f"{spread([100 * s['pick']['reduction'] for s in t['seeds']], '.1f')}, "
        f"mean delta {t['test_delta_pp_mean']:+.2f} pp {spread([s['pick']['test_delta_pp'] for s in t['seeds']], '+.2f')}"
        for task, t in summary["tasks"].items()
    )
)

task = st.selectbox("Task", list(summary["tasks"]), key="reproduce_task")
t = summary["tasks"][task]
records = task_records(task)
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
paired = {r.get("seed"): (r.get("pick") or {}).get("test_delta_ci95_pp") for r in records}
for s in t["seeds"]:
    p = s["pick"]
    delta_ci = ci_text(paired.get(s["seed"]), 1.0, True)
    st.markdown(
        f"**Seed {s['seed']}**: {p['reduction'] * 100:.1f}% smaller than all-8-bit, {p['test_accuracy'] * 100:.2f}% "
        f"holdout accuracy (95% CI {p['test_ci95'][0] * 100:.1f}-{p['test_ci95'][1] * 100:.1f}%"
        + (f", n={n['holdout']}" if n else "")
        + f"), {p['test_delta_pp']:+.2f} pp against all-8-bit's {p['test_acc8'] * 100:.2f}%"
        + (f" (paired 95% CI {delta_ci} pp)" if delta_ci else "")
        + f", {p['size_bytes'] / 1000:.2f} kB, "
        f"bits `{','.join(map(str, p['bits']))}`"
    )
    st.code(p["check"], language="sh", wrap_lines=True)  # the whole command in view, no sideways scroll
if (REPORTS / paths["bits"]).is_file():
    st.image(str(REPORTS / paths["bits"]), caption="bits per operator of the front's genomes, grouped by cluster")
if records:
    st.markdown(records[0]["widths"]["statement"])
