"""Live run: the Pareto front of a search as it grows, and which solution to pick."""

from __future__ import annotations

import re

import streamlit as st

import ui
from gruq import figures, store, views
from gruq.errors import GruqError
from gruq.genome import MAX_BITS, MIN_BITS, bops, homogeneous, size_bytes
from gruq.scheme_model import for_run
from gruq.stats import pct_ci, pct_interval, unpaired_diff, wilson_acc, within_noise
from gruq.views import KB

ui.setup("Live run")
title = st.empty()  # names the run's objective once the run is known

db = ui.db_path()
try:
    runs = ui.list_runs()
except GruqError as exc:
    st.error(str(exc))
    st.stop()
if not runs:
    st.info("No runs yet. Launch one on the first page.")
    st.page_link("app_pages/launch.py", label="Launch a search", icon=":material/rocket_launch:")
    st.stop()

run = ui.choose_run(runs, key="live_run")
run_id = run["run_id"]
W = views.words(run["objective"])
title.title(f"Live run: accuracy against {W['noun']}")
ACTIVE = ("queued", "running")
active = run["status"] in ACTIVE and run["alive"]


def compute_where(cfg: dict) -> str:
    from gruq.search.scoring import where

    try:
        return where(int(cfg.get("workers", 1)), cfg.get("scheduler"))
    except GruqError as exc:
        return str(exc)


def open_in_explorer(genome: tuple[int, ...]) -> None:
    st.switch_page("app_pages/explorer.py", query_params={"run": str(run_id), "bits": ",".join(map(str, genome))})


def controls(r: dict) -> list[dict]:
    """Status, progress, times, and the Cancel / Resume buttons."""
    from gruq.search import launch

    curve = store.hypervolume_curve(db, run_id)
    p = views.progress(r, curve)
    status = r["status"]
    status_text = views.status_text(r)
    c = st.columns([3, 1.1, 1.1, 0.8])
    c[0].progress(
        p["fraction"],
        text=f"**{status_text}** · generation {p['done']} of {p['planned']} done · {r['evaluations']} scheme{'s' if r['evaluations'] != 1 else ''} scored",
    )
    c[1].metric("elapsed", views.duration(p["elapsed"]))
    c[2].metric("remaining (estimate)", views.duration(p["remaining"]) if status in ACTIVE else "—")
    with c[3]:
        if status in ACTIVE and r["alive"]:
            if st.button("Cancel", key="cancel", help="Stop after the current batch; the run can be resumed."):
                with ui.explained():
                    launch.cancel(db, run_id)
                    st.toast(f"Stopping run {run_id}...")
        elif status in ("cancelled", "failed") or (status in ACTIVE and not r["alive"]):
            if st.button("Resume", key="resume", type="primary", help="Continue from the last finished generation."):
                with ui.explained():
                    launch.resume(db, run_id)
                    st.rerun(scope="app")
    note = views.stop_note(r)
    if note:
        (st.error if status == "failed" else st.info)(note)
    if status == "failed":
        log = launch.log_path(db, run_id)
        if log.exists():
            with st.expander("The run's output"):
                lines = [ln for ln in re.split(r"[\r\n]+", log.read_text(errors="replace")) if ln.strip()]
                st.code("\n".join(lines[-20:]))
    return curve


# Poll every second while a run is active: the first front shows within a second of its
# commit (the warm runner commits a vowels generation about a second after Launch). Faster
# polls keep a busy machine redrawing the chart without pause.
@st.fragment(run_every=1.0 if active else None)
def live() -> None:
    try:
        r = store.run_detail(db, run_id)
    except GruqError as exc:
        st.error(str(exc))
        return
    if active and not (r["status"] in ACTIVE and r["alive"]):
        st.rerun(scope="app")  # the run just ended: redraw once and stop polling
    curve = controls(r)
    cfg = r["config"]
    st.caption("Settings: " + " · ".join(views.config_summary(cfg)) + f" · computing on: {compute_where(cfg)}")

    task = r["task"]
    try:
        shape = ui.shape_of(task, ui.run_checkpoint(r))
    except GruqError as exc:
        st.error(str(exc))
        return
    cost = views.cost_of(r["objective"])
    points = views.points_frame(store.individuals(db, run_id))
    front = views.run_front(points, cost)
    front_tuned = "finetuned_accuracy" in front and front["finetuned_accuracy"].notna().any()
    front = views.reported_front(front)  # after the final fine-tuning: the fine-tuned models' numbers
    n_val = ui.split_sizes(task).get("val")
    base, base_note, model8 = None, "", None
    if not points.empty:  # nothing to compare yet while the first generation is scored
        known = views.homogeneous_scores(points)  # the run's first population holds the baselines
        # which model the all-8-bit figure belongs to: the run's own (as it scored it), else post-training
        model8 = for_run(cfg, task, homogeneous(MAX_BITS), False).label if MAX_BITS in known else "post-training"
        try:
            if len(known) < MAX_BITS - MIN_BITS + 1:
                computed = ui.baseline_accuracies(task, 0, int(cfg.get("seed", 0)), ui.run_checkpoint(r))
                for b, acc in zip(range(MIN_BITS, MAX_BITS + 1), computed):
                    known.setdefault(b, acc)
                if cfg.get("finetune_epochs"):
                    base_note = " Some baselines were scored without fine-tuning, unlike this run's schemes."
            base = views.baselines(shape, [known[b] for b in range(MIN_BITS, MAX_BITS + 1)])
        except GruqError as exc:
            st.warning(f"Baselines unavailable: {exc}")
    acc8 = float(base["accuracy"].iloc[-1]) if base is not None else None

    # the limit: the run's own size limit, or one the reader chooses
    size8 = size_bytes(homogeneous(MAX_BITS, shape.layers), shape)
    size2 = size_bytes(homogeneous(MIN_BITS, shape.layers), shape)
    run_limit = views.max_size_bytes(cfg, shape)
    if cost == "size_bytes":
        lo_kb, hi_kb = round(size2 / KB, 2), round(size8 / KB, 2)
        default = round((run_limit if run_limit is not None else 0.5 * (size2 + size8)) / KB, 2)
        limit_kb = st.slider(
            "Your size limit (kB): the star marks the best scheme that fits",
            lo_kb,
            hi_kb,
            min(max(default, lo_kb), hi_kb),
            step=max(0.01, round((hi_kb - lo_kb) / 200, 2)),
            key=f"limit_{run_id}",
            help="Starts at the run's maximum size if it has one. Move it to see what fits a smaller chip.",
        )
        limit = limit_kb * KB
    else:
        b2, b8 = (bops(homogeneous(b, shape.layers), shape) for b in (MIN_BITS, MAX_BITS))
        lim = st.slider(
            "Your compute limit (million bit operations per sequence)",
            b2 / 1e6,
            b8 / 1e6,
            (b2 + b8) / 2e6,
            key=f"limit_{run_id}",
        )
        limit = lim * 1e6
    min_acc = cfg.get("min_accuracy")
    best = views.best_under(front, limit, cost, min_acc)
    best_text = None
    if best is not None:
        s = views.pick_summary(best, shape, acc8, cost)
        best_text = (
            f"<b>best under {views.format_cost(limit, cost)}</b><br>accuracy {pct_ci(s['accuracy'], n_val, '%')}"
            f"<br>{s['saving_pct']:.0f}% {W['saving']} than all-8-bit"
        )

    if points.empty:
        st.info("Scoring the first generation... the chart appears when it is done (a few seconds on vowels).")
    reason = views.empty_front_reason(points, cfg, shape)
    if reason:
        (st.error if r["status"] == "finished" else st.warning)(reason)
    fig = figures.front_chart(
        points,
        front,
        base,
        cost=cost,
        limit=limit,
        best=best,
        best_text=best_text,
        min_accuracy=min_acc,
        generations=int(r["generations"]) - 1,
    )
    event = st.plotly_chart(
        fig, key=f"front_{run_id}", on_select="rerun", selection_mode="points", config={"displaylogo": False}
    )
    st.caption(
        "Each faint dot is one quantization scheme the search tried (colour: the generation that found it). "
        "The **black staircase** is the Pareto front: no scheme found is both "
        f"{'smaller' if cost == 'size_bytes' else 'cheaper in bit operations'} and more accurate than a point "
        "on it. Grey diamonds give every operator the same bits (all 2-bit ... all 8-bit). "
        f"Everything right of the red dashed line is over your {W['limit']}. **Click a point to inspect it.**"
        + (f" The star's accuracy is on {n_val} validation sequences, with its 95% interval." if n_val else "")
        + base_note
    )
    if best is not None:
        s = views.pick_summary(best, shape, acc8, cost)
        model = for_run(cfg, task, tuple(best["genome"]), bool(front_tuned)).label
        vs8 = ""
        n_text = f"; {n_val} sequences, 95% interval {pct_interval(wilson_acc(s['accuracy'], n_val))}" if n_val else ""
        if acc8 is not None:
            d = s["delta_pp"]
            vs8 = (
                f", {abs(d):.1f} points {'below' if d < 0 else 'above'} the all-8-bit model's {100 * acc8:.1f}% "
                f"({model8})"
                if abs(d) >= 0.05
                else f", the same as the all-8-bit model ({model8})"
            )
            if n_val:
                diff = unpaired_diff(s["accuracy"], n_val, acc8, n_val)
                vs8 += f" (difference {100 * diff[0]:+.1f} to {100 * diff[1]:+.1f} points, 95%: " + (
                    "**within noise of all-8-bit**: these data cannot tell them apart)"
                    if within_noise(diff)
                    else "a real difference)"
                )
        if cost == "bops":
            what = (
                f"at {views.format_cost(s['bops'], cost)} per sequence: **{s['fewer_bops_pct']:.0f}% fewer bit "
                f"operations** than all-8-bit ({views.format_cost(s['bops8'], cost)}), and {s['size_kb']:.2f} kB "
                f"({s['smaller_pct']:.0f}% smaller). It is the most accurate scheme that fits your limit: every more "
                "accurate one needs more bit operations."
            )
        else:
            what = (
                f"at {s['size_kb']:.2f} kB: **{s['smaller_pct']:.0f}% smaller** than all-8-bit "
                f"({s['size8_bytes'] / KB:.2f} kB) and {s['fewer_bops_pct']:.0f}% fewer bit operations. It is the "
                "most accurate scheme that fits your limit: every more accurate one is bigger. (Biases and the "
                f"classifier are always kept, so no scheme can be more than {s['cap_pct']:.0f}% smaller.)"
            )
        st.success(
            f"**Pick this one:** {100 * s['accuracy']:.1f}% validation accuracy ({model}{n_text}){vs8}, {what} "
            "Validation accuracies of a front are optimistic: the search kept the schemes that happened to score "
            "well on these sequences; the Explorer shows the test accuracy."
        )
        if st.button("Inspect this solution", key="open_best"):
            open_in_explorer(tuple(best["genome"]))
    elif len(front):
        st.warning(
            "No scheme found so far fits this limit"
            + (" and the minimum accuracy" if min_acc else "")
            + ": move the slider right, or let the search run longer."
        )

    picked = (event.selection.points if event and event.selection else []) or []
    for pt in picked:
        trace, idx, row = pt.get("curve_number"), pt.get("point_index"), pt.get("customdata")
        row = row[0] if isinstance(row, list) and row else row
        if trace == 2 and idx is not None and idx < len(front):
            open_in_explorer(tuple(front.iloc[idx]["genome"]))
        elif trace == 0 and row is not None and int(row) < len(points):  # customdata: the row in points
            open_in_explorer(tuple(points.iloc[int(row)]["genome"]))
        elif trace == 1 and base is not None and idx is not None:
            open_in_explorer(tuple(base.iloc[idx]["genome"]))
        elif trace == 3 and best is not None:
            open_in_explorer(tuple(best["genome"]))

    c1, c2 = st.columns([1, 2])
    with c1:
        hv = views.hypervolume_frame(curve)
        if len(hv):
            st.markdown(
                f"**Progress: hypervolume** (the share of the {W['box']} box the front dominates; "
                "it rises while the search still finds better trade-offs)"
            )
            st.plotly_chart(
                figures.hypervolume_chart(hv, int(r["generations"]) - 1),
                key=f"hv_{run_id}",
                config={"displayModeBar": False},
            )
    with c2:
        if len(front):
            alike = int(front["alike"].sum())
            st.markdown(
                f"**The front: {len(front)} trade-off{'s' if len(front) != 1 else ''}** (validation accuracy"
                + (f" on {n_val} sequences, with its 95% interval" if n_val else "")
                + (", after the final fine-tuning" if front_tuned else "")
                + "; bits per operator, in the order of the Learn page's table; select a row to inspect it)"
                + (
                    f". {alike} more schemes score exactly the same as one of these: each row shows the "
                    "one with the fewest bit operations."
                    if alike
                    else ""
                )
            )
            table = views.front_table(front, shape, r["objective"], n_val)
            sel = st.dataframe(
                table,
                hide_index=True,
                on_select="rerun",
                selection_mode="single-row",
                key=f"front_table_{run_id}",
                height=min(300, 38 + 35 * len(table)),
            )
            rows = sel.selection.rows if sel and sel.selection else []
            if rows:
                open_in_explorer(tuple(front.iloc[rows[0]]["genome"]))
            st.download_button(
                "Download the front (CSV)",
                views.front_csv(front, n_val, views.front_models(front, cfg, task)),
                file_name=views.front_file_name(run_id, r["generations_done"]),
                mime="text/csv",
                key=f"csv_{run_id}",
                on_click="ignore",
            )


live()
