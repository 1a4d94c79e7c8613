"""Data for the app's views: pure functions from genomes and scores to tables.

Nothing here knows about Streamlit or Plotly: the pages turn these tables into
widgets and `gruq.figures` turns them into charts, so both can be tested
without a browser. Accuracy is a fraction (0..1), size is in bytes unless a
name says otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import numpy as np
import pandas as pd

from gruq import fixedpoint
from gruq.errors import GruqError
from gruq.genome import (
    MAX_BITS,
    MIN_BITS,
    Genome,
    ModelShape,
    bops,
    fixed_bytes,
    homogeneous,
    op_bytes,
    size_bytes,
    size_cap,
)
from gruq.ops import DESCRIPTION, LINEAR, N_OPS, OPS, gene_names, layer_names, weight_genes
from gruq.scheme_model import for_run
from gruq.stats import pct_ci, wilson_acc

KB = 1000.0  # sizes are shown in kB = 1000 bytes, as the command line prints them

# How each page speaks of a run's objective: every title, caption, table and
# hover text follows the run's own objective (size or bit operations).
WORDS = {
    "size": {
        "cost": "size_bytes",
        "noun": "size",
        "unit": "kB",
        "saving": "smaller",
        "saving_short": "smaller",  # a table header: the words, as short as they stay clear
        "box": "accuracy x size",
        "limit": "size limit",
    },
    "bops": {
        "cost": "bops",
        "noun": "bit operations",
        "unit": "M BOPs",
        "saving": "fewer bit operations",
        "saving_short": "fewer BOPs",
        "box": "accuracy x bit operations",
        "limit": "compute limit",
    },
}


def words(objective: str | None) -> dict[str, str]:
    """The wording of a run's objective ('size' or 'bops'; anything else reads as size)."""
    return WORDS["bops" if objective == "bops" else "size"]


def cost_of(objective: str | None) -> str:
    """The column a run minimises: size_bytes or bops."""
    return words(objective)["cost"]


def format_cost(value: float, cost: str) -> str:
    """A size in kB or a count of bit operations in millions, with its unit."""
    return f"{value / KB:.2f} kB" if cost == "size_bytes" else f"{value / 1e6:.2f} M BOPs"


# ---------------------------------------------------------------- fronts


def pareto_mask(accuracy: Sequence[float], cost: Sequence[float]) -> np.ndarray:
    """True for the points no other point dominates (higher accuracy, lower cost).

    Among exact duplicates (same accuracy and cost) only the first is kept, so
    a front has one point per trade-off.
    """
    acc = np.asarray(accuracy, dtype=float)
    cost = np.asarray(cost, dtype=float)
    order = np.lexsort((-acc, cost))  # by cost, then by accuracy descending
    keep = np.zeros(len(acc), dtype=bool)
    best = -np.inf
    for i in order:
        if acc[i] > best:
            keep[i] = True
            best = acc[i]
    return keep


def front_of(points: pd.DataFrame, cost: str = "size_bytes") -> pd.DataFrame:
    """The non-dominated rows of `points` (columns accuracy and `cost`), by cost."""
    if points.empty:
        return points.copy()
    mask = pareto_mask(points["accuracy"].to_numpy(), points[cost].to_numpy())
    return points[mask].sort_values(cost).reset_index(drop=True)


def uncovered(points: pd.DataFrame, cover: Sequence[pd.DataFrame | None], cost: str = "size_bytes") -> np.ndarray:
    """True for the points no front point or baseline sits on (same accuracy and cost).

    The chart draws those on top of the faded "tried" points; hiding the
    faded twin keeps the hover (and a click) on the point drawn on top.
    """
    keys = {
        (round(float(a), 12), round(float(c), 6))
        for df in cover
        if df is not None and len(df)
        for a, c in zip(df["accuracy"], df[cost])
    }
    return np.array(
        [(round(float(a), 12), round(float(c), 6)) not in keys for a, c in zip(points["accuracy"], points[cost])],
        dtype=bool,
    )


def best_under(
    front: pd.DataFrame, limit: float | None, cost: str = "size_bytes", min_accuracy: float | None = None
) -> pd.Series | None:
    """The most accurate row whose cost is at most `limit` (None: no limit).

    Ties go to the smaller cost. None when nothing fits.
    """
    if front.empty:
        return None
    rows = front if limit is None else front[front[cost] <= limit + 1e-9]
    if min_accuracy is not None:
        rows = rows[rows["accuracy"] >= min_accuracy - 1e-12]
    if rows.empty:
        return None
    rows = rows.sort_values(["accuracy", cost], ascending=[False, True])
    return rows.iloc[0]


def baselines(shape: ModelShape, accuracies: Sequence[float]) -> pd.DataFrame:
    """Homogeneous 2..8-bit genomes with their accuracy (given in that order)."""
    rows = []
    for b, acc in zip(range(MIN_BITS, MAX_BITS + 1), accuracies):
        g = homogeneous(b, shape.layers)
        rows.append(
            {
                "bits_all": b,
                "label": f"all {b}-bit",
                "accuracy": float(acc),
                "size_bytes": size_bytes(g, shape),
                "bops": bops(g, shape),
                "genome": g,
            }
        )
    return pd.DataFrame(rows)


def homogeneous_scores(points: pd.DataFrame) -> dict[int, float]:
    """Accuracy of the homogeneous genomes a run scored itself ({bits: accuracy}).

    A search's first population holds them, so a run's own baselines are
    usually in the store, scored exactly as its other genomes were.
    """
    out = {}
    for g, a in zip(points.get("genome", []), points.get("accuracy", [])):
        if len(set(g)) == 1:
            out[int(g[0])] = float(a)
    return out


def pick_summary(
    pick: pd.Series | dict, shape: ModelShape, reference_accuracy: float | None = None, cost: str = "size_bytes"
) -> dict:
    """Plain-language numbers for one solution against the all-8-bit model."""
    genome = tuple(int(b) for b in pick["genome"])
    full = homogeneous(MAX_BITS, shape.layers)
    size, size8 = size_bytes(genome, shape), size_bytes(full, shape)
    ops, ops8 = bops(genome, shape), bops(full, shape)
    out = {
        "accuracy": float(pick["accuracy"]),
        "size_bytes": size,
        "size_kb": size / KB,
        "smaller_pct": 100.0 * (1 - size / size8),
        "bops": ops,
        "fewer_bops_pct": 100.0 * (1 - ops / ops8),
        "size8_bytes": size8,
        "cap_pct": 100.0 * size_cap(shape),
        "cost": cost,
        "bops8": ops8,
    }
    out["saving_pct"] = out["fewer_bops_pct"] if cost == "bops" else out["smaller_pct"]
    if reference_accuracy is not None:
        out["delta_pp"] = 100.0 * (out["accuracy"] - reference_accuracy)
    return out


def front_csv(front: pd.DataFrame, sequences: int | None = None, models: Sequence[str] | None = None) -> str:
    """The front as CSV: one row per solution, one column per operator's bits.

    A spreadsheet keeps none of the page's captions, so the header says what each
    accuracy is: `val_accuracy` (the validation split the search ranked schemes on;
    optimistic for a front), measured on `val_sequences` sequences, with its 95% Wilson
    interval (`val_ci95_low`, `val_ci95_high`), of the model named in `model` (one label
    per row from `front_models`; empty when not given). Unknown n leaves those columns
    empty rather than dropping them, so every reader sees the same header.
    """
    rows = []
    for i, (_, r) in enumerate(front.iterrows()):
        acc = float(r["accuracy"])
        lo, hi = wilson_acc(acc, sequences) if sequences else (None, None)
        row = {
            "val_accuracy": acc,
            "val_sequences": sequences,
            "val_ci95_low": None if lo is None else round(lo, 4),
            "val_ci95_high": None if hi is None else round(hi, 4),
            "model": models[i] if models is not None else None,
            "size_bytes": r["size_bytes"],
            "bops": r.get("bops"),
        }
        if "generation" in r:
            row["generation"] = r["generation"]
        row.update({name: int(b) for name, b in zip(gene_names(len(r["genome"])), r["genome"])})
        rows.append(row)
    return pd.DataFrame(rows).to_csv(index=False)


def front_models(front: pd.DataFrame, config: dict, task: str) -> list[str]:
    """Which model each front row's accuracy belongs to ("post-training", "fine-tuned 1
    epoch", ...): a downloaded front keeps no caption, and a fine-tuned member's accuracy
    is not its post-training one, so each row names its model (`gruq.scheme_model.for_run`:
    the final front's fine-tuning where a member had it, else what the search scored)."""
    tuned = front["finetuned_accuracy"] if "finetuned_accuracy" in front else pd.Series([None] * len(front))
    return [
        for_run(config, task, tuple(int(b) for b in g), bool(pd.notna(t))).label for g, t in zip(front["genome"], tuned)
    ]


def run_front(points: pd.DataFrame, cost: str = "size_bytes") -> pd.DataFrame:
    """A run's front as every page shows and downloads it: the recorded front, one
    row per distinct (accuracy, cost) trade-off (see `distinct_tradeoffs`)."""
    return distinct_tradeoffs(front_frame(points, cost), cost)


def reported_front(front: pd.DataFrame) -> pd.DataFrame:
    """A front with each member's reported accuracy: after the run's final fine-tuning of the
    front (finetuned_accuracy) where it had one, else the search's. One model per scheme: the
    fine-tuned model is the one every page shows, exports and downloads for that member."""
    if "finetuned_accuracy" not in front or not front["finetuned_accuracy"].notna().any():
        return front
    return front.assign(accuracy=front["finetuned_accuracy"].fillna(front["accuracy"]))


def front_table(
    front: pd.DataFrame, shape: ModelShape, objective: str | None = "size", sequences: int | None = None
) -> pd.DataFrame:
    """The front for reading: accuracy, size, bit operations, the saving against
    all-8-bit in the run's own objective, and the bits.

    Given the `sequences` the accuracies were measured on, each accuracy shares its cell
    with its 95% Wilson interval, "97.0 (91.5-99.0)": a row read alone still says how
    sure it is, and the table keeps its width (the bits stay in view)."""
    full = homogeneous(MAX_BITS, shape.layers)
    size8, bops8 = size_bytes(full, shape), bops(full, shape)
    w = words(objective)
    rows = []
    for a, sz, ops, g in zip(front["accuracy"], front["size_bytes"], front["bops"], front["genome"]):
        saving = 1 - (ops / bops8 if w["cost"] == "bops" else sz / size8)
        column, accuracy = (
            ("acc. % (95% CI)", pct_ci(float(a), sequences)) if sequences else ("accuracy %", round(100 * float(a), 2))
        )
        rows.append(
            {
                column: accuracy,
                "size kB": round(float(sz) / KB, 3),
                "M BOPs": round(float(ops) / 1e6, 3),
                f"{w['saving_short']} than 8-bit": f"{100 * saving:.0f}%",  # short: the bits stay in view
                "bits": " ".join(map(str, g)),
            }
        )
    return pd.DataFrame(rows)


def empty_front_reason(points: pd.DataFrame, config: dict, shape: ModelShape) -> str | None:
    """Why a run that scored schemes has no front, and what to change (None if it has one).

    A front holds feasible schemes only: within the size limit and at or above
    the minimum accuracy. The sentence gives the best accuracy reached (within
    the size limit) against the minimum asked for.
    """
    if points.empty or points["feasible"].astype(bool).any():
        return None
    scored = points[points["accuracy"].notna()]
    limit = max_size_bytes(config, shape)
    fits = scored if limit is None else scored[scored["size_bytes"] <= limit + 1e-9]
    min_acc = config.get("min_accuracy")
    n = len(points)
    if not len(fits):
        return (
            f"None of the {n} schemes tried fits the size limit of {limit / KB:.2f} kB. "
            "Raise the maximum size, or widen the allowed bits of the linear operators."
        )
    best = float(fits["accuracy"].max())
    within = " within the size limit" if limit is not None else ""
    if min_acc is not None and best < min_acc:
        eight = scored[[len(set(g)) == 1 and g[0] == MAX_BITS for g in scored["genome"]]]
        ref = f" (the all-8-bit model: {100 * float(eight['accuracy'].iloc[0]):.1f}%)" if len(eight) else ""
        advice = f"Lower the minimum accuracy to {100 * best:.1f}% or less"
        advice += ", raise the maximum size" if limit is not None else ""
        if not config.get("finetune_epochs"):
            advice += ", or fine-tune each scheme (it recovers accuracy at low bits)"
        return (
            f"No scheme met the minimum accuracy of {100 * min_acc:.1f}%: the best of the {n} schemes tried"
            f"{within} reached {100 * best:.1f}%{ref}. {advice}, then launch again."
        )
    return None


# ---------------------------------------------------------------- one genome


def genome_table(genome: Sequence[int], shape: ModelShape) -> pd.DataFrame:
    """One row per gene: its layer, operator, what it computes, its bits, what the bits set, bytes.

    Stacked layers read layer by layer (the genome's order); a layer above the
    first reads the layer below's h, so its input operators have hidden x hidden weights."""
    sizes = op_bytes(genome, shape)
    eight = op_bytes(homogeneous(MAX_BITS, shape.layers), shape)
    rows = []
    for i, b in enumerate(genome):
        op = i % N_OPS
        name = OPS[op]
        linear = op in LINEAR
        rows.append(
            {
                "#": i,
                "layer": i // N_OPS,
                "operator": name,
                "computes": DESCRIPTION[name],
                "bits": int(b),
                "bits set": "weights" if linear else "output",
                "weight bytes": sizes[i],
                "bytes at 8 bits": eight[i],
            }
        )
    return pd.DataFrame(rows)


def layer_bits_table(genome: Sequence[int], shape: ModelShape) -> pd.DataFrame:
    """One row per operator, its bits and weight bytes in each layer side by side: how a
    stacked model's scheme reads per layer (`genome_table` lists the genes one by one)."""
    sizes = op_bytes(genome, shape)
    rows = []
    for op, name in enumerate(OPS):
        row: dict = {
            "operator": name,
            "computes": DESCRIPTION[name],
            "sets the": "weights" if op in LINEAR else "output",
        }
        for k in range(len(genome) // N_OPS):
            row[f"layer {k} bits"] = int(genome[k * N_OPS + op])
            row[f"layer {k} bytes"] = sizes[k * N_OPS + op]
        rows.append(row)
    return pd.DataFrame(rows)


def size_breakdown(genome: Sequence[int], shape: ModelShape) -> dict:
    """Weights per linear operator (of each layer) plus the part every genome pays (biases, head)."""
    sizes = op_bytes(genome, shape)
    names = gene_names(len(genome))
    parts = {names[i]: sizes[i] for i in weight_genes(len(genome))}
    parts["biases + head (fixed)"] = fixed_bytes(shape)
    return parts


def confusion(y_true: Sequence[int], y_pred: Sequence[int], classes: int) -> np.ndarray:
    """Counts (true class, predicted class)."""
    cm = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


# ---------------------------------------------------------------- compare


@dataclass(frozen=True)
class Clusters:
    genomes: np.ndarray  # (n, 17) in plotting order (grouped by cluster)
    labels: np.ndarray  # (n,) cluster number 1..k, in the same order
    names: list[str]  # one row label per genome
    mean_bits: pd.DataFrame  # clusters x operators


def cluster_genomes(genomes: Sequence[Sequence[int]], names: Sequence[str], k: int = 3) -> Clusters:
    """Hierarchical (Ward) clustering of bit vectors (of one layer count) into at most k groups."""
    width = len(genomes[0]) if len(genomes) else N_OPS
    columns = list(layer_names(width // N_OPS))
    G = np.asarray(genomes, dtype=float).reshape(-1, width)
    n = len(G)
    if n == 0:
        return Clusters(G.astype(int), np.zeros(0, dtype=int), [], pd.DataFrame(columns=columns))
    if n == 1 or k <= 1:
        labels = np.ones(n, dtype=int)
    else:
        from scipy.cluster.hierarchy import fcluster, linkage

        labels = fcluster(linkage(G, method="ward"), t=min(k, n), criterion="maxclust").astype(int)
    # renumber clusters by decreasing mean bits so cluster 1 is the widest
    means = {c: G[labels == c].mean() for c in np.unique(labels)}
    rank = {c: i + 1 for i, c in enumerate(sorted(means, key=lambda c: -means[c]))}
    labels = np.array([rank[c] for c in labels])
    order = np.lexsort((G.sum(axis=1) * -1, labels))
    mean_bits = pd.DataFrame(
        [G[labels == c].mean(axis=0) for c in sorted(set(labels))],
        index=[f"cluster {c}" for c in sorted(set(labels))],
        columns=columns,
    )
    return Clusters(G[order].astype(int), labels[order], [names[i] for i in order], mean_bits)


def wide_operators(genomes: Sequence[Sequence[int]], top: int = 4) -> list[tuple[str, float]]:
    """Operators with the highest mean bit width over `genomes` (of one layer count): what a task keeps wide."""
    width = len(genomes[0]) if len(genomes) else N_OPS
    G = np.asarray(genomes, dtype=float).reshape(-1, width)
    if len(G) == 0:
        return []
    mean = G.mean(axis=0)
    order = np.argsort(-mean, kind="stable")[:top]
    names = layer_names(width // N_OPS)
    return [(names[i], float(mean[i])) for i in order]


# ---------------------------------------------------------------- learn


def demo_signal(n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """A smooth test signal in [-1, 1): time and values."""
    t = np.linspace(0.0, 1.0, n)
    x = 0.6 * np.sin(2 * np.pi * 2 * t) + 0.3 * np.sin(2 * np.pi * 5 * t + 0.4)
    return t, x


def quantize_signal(x: np.ndarray, bits: int, exponent: int = 0) -> dict:
    """Round x into a signed `bits`-wide format holding |v| <= 2^exponent.

    Uses gruq.fixedpoint (the arithmetic of record): returns the codes, the
    values they stand for, the error and its RMS, and the format's step.
    """
    fmt = fixedpoint.Format(bits, fixedpoint.frac_bits(bits, exponent))
    codes = fixedpoint.quantize(x, fmt)
    values = np.ldexp(codes.astype(np.float64), -fmt.frac)
    err = values - x
    return {
        "format": fmt,
        "codes": codes,
        "values": values,
        "error": err,
        "rms": float(np.sqrt(np.mean(err**2))),
        "step": 2.0**-fmt.frac,
    }


def rms_by_bits(x: np.ndarray, bits: Iterable[int] = range(MIN_BITS, MAX_BITS + 1), exponent: int = 0) -> pd.DataFrame:
    """RMS rounding error of x for each bit width, with the uniform-noise estimate step/sqrt(12)."""
    rows = []
    for b in bits:
        q = quantize_signal(x, b, exponent)
        rows.append({"bits": b, "rms": q["rms"], "step": q["step"], "estimate": q["step"] / np.sqrt(12)})
    return pd.DataFrame(rows)


def format_range(fmt: fixedpoint.Format) -> dict:
    """The real values a format covers, in words: lowest, highest, step, and what its
    fraction bits mean (negative ones make the step larger than 1)."""
    step = 2.0**-fmt.frac
    out = {"lo": fmt.lo * step, "hi": fmt.hi * step, "step": step}
    if fmt.frac < 0:
        out["note"] = (
            f"{fmt.frac} fraction bits: a negative count means the step is larger than 1, so each code "
            f"counts {step:g} and the codes {fmt.lo}..{fmt.hi} stand for {out['lo']:g} to {out['hi']:g} in steps of "
            f"{step:g}: the value is code x 2^{-fmt.frac}"
        )
    else:
        bits = "fraction bit" if fmt.frac == 1 else "fraction bits"
        out["note"] = f"{fmt.frac} {bits}: the value is code x 2^-{fmt.frac}, in steps of {step:g}"
    return out


def sigmoid_lut(in_bits: int, out_bits: int, in_exponent: int = 3) -> dict:
    """The sigmoid look-up table gruq builds: signed input of `in_bits` holding
    |v| <= 2^in_exponent, unsigned output with scale 2^-out_bits (as sig_r and sig_z).

    Returns input values, LUT outputs (as real values), the true sigmoid and
    the largest error over the table.
    """
    fin = fixedpoint.Format(in_bits, fixedpoint.frac_bits(in_bits, in_exponent))
    fout = fixedpoint.Format(out_bits, out_bits, signed=False)
    lut = fixedpoint.activation_lut(fixedpoint.sigmoid, fin, fout)
    codes = np.arange(fin.lo, fin.hi + 1)
    xin = np.ldexp(codes.astype(np.float64), -fin.frac)
    yout = np.ldexp(lut.astype(np.float64), -fout.frac)
    true = fixedpoint.sigmoid(xin)
    return {
        "x": xin,
        "lut": yout,
        "true": true,
        "entries": len(lut),
        "max_error": float(np.abs(yout - true).max()),
        "in_format": fin,
        "out_format": fout,
    }


def scheme_file_name(genome: Sequence[int], ext: str, run_id: int | None = None, task: str | None = None) -> str:
    """A download's file name after the run and the scheme, "gruq-run3-88765432887654328.json":
    downloads of several schemes neither overwrite nor shadow each other, and the name says
    which is which. The bits are one digit per operator (layers joined by "-"), "all8" when
    every operator has the same width; without a run, the task's name (a file's stem) stands
    for it. Only letters, digits, "-", "_" and ".": safe on every file system."""
    bits = [int(b) for b in genome]
    if len(set(bits)) == 1:
        scheme = f"all{bits[0]}"
    else:
        scheme = "-".join("".join(map(str, bits[i : i + N_OPS])) for i in range(0, len(bits), N_OPS))
    if run_id is not None:
        origin = f"run{int(run_id)}"
    else:
        origin = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(task or "scheme").stem).strip("_")[:40] or "scheme"
    return f"gruq-{origin}-{scheme}.{re.sub(r'[^A-Za-z0-9]', '', ext)}"


def front_file_name(run_id: int, generations_done: int) -> str:
    """The front CSV's file name, "gruq-run3-gen7-front.csv": the front grows while the run
    goes, so a download after 7 finished generations and one after 9 neither overwrite nor
    shadow each other, and the name says how far the run had come."""
    return f"gruq-run{int(run_id)}-gen{int(generations_done)}-front.csv"


def genome_from(value: object) -> Genome:
    """A genome from a list, tuple, JSON text or comma-separated text (the Explorer's address):
    one width (for every operator) or 17 per layer. Text that is no list of integers is a
    GruqError in the page's words, not the command line's flag nor a JSON parser's."""
    import json

    from gruq.genome import layers_of, validate, widths

    given = value
    try:
        if isinstance(value, str) and value.strip().startswith("["):
            value = json.loads(value)
        if isinstance(value, str):
            bits = widths(value)
        else:
            bits = [int(v) for v in value]  # type: ignore[union-attr]
    except (ValueError, TypeError):  # json.JSONDecodeError is a ValueError
        raise GruqError(
            f"the bits must be one width, or {N_OPS} per layer, as comma-separated integers; got {given!r}"
        ) from None
    return validate(bits, layers_of(bits))


# ---------------------------------------------------------------- runs (store rows -> tables)


def points_frame(individuals: Sequence[dict]) -> pd.DataFrame:
    """The store's individuals as a table; `genome` holds the bits as a tuple."""
    cols = ["genome", "accuracy", "size_bytes", "bops", "generation", "feasible", "on_front", "finetuned_accuracy"]
    if not individuals:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(list(individuals))
    df["genome"] = [tuple(int(b) for b in bits) for bits in df["bits"]]
    return df.drop(columns=["bits"])[cols]


def front_frame(points: pd.DataFrame, cost: str = "size_bytes") -> pd.DataFrame:
    """The latest front the run recorded (on_front), by cost; recomputed from feasible
    points if the run has not marked one yet."""
    if points.empty:
        return points.copy()
    marked = points[points["on_front"].astype(bool)]
    if len(marked):
        return marked.sort_values([cost, "accuracy"], ascending=[True, False]).reset_index(drop=True)
    return front_of(points[points["feasible"].astype(bool)], cost)


def distinct_tradeoffs(front: pd.DataFrame, cost: str = "size_bytes") -> pd.DataFrame:
    """One row per (accuracy, cost) point of a front.

    Genomes that differ only in operators that change neither size nor
    accuracy share a point; the one with the fewest bit operations (then the
    fewest bits in total) stands for it, and `alike` counts the others.
    """
    if front.empty:
        return front.assign(alike=pd.Series(dtype=int))
    df = front.assign(_total=[sum(g) for g in front["genome"]])
    df = df.sort_values([cost, "accuracy", "bops", "_total"], ascending=[True, False, True, True])
    df = df.assign(alike=df.groupby([cost, "accuracy"])["accuracy"].transform("size") - 1)
    out = df.drop_duplicates([cost, "accuracy"], keep="first")
    return out.drop(columns="_total").reset_index(drop=True)


def max_size_bytes(config: dict, shape: ModelShape) -> float | None:
    """The run's size limit in bytes, whichever way it was given."""
    if config.get("max_size_bytes") is not None:
        return float(config["max_size_bytes"])
    if config.get("max_size_kb") is not None:
        return float(config["max_size_kb"]) * KB
    if config.get("max_size_pct") is not None:
        return float(config["max_size_pct"]) / 100.0 * size_bytes(homogeneous(MAX_BITS, shape.layers), shape)
    return None


def _time(text: str | None):
    from datetime import datetime

    return datetime.fromisoformat(text) if text else None


def progress(run: dict, curve: Sequence[dict], now=None) -> dict:
    """Fraction done, elapsed and estimated remaining seconds of a run.

    Elapsed time counts the time the run was queued or running (see
    `run_stretches`): from the launch (the run process's start-up included)
    to its end, without the time it sat cancelled or failed before a resume.
    The remaining time comes from the pace of finished generations (over the
    same stretches) and counts down while a generation runs (it never grows
    with the time spent inside one); it never drops below the generations
    still to start.
    """
    from datetime import datetime

    now = now or datetime.now(UTC)
    planned = max(int(run["generations"]), 1)
    done = int(run["generations_done"])
    stretches = run_stretches(run, curve, now)
    started = _time(run.get("started_at"))
    remaining = None
    if run["status"] == "running" and done and started:
        ends = [_time(c.get("finished_at")) for c in curve[:done]]
        ends = [t for t in ends if t is not None]
        last = ends[-1] if ends else now
        # generation 0 carries the start of the run (baselines, first loads): use the later pace when known
        per_gen = _overlap(stretches, ends[0], ends[-1]) / (len(ends) - 1) if len(ends) > 1 else None
        if not per_gen:
            per_gen = _overlap(stretches, started, last) / done
        left = planned - done
        since = max(0.0, (now - last).total_seconds())
        remaining = max(per_gen * (left - 1), per_gen * left - since, 0.0)
    elif run["status"] == "finished":
        remaining = 0.0
    return {
        "fraction": min(1.0, done / planned),
        "done": done,
        "planned": planned,
        "elapsed": sum(max(0.0, (b - a).total_seconds()) for a, b in stretches),
        "remaining": remaining,
    }


ACTIVE = ("queued", "running")


def run_stretches(run: dict, curve: Sequence[dict], now) -> list[tuple]:
    """The (start, end) times during which a run was queued or running, from its
    recorded changes of status (the store's `events`).

    A launch or a resume starts a stretch (a claim right after it continues
    it); a finish, a failure or a cancel ends it. A process that died without
    a word (kill -9) ended its stretch at its last recorded generation, as does
    a run whose process is gone now. Runs recorded before the store kept their
    events have one stretch: from the launch to the end.
    """
    events = run.get("events") or []
    generations = [t for t in (_time(c.get("finished_at")) for c in curve) if t is not None]

    def died(start, before):  # the last sign of life of a process that stopped unrecorded
        return max([start, *(t for t in generations if start <= t <= before)])

    if not events:
        created = _time(run.get("created_at")) or _time(run.get("started_at"))
        finished = _time(run.get("finished_at"))
        end = finished if finished and run["status"] not in ACTIVE else now
        return [(created, end)] if created else []
    out, start, previous = [], None, None
    for event in events:
        at, status = _time(event["at"]), event["status"]
        if start is not None and (status not in ACTIVE or (previous, status) != ("queued", "running")):
            out.append((start, at if status not in ACTIVE else died(start, at)))
            start = None
        if start is None and status in ACTIVE:
            start = at
        previous = status
    if start is not None:
        out.append((start, now if run.get("alive", True) else died(start, now)))
    return out


def _overlap(stretches: Sequence[tuple], a, b) -> float:
    """Seconds of [a, b] inside the stretches."""
    return sum(max(0.0, (min(b, e) - max(a, s)).total_seconds()) for s, e in stretches)


def stop_note(run: dict) -> str | None:
    """What to tell about a run that stopped before its end (None if it did not)."""
    status, error = run["status"], run.get("error") or ""
    if status == "cancelled":
        how = " with Ctrl+C" if "SIGINT" in error else ""
        return f"Run {run['run_id']} was cancelled{how}. Resume continues it from its last finished generation."
    if status == "failed":
        return f"Run {run['run_id']} failed: {error or 'its process stopped without saying why'}"
    return None


def status_text(run: dict) -> str:
    """A run's status as a person would say it (the stored error says which signal stopped it)."""
    status, error = run["status"], run.get("error") or ""
    if status in ("queued", "running") and not run.get("alive", True):
        return f"{status}, but its process has stopped (was the machine restarted?)"
    if status == "cancelled":
        if "SIGINT" in error:
            return "stopped with Ctrl+C"
        return "cancelled"
    return status


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {(s % 3600) // 60:02d}m"


def hypervolume_frame(curve: Sequence[dict]) -> pd.DataFrame:
    if not curve:
        return pd.DataFrame(columns=["generation", "hypervolume"])
    return pd.DataFrame({"generation": [c["gen"] for c in curve], "hypervolume": [c["hypervolume"] for c in curve]})


def config_summary(config: dict) -> list[str]:
    """The settings of a run in words, for a caption."""
    parts = [
        f"objective: {'bit operations' if config.get('objective') == 'bops' else 'model size'}",
        f"population {config.get('pop')}",
        f"{config.get('gens')} generations" if config.get("gens") is not None else "no generation limit",
        f"seed {config.get('seed')}",
    ]
    if config.get("budget") is not None:
        parts.append(f"budget {config['budget']} scorings")
    if config.get("max_size_kb") is not None:
        parts.append(f"max size {config['max_size_kb']:g} kB")
    if config.get("max_size_pct") is not None:
        parts.append(f"max size {config['max_size_pct']:g}% of all-8-bit")
    if config.get("max_size_bytes") is not None:
        parts.append(f"max size {config['max_size_bytes']:g} bytes")
    if config.get("min_accuracy") is not None:
        parts.append(f"min accuracy {100 * config['min_accuracy']:g}%")
    if config.get("finetune_epochs"):
        parts.append(f"{config['finetune_epochs']} fine-tuning epochs per scheme")
    if config.get("checkpoint"):
        parts.append(f"float model {Path(config['checkpoint']).name}")
    for op, (lo, hi) in (config.get("bits_ranges") or {}).items():
        parts.append(f"{op} {lo}-{hi} bits")
    for op, b in (config.get("pins") or {}).items():
        parts.append(f"{op} pinned at {b}")
    return parts
