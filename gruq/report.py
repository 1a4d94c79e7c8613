"""The reproduce report: genome clusters, figures (PNG, matplotlib) and README.md.

Pure functions of the records `gruq.reproduce` writes (tasks/<task>/result.json),
so the report can be re-rendered from the files without re-running anything:

    analyse(record)                 clusters of the front's genomes, mean bits per operator
    figures(out, record)            figures/<task>_front.png, figures/<task>_bits.png
    render_readme(summary, records) the text of README.md
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gruq.genome import MAX_BITS, MIN_BITS
from gruq.ops import LINEAR, OPS

KB = 1000.0
MAX_CLUSTERS = 6
WIDE = 4  # bits: an operator no accurate genome takes below this "needs width"


# ---------------------------------------------------------------- clustering


def cluster(genomes: Sequence[Sequence[int]]) -> tuple[np.ndarray, int, float | None]:
    """Ward hierarchical clustering of bit vectors; k from 2..6 by the best silhouette.

    Returns (labels 1..k, k, silhouette). Fewer than 4 distinct genomes: one cluster.
    Clusters are numbered by increasing mean model size proxy (mean bits of the
    linear operators), so cluster 1 holds the smallest models.
    """
    G = np.asarray(genomes, dtype=float).reshape(-1, len(OPS))
    n = len(G)
    if n < 4 or len(np.unique(G, axis=0)) < 4:
        return np.ones(n, dtype=int), 1, None
    from scipy.cluster.hierarchy import fcluster, linkage
    from sklearn.metrics import silhouette_score

    tree = linkage(G, method="ward")
    best: tuple[float, int, np.ndarray] | None = None
    for k in range(2, min(MAX_CLUSTERS, n - 1) + 1):
        labels = fcluster(tree, t=k, criterion="maxclust")
        if len(set(labels)) < 2:
            continue
        score = float(silhouette_score(G, labels))
        if best is None or score > best[0] + 1e-12:
            best = (score, k, labels)
    if best is None:
        return np.ones(n, dtype=int), 1, None
    score, _, labels = best
    lin = list(LINEAR)
    order = sorted(set(labels), key=lambda c: (G[labels == c][:, lin].mean(), c))
    rank = {c: i + 1 for i, c in enumerate(order)}
    labels = np.array([rank[c] for c in labels])
    return labels, len(order), score


def analyse(record: dict) -> dict:
    """Add cluster labels to the front and the clustering / width analysis to `record`."""
    front = record["front"]
    G = np.array([r["bits"] for r in front], dtype=float).reshape(-1, len(OPS))
    labels, k, sil = cluster(G)
    for r, c in zip(front, labels):
        r["cluster"] = int(c)
    groups = []
    for c in range(1, k + 1):
        members = [r for r in front if r["cluster"] == c]
        groups.append(
            {
                "cluster": c,
                "members": len(members),
                "mean_bits": [float(v) for v in np.mean([m["bits"] for m in members], axis=0)],
                "size_bytes": [min(m["size_bytes"] for m in members), max(m["size_bytes"] for m in members)],
                "ptq_val": [min(m["ptq_val"] for m in members), max(m["ptq_val"] for m in members)],
            }
        )
    accurate = [
        r
        for r in front
        if r.get("ft_test") is not None and len(set(r["bits"])) > 1 and r["ft_test"] >= record["acc8"] - 0.01 - 1e-9
    ]  # mixed genomes only
    A = np.array([r["bits"] for r in accurate], dtype=float).reshape(-1, len(OPS))
    record["clusters"] = {
        "method": f"Ward hierarchical clustering of the front's bit vectors, k in 2..{MAX_CLUSTERS} by silhouette",
        "k": k,
        "silhouette": sil,
        "groups": groups,
    }
    record["widths"] = {
        "mean_front": [float(v) for v in G.mean(axis=0)] if len(G) else [],
        "accurate_members": len(accurate),
        "mean_accurate": [float(v) for v in A.mean(axis=0)] if len(A) else [],
        "min_accurate": [int(v) for v in A.min(axis=0)] if len(A) else [],
    }
    record["widths"]["statement"] = width_statement(record)
    return record


def width_statement(record: dict) -> str:
    """Which operators the task keeps wide, in words, from the front's genomes."""
    w = record["widths"]
    mean = w["mean_front"]
    if not mean:
        return "The front is empty."
    lin = sorted(LINEAR, key=lambda i: (-mean[i], i))
    text = (
        "Weights (the only genes that cost size), mean bits on the front, widest first: "
        + ", ".join(f"{OPS[i]} {mean[i]:.1f}" for i in lin)
        + "."
    )
    if w["min_accurate"]:
        free = [i for i in range(len(OPS)) if i not in LINEAR]
        kept = [OPS[i] for i in free if w["min_accurate"][i] >= WIDE]
        squeezed = [OPS[i] for i in free if w["min_accurate"][i] <= MIN_BITS + 1]
        n = w["accurate_members"]
        text += (
            f" Among the {n} fine-tuned mixed front genome{'s' if n != 1 else ''} within 1 pp of all-8-bit, "
            + (
                f"none takes {', '.join(kept)} below {WIDE} bits (the operators that look like they need width)"
                if kept
                else f"every free operator goes below {WIDE} bits in some genome"
            )
            + (
                f"; {', '.join(squeezed)} {'goes' if len(squeezed) == 1 else 'go'} down to "
                f"{MIN_BITS}-{MIN_BITS + 1} bits (tolerant)."
                if squeezed
                else "."
            )
        )
        wl = [OPS[i] for i in LINEAR if w["min_accurate"][i] >= WIDE]
        if wl:
            text += f" Weights never below {WIDE} bits there: {', '.join(wl)}."
    return text


# ---------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _staircase(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    """The non-dominated points (smaller x, higher y) as a step line."""
    pts = sorted(zip(xs, ys), key=lambda p: (p[0], -p[1]))
    sx, sy, best = [], [], -1.0
    for x, y in pts:
        if y > best:
            if sx:
                sx.append(x)
                sy.append(best)
            sx.append(x)
            sy.append(y)
            best = y
    return sx, sy


def front_figure(record: dict, path: Path) -> None:
    """Test accuracy against size: the fine-tuned mixed front and the homogeneous genomes."""
    plt = _plt()
    front = [r for r in record["front"] if r.get("ft_test") is not None]
    base = record["baselines"]
    acc8 = record["acc8"] * 100
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    pick = record["within_0.5pp"]
    for ax, zoom in zip(axes, (False, True)):
        fx = [r["size_bytes"] / KB for r in front]
        fy = [r["ft_test"] * 100 for r in front]
        bx = [r["size_bytes"] / KB for r in base]
        by = [r["ft_test"] * 100 for r in base]
        sx, sy = _staircase(fx, fy)
        ax.plot(sx, sy, "-", color="#1f77b4", lw=1.5, alpha=0.8)
        ax.scatter(fx, fy, s=34, color="#1f77b4", zorder=3, label="mixed front, fine-tuned")
        hx, hy = _staircase(bx, by)
        ax.plot(hx, hy, "--", color="#ff7f0e", lw=1.2, alpha=0.8)
        ax.scatter(bx, by, s=46, marker="s", color="#ff7f0e", zorder=3, label="homogeneous, fine-tuned")
        ax.scatter(
            bx,
            [r["ptq_test"] * 100 for r in base],
            s=40,
            marker="s",
            facecolors="none",
            edgecolors="#7f7f7f",
            zorder=2,
            label="homogeneous, post-training",
        )
        for r, x, y in zip(base, bx, by):
            ax.annotate(
                str(r["bits"][0]), (x, y), textcoords="offset points", xytext=(4, -11), fontsize=8, color="#b35900"
            )
        ax.axhline(acc8 - 0.5, color="#2ca02c", ls=":", lw=1.2, label="all-8-bit - 0.5 pp")
        ax.axvline(record["size_cap"] / KB, color="#999999", ls="-.", lw=0.8)
        ax.scatter(
            [pick["size_bytes"] / KB],
            [pick["accuracy"] * 100],
            s=200,
            marker="*",
            color="#d62728",
            zorder=4,
            label=f"smallest within 0.5 pp: -{pick['reduction'] * 100:.0f}%",
        )
        ax.set_xlabel("model size (kB)")
        ax.grid(alpha=0.3)
        if zoom:
            lo = acc8 - 4
            ax.set_ylim(lo, max([acc8 + 1] + [y + 0.3 for y in fy + by]))
            ax.set_title("zoom: near all-8-bit accuracy")
        else:
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(f"{record['task']}: mixed vs homogeneous (test split)")
            ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bits_figure(record: dict, path: Path) -> None:
    """Heatmap of bits per operator: rows are the front's genomes grouped by cluster."""
    plt = _plt()
    from matplotlib.colors import BoundaryNorm, ListedColormap

    front = sorted(record["front"], key=lambda r: (r.get("cluster", 1), r["size_bytes"]))
    G = np.array([r["bits"] for r in front], dtype=float).reshape(-1, len(OPS))
    mean = np.array(record["widths"]["mean_front"] or [np.nan] * len(OPS))[None, :]
    n = len(front)
    cmap = ListedColormap(plt.get_cmap("RdYlBu")(np.linspace(0.02, 0.98, MAX_BITS - MIN_BITS + 1)))
    norm = BoundaryNorm(np.arange(MIN_BITS - 0.5, MAX_BITS + 1.5), cmap.N)
    fig = plt.figure(figsize=(11, 1.6 + 0.26 * (n + 2)))
    grid = fig.add_gridspec(2, 2, height_ratios=[max(n, 1), 1.3], width_ratios=[40, 1], hspace=0.08, wspace=0.03)
    ax, axm, cax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[:, 1])
    im = ax.imshow(G if n else np.full((1, len(OPS)), np.nan), aspect="auto", cmap=cmap, norm=norm)
    for i in range(n):
        for j in range(len(OPS)):
            b = int(G[i, j])
            ax.text(j, i, str(b), ha="center", va="center", fontsize=7, color="white" if b in (2, 8) else "black")
    labels = []
    for r in front:
        acc = r.get("ft_test")
        acc_text = f"{acc * 100:.1f}% test" if acc is not None else f"{r['ptq_val'] * 100:.1f}% val PTQ"
        labels.append(f"c{r.get('cluster', 1)} · {r['size_bytes'] / KB:.2f} kB · {acc_text}")
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xticks(range(len(OPS)), [])
    for i in range(1, n):
        if front[i].get("cluster") != front[i - 1].get("cluster"):
            ax.axhline(i - 0.5, color="black", lw=1.5)
    for j in LINEAR:
        ax.add_patch(plt.Rectangle((j - 0.5, -0.5), 1, max(n, 1), fill=False, ec="#333333", lw=0.6, ls=":"))
    axm.imshow(mean, aspect="auto", cmap=cmap, norm=norm)
    for j in range(len(OPS)):
        axm.text(j, 0, f"{mean[0, j]:.1f}", ha="center", va="center", fontsize=7)
    axm.set_yticks([0], ["mean"], fontsize=8)
    axm.set_xticks(range(len(OPS)), OPS, rotation=60, ha="right", fontsize=8)
    cl = record["clusters"]
    sil = f", silhouette {cl['silhouette']:.2f}" if cl.get("silhouette") is not None else ""
    ax.set_title(
        f"{record['task']}: bits per operator on the front ({n} genomes, {cl['k']} clusters{sil}; dotted: weights)",
        fontsize=10,
    )
    fig.colorbar(im, cax=cax, ticks=range(MIN_BITS, MAX_BITS + 1), label="bits")
    fig.savefig(path, dpi=110 if n <= 40 else 80, bbox_inches="tight")  # long fronts: keep the file small
    plt.close(fig)


def figure_paths(task: str) -> dict[str, str]:
    """Figure files of a task, relative to the report directory."""
    return {"front": f"figures/{task}_front.png", "bits": f"figures/{task}_bits.png"}


def figures(out: Path, record: dict) -> dict[str, str]:
    paths = figure_paths(record["task"])
    (Path(out) / "figures").mkdir(parents=True, exist_ok=True)
    front_figure(record, Path(out) / paths["front"])
    bits_figure(record, Path(out) / paths["bits"])
    return paths


# ---------------------------------------------------------------- README


def _pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x * 100:.{digits}f}%"


def _kb(x: float) -> str:
    return f"{x / KB:.2f} kB"


def _minutes(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"


def summary_table(summary: dict, records: dict[str, dict] | None = None) -> str:
    """The Markdown table of summary.json (one row per task)."""
    rows = [
        "| task | all-8-bit test acc (fine-tuned) | size 8-bit | cap (all-2-bit) | within 0.5 pp: reduction "
        "(acc, size) | within 1 pp: reduction (acc, size) | hv mixed | hv homogeneous |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, t in summary["tasks"].items():
        cap = 1 - t["size_cap"] / t["size8"]
        cells = [task, _pct(t["acc8"], 2), _kb(t["size8"]), f"{_kb(t['size_cap'])} (-{cap * 100:.0f}%)"]
        for key in ("within_0.5pp", "within_1pp"):
            p = t[key]
            cells.append(f"**{p['reduction'] * 100:.1f}%** ({_pct(p['accuracy'], 2)}, {_kb(p['size_bytes'])})")
        cells += [f"{t['hv_mixed']:.4f}", f"{t['hv_homogeneous']:.4f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def cpu_text(records: dict[str, dict], workers: int) -> str:
    """The CPU time measured (search and fine-tuning), for machines busier or idler than this one."""
    secs = [r.get("seconds", {}) for r in records.values()]
    if not secs or not all("search_cpu" in s for s in secs):
        return ""
    cpu = sum(s["search_cpu"] + s["finetune_cpu"] for s in secs)
    return (
        f" (CPU time of the search and the fine-tuning: {_minutes(cpu)}; spread over {workers} "
        f"busy cores that is about {_minutes(cpu / max(1, workers))} of wall time on an idle machine)"
    )


def budget_text(budget: dict) -> str:
    samples = budget.get("finetune_samples")
    return (
        f"NSGA-II population {budget['pop']} x {budget['gens']} generations, seed {budget['seed']}, "
        f"objective {budget['objective']}, fitness = post-training accuracy on the validation split; "
        f"fine-tuning {budget['finetune_epochs']} epochs"
        + (f" of {samples} training sequences each (a fresh seeded subset per epoch)" if samples else "")
        + f", Adam lr {budget['finetune_lr']:g}, cosine decay, batch {budget['finetune_batch']} (fewer for small "
        "training sets: at least 8 steps per epoch)"
        + (
            ", keeping the epoch (0 included) with the best validation accuracy"
            if budget.get("finetune_select") == "val"
            else ""
        )
        + f"; at most {budget['front_size']} front genomes fine-tuned; {budget['workers']} worker processes."
    )


def command_line(budget: dict, out: str = "reports/") -> str:
    cmd = (
        f"python -m gruq reproduce --out {out} --pop {budget['pop']} --gens {budget['gens']} "
        f"--finetune-epochs {budget['finetune_epochs']} --seed {budget['seed']} --workers {budget['workers']}"
        f" --front-size {budget['front_size']}"
    )
    samples = budget.get("finetune_samples")
    cmd += f" --finetune-samples {samples}" if samples else " --finetune-samples 0"
    return cmd + (" --finetune-select val" if budget.get("finetune_select") == "val" else " --finetune-select last")


def _task_section(task: str, t: dict, r: dict | None) -> list[str]:
    paths = figure_paths(task)
    lines = [f"## {task}", "", f"![{task}: front against homogeneous genomes]({paths['front']})", ""]
    lines += ["| | bits (17 operators, DESIGN.md order) | test accuracy | size | reduction |", "|---|---|---|---|---|"]
    lines.append(f"| all-8-bit, fine-tuned (acc8) | 8 x 17 | {_pct(t['acc8'], 2)} | {_kb(t['size8'])} | 0% |")
    if r:
        lines.append(f"| all-8-bit, post-training | 8 x 17 | {_pct(r['acc8_ptq'], 2)} | {_kb(t['size8'])} | 0% |")
        if r.get("float_test") is not None:
            lines.append(f"| float model | - | {_pct(r['float_test'], 2)} | - | - |")
    lines.append(
        f"| cap: all-2-bit size | 2 x 17 | - | {_kb(t['size_cap'])} | {(1 - t['size_cap'] / t['size8']) * 100:.1f}% |"
    )
    for key, label in (("within_0.5pp", "smallest within 0.5 pp"), ("within_1pp", "smallest within 1 pp")):
        p = t[key]
        lines.append(
            f"| {label} | `{','.join(map(str, p['bits']))}` | {_pct(p['accuracy'], 2)} | "
            f"{_kb(p['size_bytes'])} | **{p['reduction'] * 100:.1f}%** |"
        )
    if r:
        for key, label in (("val_picks", "chosen on validation"), ("ptq_picks", "post-training only")):
            p = r[key]["within_0.5pp"]
            lines.append(
                f"| {label}, within 0.5 pp | `{','.join(map(str, p['bits']))}` | {_pct(p['accuracy'], 2)} | "
                f"{_kb(p['size_bytes'])} | {p['reduction'] * 100:.1f}% |"
            )
    lines += [
        "",
        f"Hypervolume (test, size / all-8-bit): mixed **{t['hv_mixed']:.4f}**, "
        f"homogeneous {t['hv_homogeneous']:.4f}"
        + (
            f", both together {r['hv_union']:.4f}; post-training only: mixed {r['hv_mixed_ptq']:.4f}, "
            f"homogeneous {r['hv_homogeneous_ptq']:.4f}."
            if r
            else "."
        ),
        "",
    ]
    lines += ["Re-derive the two picks:", "", "```sh"]
    lines += [t[k]["check"] for k in ("within_0.5pp", "within_1pp")] + ["```", ""]
    if r:
        s = r["seconds"]
        lines.append(
            f"Search: {r['search']['evaluations']} genomes scored, front of {r['search']['front_members']}, "
            f"{r['search']['finetuned_members']} fine-tuned; time {_minutes(s['search'])} search, "
            f"{_minutes(s['finetune'])} fine-tuning ({s['finetune_jobs']} models), "
            f"{_minutes(s.get('total', s['search'] + s['finetune']))} in all"
            + (
                f"; CPU time {_minutes(s['search_cpu'])} search, {_minutes(s['finetune_cpu'])} fine-tuning."
                if "search_cpu" in s
                else "."
            )
        )
        lines += ["", f"![{task}: bits per operator on the front]({paths['bits']})", ""]
        cl = r["clusters"]
        lines.append(
            f"{cl['k']} cluster{'s' if cl['k'] != 1 else ''} ({cl['method']}"
            + (f", silhouette {cl['silhouette']:.2f}" if cl.get("silhouette") is not None else "")
            + "):"
        )
        lines += ["", "| cluster | genomes | size | " + " | ".join(OPS) + " |", "|---|---|---|" + "---|" * len(OPS)]
        for g in cl["groups"]:
            lo, hi = g["size_bytes"]
            lines.append(
                f"| {g['cluster']} | {g['members']} | {lo / KB:.2f}-{hi / KB:.2f} kB | "
                + " | ".join(f"{v:.1f}" for v in g["mean_bits"])
                + " |"
            )
        lines += ["", r["widths"]["statement"], ""]
    return lines


def render_readme(summary: dict, records: dict[str, dict] | None = None) -> str:
    """README.md of a reproduce run: summary table, then per task the figure, table and clusters."""
    records = records or {}
    b = summary["budget"]
    lines = [
        "# Reproducing the published claim: mixed against homogeneous precision",
        "",
        "Generated by `gruq.report` from the files in this directory (do not edit by hand). Made with:",
        "",
        "```sh",
        command_line(b),
        "```",
        "",
        f"Wall time: **{_minutes(summary['wall_seconds'])}** for {len(summary['tasks'])} task(s)"
        + cpu_text(records, b.get("workers", 1))
        + ". Budget: "
        + budget_text(b),
        "",
        summary_table(summary, records),
        "",
        "How to read it:",
        "",
        "- Every accuracy is on the **test split**, after the same fine-tuning budget for every genome "
        "(the all-8-bit reference included, so fine-tuning itself is not counted as a gain).",
        "- *reduction* = 1 - size / size of the all-8-bit model, for the smallest genome (mixed front or "
        "homogeneous) whose test accuracy is within 0.5 pp (1 pp) of the fine-tuned all-8-bit model. "
        "It cannot exceed the cap: biases and the classifier head cost the same in every genome.",
        "- *hv* = hypervolume of test accuracy against size / all-8-bit size, reference point (0, all-8-bit size); "
        "*mixed*: the fine-tuned genomes of the search's front; *homogeneous*: all 2-bit ... all 8-bit.",
        "- The search ranks genomes by post-training accuracy on the validation split only; the picks above "
        "read test accuracies, as the claim is stated. Each task's table also shows the pick made on "
        "validation accuracies alone (no test data), and the pick post-training quantization alone reaches.",
        "- Bits per operator: under the size objective only the six weight genes (lin_*) cost anything; the "
        "eleven others are free, so a wide free gene on the front is no evidence that it needs width, but a "
        "gene that no accurate genome takes below 4 bits is. Clusters: Ward clustering of the front's bit "
        "vectors, the number of clusters chosen by silhouette.",
        "- Every pick has a `python -m gruq evaluate` command that re-derives its accuracy and size exactly. "
        "Per-task data: `tasks/<task>/result.json`, `front.csv`, `baselines.csv`; summary: `summary.json`.",
        "",
    ]
    lines += widths_table(records)
    for task, t in summary["tasks"].items():
        lines += _task_section(task, t, records.get(task))
    return "\n".join(lines).rstrip() + "\n"


def widths_table(records: dict[str, dict]) -> list[str]:
    """Mean bits per operator on each task's front, side by side: the task-specific patterns."""
    rows = [(task, r["widths"]["mean_front"]) for task, r in records.items() if r.get("widths", {}).get("mean_front")]
    if not rows:
        return []
    lines = [
        "Mean bits per operator on each task's front (weights in bold: the only genes that cost size; "
        "details and clusters per task below):",
        "",
        "| task | " + " | ".join(f"**{op}**" if i in LINEAR else op for i, op in enumerate(OPS)) + " |",
        "|---|" + "---|" * len(OPS),
    ]
    for task, mean in rows:
        lines.append(f"| {task} | " + " | ".join(f"{v:.1f}" for v in mean) + " |")
    return lines + [""]


def write_readme(out: Path, summary: dict, records: dict[str, dict] | None = None) -> Path:
    path = Path(out) / "README.md"
    path.write_text(render_readme(summary, records))
    return path


def rerender(out: str | Path) -> Path:
    """Re-do the analysis, the figures and README.md from the files of a finished run
    (nothing is searched, fine-tuned or scored again)."""
    from gruq.reproduce import load_summary, load_task, write_task

    summary = load_summary(out)
    records = {t: load_task(out, t) for t in summary["tasks"]}
    for record in records.values():
        analyse(record)
        figures(Path(out), record)
        write_task(Path(out), record)
    return write_readme(Path(out), summary, records)
