"""Plotly figures for the app: the Pareto chart, the GRU cell diagram, and others.

Plotly only (no Streamlit), so every figure can be built and checked in a unit
test. Inputs are the tables of `gruq.views`. Accuracy is plotted in percent
and size in kB (1000 bytes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from gruq.genome import MAX_BITS, MIN_BITS
from gruq.ops import DESCRIPTION, LINEAR, OPS, layer_names
from gruq.views import KB, uncovered

# 2 bits = red (aggressive) ... 8 bits = blue (safe): one colour per width.
BIT_SCALE = "RdYlBu"
BIT_COLORS: dict[int, str] = {
    b: c for b, c in zip(range(MIN_BITS, MAX_BITS + 1), sample_colorscale(BIT_SCALE, np.linspace(0.02, 0.98, 7)))
}
FRONT_COLOR = "#111111"
BEST_COLOR = "#d62728"
BASELINE_COLOR = "#7f7f7f"
FONT = dict(family="Source Sans Pro, sans-serif", size=13)


def bit_color(bits: int) -> str:
    return BIT_COLORS[int(bits)]


def bit_css(bits: float) -> str:
    """CSS for a table cell holding a (mean) bit width, coloured as in the charts."""
    b = int(round(min(max(float(bits), MIN_BITS), MAX_BITS)))
    return f"background-color: {BIT_COLORS[b]}; color: {_text_color(b)}"


def _text_color(bits: int) -> str:
    return "white" if bits in (2, 8) else "black"


COST_LABEL = {
    "size_bytes": "model size (kB)",
    "bops": "bit operations per sequence (millions)",
    "size_pct": "model size (% of the all-8-bit model)",
    "bops_pct": "bit operations (% of the all-8-bit model)",
}


_UNIT = {"size_bytes": " kB", "bops": " M BOPs", "size_pct": "% of all-8-bit", "bops_pct": "% of all-8-bit"}


def _cost_values(df: pd.DataFrame, cost: str) -> np.ndarray:
    v = df[cost].to_numpy(dtype=float)
    if cost == "size_bytes":
        return v / KB
    if cost == "bops":
        return v / 1e6
    return v


def _fmt_cost(value: float, cost: str) -> str:
    return f"{value / KB:.2f} kB" if cost == "size_bytes" else f"{value / 1e6:.2f} M BOPs"


def _bits_text(genome: Sequence[int]) -> str:
    """The bits for a hover: name=bits, six a line; a stacked genome one line per layer (in OPS order)."""
    g = list(genome)
    if len(g) > len(OPS):
        n = len(OPS)
        return "<br>".join(f"layer {k // n}: " + " ".join(map(str, g[k : k + n])) for k in range(0, len(g), n))
    return "<br>".join(", ".join(f"{OPS[i]}={g[i]}" for i in range(j, min(j + 6, len(g)))) for j in range(0, len(g), 6))


# ---------------------------------------------------------------- Pareto chart


def front_chart(
    points: pd.DataFrame,
    front: pd.DataFrame,
    base: pd.DataFrame | None = None,
    *,
    cost: str = "size_bytes",
    limit: float | None = None,
    best: pd.Series | None = None,
    best_text: str | None = None,
    min_accuracy: float | None = None,
    title: str | None = None,
    generations: int | None = None,
) -> go.Figure:
    """Accuracy against size (or BOPs): every scored genome faded and coloured by
    generation, the current front as a step line, homogeneous baselines, the
    size limit as a shaded area, and the best solution under it annotated.

    Trace order is fixed (tests and the browser rely on it): 0 the genomes
    tried (but those a front point or baseline sits on, see
    `views.uncovered`), 1 baselines, 2 front. Traces 0 and 2 carry their row
    index in `points` and `front` as customdata.
    """
    fig = go.Figure()
    gmax = generations if generations is not None else (int(points["generation"].max()) if len(points) else 0)
    unit = " kB" if cost == "size_bytes" else " M BOPs" if cost == "bops" else "%"
    rows = np.flatnonzero(uncovered(points, [front, base], cost)) if len(points) else np.array([], dtype=int)
    points = points.iloc[rows]
    fig.add_trace(
        go.Scatter(
            x=_cost_values(points, cost) if len(points) else [],
            y=100 * points["accuracy"] if len(points) else [],
            mode="markers",
            name="every scheme tried",
            marker=dict(
                size=7,
                opacity=0.45,
                color=points["generation"] if len(points) else [],
                colorscale="Viridis",
                cmin=0,
                cmax=max(gmax, 1),
                line=dict(width=0),
                colorbar=dict(title=dict(text="generation"), thickness=12, len=0.6, y=0.3, x=1.02),
            ),
            customdata=rows,
            hovertemplate="generation %{marker.color}<br>accuracy %{y:.1f}%<br>%{x:.2f}"
            + unit
            + "<extra>tried</extra>",
        )
    )
    if base is not None and len(base):
        fig.add_trace(
            go.Scatter(
                x=_cost_values(base, cost),
                y=100 * base["accuracy"],
                mode="markers+text+lines",
                name="same bits everywhere (2..8)",
                text=[f"{b}-bit" for b in base["bits_all"]],
                textposition="bottom right",
                textfont=dict(color=BASELINE_COLOR, size=11),
                line=dict(color=BASELINE_COLOR, dash="dot", width=1),
                marker=dict(symbol="diamond", size=10, color=BASELINE_COLOR),
                hovertemplate="all %{text}<br>accuracy %{y:.1f}%<br>%{x:.2f}" + unit + "<extra>baseline</extra>",
            )
        )
    else:
        fig.add_trace(go.Scatter(x=[], y=[], mode="markers", name="same bits everywhere (2..8)", showlegend=False))
    fx = _cost_values(front, cost) if len(front) else np.array([])
    fy = 100 * front["accuracy"].to_numpy() if len(front) else np.array([])
    hover = [_bits_text(g) for g in front["genome"]] if len(front) else []
    fig.add_trace(
        go.Scatter(
            x=fx,
            y=fy,
            mode="lines+markers",
            name="best trade-offs (Pareto front) — click one",
            line=dict(shape="hv", color=FRONT_COLOR, width=2.5),
            marker=dict(size=12, color=FRONT_COLOR, line=dict(color="white", width=1.5)),
            customdata=np.arange(len(front)),
            text=hover,
            hovertemplate="accuracy %{y:.1f}%<br>%{x:.2f}" + unit + "<br>%{text}<extra>front: click to inspect</extra>",
        )
    )
    all_x = np.concatenate(
        [
            fx,
            _cost_values(points, cost) if len(points) else [],
            _cost_values(base, cost) if base is not None and len(base) else [],
        ]
    )
    ys = np.concatenate(
        [
            fy,
            100 * points["accuracy"].to_numpy() if len(points) else [],
            100 * base["accuracy"].to_numpy() if base is not None and len(base) else [],
        ]
    )
    top_y = 100.0
    if len(ys):
        # keep the useful region readable: a 2-bit baseline at chance level should not squash the front
        useful = np.concatenate([fy, 100 * points["accuracy"].to_numpy() if len(points) else []])
        low = float(np.percentile(useful, 5)) if len(useful) else float(ys.min())
        low = max(0.0, min(low, float(fy.min()) if len(fy) else low) - 5)
        high = float(ys.max())
        if min_accuracy is not None:  # keep the minimum-accuracy line in view, even when no scheme reaches it
            high = max(high, 100 * min_accuracy)
        top = min(high + 0.06 * (high - low) + 1, max(100.0, high + 1))
        top_y = top + 0.04 * (top - low)  # just above the plot area: the best-pick callout
        fig.update_yaxes(range=[low, top])
    if limit is not None:
        lx = limit / KB if cost == "size_bytes" else limit / 1e6
        right = max(float(all_x.max()) if len(all_x) else lx, lx) * 1.08
        fig.add_vrect(x0=lx, x1=right, fillcolor="#999999", opacity=0.12, line_width=0, layer="below")
        fig.add_vline(x=lx, line=dict(color=BEST_COLOR, dash="dash", width=2))
        fig.add_annotation(
            x=lx,
            y=0.0,
            yref="paper",
            text=f"your limit, {_fmt_cost(limit, cost)} · too big →",
            showarrow=False,
            xanchor="left",
            yanchor="bottom",
            font=dict(color=BEST_COLOR),
            bgcolor="rgba(255,255,255,0.85)",
            xshift=4,
            yshift=4,
        )
    if min_accuracy is not None:
        fig.add_hline(
            y=100 * min_accuracy,
            line=dict(color="#ff7f0e", dash="dot", width=1.5),
            annotation_text=f"minimum accuracy {100 * min_accuracy:.1f}%",
            annotation_position="bottom left",
        )
    if best is not None:
        bx = float(best[cost]) / KB if cost == "size_bytes" else float(best[cost]) / 1e6
        by = 100 * float(best["accuracy"])
        fig.add_trace(
            go.Scatter(
                x=[bx],
                y=[by],
                mode="markers",
                name="best under the limit",
                marker=dict(symbol="star", size=22, color=BEST_COLOR, line=dict(color="white", width=1)),
                hoverinfo="skip",
            )
        )
        # the callout sits above the plot area, where it hides no point, with an arrow down to the star
        x_lo, x_hi = (float(all_x.min()), float(all_x.max())) if len(all_x) else (bx, bx)
        right_half = bx > (x_lo + x_hi) / 2
        fig.add_annotation(
            x=bx,
            y=by,
            text=best_text or f"best: {by:.1f}%",
            showarrow=True,
            arrowhead=2,
            arrowwidth=1.5,
            arrowcolor=BEST_COLOR,
            axref="x",
            ayref="y",
            ax=bx,
            ay=top_y,
            xanchor="right" if right_half else "left",
            yanchor="bottom",
            bgcolor="rgba(255,255,255,0.95)",
            bordercolor=BEST_COLOR,
            borderpad=4,
            font=dict(color="#222", size=13),
            align="left",
        )
    fig.update_layout(
        title=title,
        font=FONT,
        height=600,
        margin=dict(l=60, r=20, t=110 if title else 80, b=10),
        xaxis_title=COST_LABEL.get(cost, cost),
        yaxis_title="accuracy on validation data (%)",
        legend=dict(orientation="h", yanchor="top", y=-0.14, x=0, bgcolor="rgba(255,255,255,0)"),
        hovermode="closest",
        clickmode="event+select",
        plot_bgcolor="white",
        dragmode="zoom",
        uirevision="front",
    )
    fig.update_xaxes(showgrid=True, gridcolor="#eeeeee", zeroline=False)
    fig.update_yaxes(showgrid=True, gridcolor="#eeeeee", zeroline=False, ticksuffix="%")
    return fig


def hypervolume_chart(hv: pd.DataFrame, generations: int | None = None) -> go.Figure:
    """Hypervolume per generation (columns generation, hypervolume)."""
    fig = go.Figure(
        go.Scatter(
            x=hv["generation"],
            y=hv["hypervolume"],
            mode="lines+markers",
            line=dict(color="#1f77b4"),
            hovertemplate="generation %{x}: %{y:.4f}<extra></extra>",
        )
    )
    fig.update_layout(
        font=FONT,
        height=260,
        margin=dict(l=50, r=10, t=10, b=40),
        xaxis_title="generation",
        yaxis_title="hypervolume",
        plot_bgcolor="white",
    )
    if generations:
        fig.update_xaxes(range=[-0.3, generations + 0.3])
    if len(hv):
        lo, hi = float(hv["hypervolume"].min()), float(hv["hypervolume"].max())
        pad = max(0.02, 0.1 * (hi - lo))
        fig.update_yaxes(range=[max(0.0, lo - pad), min(1.0, hi + pad)])
    fig.update_xaxes(showgrid=True, gridcolor="#eeeeee", dtick=1 if (generations or 0) <= 20 else None)
    fig.update_yaxes(showgrid=True, gridcolor="#eeeeee")
    return fig


def fronts_overlay(fronts: Mapping[str, pd.DataFrame], cost: str = "size_bytes") -> go.Figure:
    """Several runs' fronts on one chart, as step lines."""
    from plotly.colors import qualitative

    fig = go.Figure()
    palette = qualitative.D3
    for i, (name, front) in enumerate(fronts.items()):
        if not len(front):
            continue
        color = palette[i % len(palette)]
        fig.add_trace(
            go.Scatter(
                x=_cost_values(front, cost),
                y=100 * front["accuracy"],
                mode="lines+markers",
                name=name,
                line=dict(shape="hv", width=2, color=color),
                marker=dict(size=8, color=color),
                hovertemplate="%{y:.1f}% at %{x:.2f}" + _UNIT.get(cost, "") + "<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(
        font=FONT,
        height=460,
        margin=dict(l=60, r=20, t=20, b=50),
        plot_bgcolor="white",
        xaxis_title=COST_LABEL.get(cost, cost),
        yaxis_title="accuracy on validation data (%)",
        showlegend=True,  # even for one run: the legend names it (task, seed, objective, fine-tuning)
        legend=dict(orientation="h", yanchor="bottom", y=1.01, x=0),
    )
    fig.update_xaxes(showgrid=True, gridcolor="#eeeeee")
    fig.update_yaxes(showgrid=True, gridcolor="#eeeeee", ticksuffix="%")
    return fig


def _distinct(names: Sequence[str]) -> list[str]:
    """The names with each repeat numbered ("x", "x (2)", ...): Plotly draws rows of one
    name as a single row, so two front members of equal accuracy and size would merge."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def bits_heatmap(genomes: np.ndarray, row_names: Sequence[str], labels: Sequence[int] | None = None) -> go.Figure:
    """Bits per operator (columns) for each genome (rows), coloured like the cell diagram."""
    width = np.asarray(genomes).shape[-1] if np.asarray(genomes).size else len(OPS)
    G = np.asarray(genomes).reshape(-1, width)
    names = list(row_names)
    if labels is not None:
        names = [f"[c{c}] {n}" for c, n in zip(labels, names)]
    names = _distinct(names)
    scale = [[(b - MIN_BITS) / (MAX_BITS - MIN_BITS), BIT_COLORS[b]] for b in range(MIN_BITS, MAX_BITS + 1)]
    fig = go.Figure(
        go.Heatmap(
            z=G,
            x=list(layer_names(max(1, width // len(OPS)))),
            y=names,
            zmin=MIN_BITS,
            zmax=MAX_BITS,
            colorscale=scale,
            text=G,
            texttemplate="%{text}",
            colorbar=dict(title=dict(text="bits"), tickvals=list(range(MIN_BITS, MAX_BITS + 1))),
            hovertemplate="%{y}<br>%{x}: %{z} bits<extra></extra>",
            xgap=1,
            ygap=1,
        )
    )
    if labels is not None and len(labels):
        # a line between clusters
        lab = list(labels)
        for i in range(1, len(lab)):
            if lab[i] != lab[i - 1]:
                fig.add_hline(y=i - 0.5, line=dict(color="black", width=2))
    fig.update_layout(
        font=FONT,
        height=max(260, 22 * len(G) + 120),
        margin=dict(l=10, r=10, t=20, b=60),
        yaxis=dict(autorange="reversed"),
        xaxis=dict(tickangle=-45, side="bottom"),
    )
    return fig


def confusion_chart(cm: np.ndarray, labels: Sequence[str] | None = None) -> go.Figure:
    cm = np.asarray(cm)
    labels = list(labels) if labels is not None else [str(i) for i in range(len(cm))]
    fig = go.Figure(
        go.Heatmap(
            z=cm,
            x=labels,
            y=labels,
            colorscale="Blues",
            text=cm,
            texttemplate="%{text}",
            hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>",
            showscale=False,
        )
    )
    fig.update_layout(
        font=FONT,
        height=360,
        margin=dict(l=60, r=10, t=10, b=50),
        xaxis_title="predicted class",
        yaxis_title="true class",
        yaxis=dict(autorange="reversed", type="category"),
        xaxis=dict(type="category"),
    )
    return fig


def size_bars(parts: Mapping[str, float], eight: Mapping[str, float] | None = None) -> go.Figure:
    """Bytes per part of the model (six weight matrices and the fixed part)."""
    names = list(parts)
    fig = go.Figure()
    if eight is not None:
        fig.add_trace(go.Bar(x=names, y=[eight[n] for n in names], name="at 8 bits", marker_color="#dddddd"))
    fig.add_trace(go.Bar(x=names, y=[parts[n] for n in names], name="this scheme", marker_color="#1f77b4"))
    fig.update_layout(
        font=FONT,
        height=300,
        barmode="overlay",
        margin=dict(l=50, r=10, t=10, b=60),
        yaxis_title="bytes",
        legend=dict(orientation="h", y=1.08),
        plot_bgcolor="white",
    )
    return fig


# ---------------------------------------------------------------- GRU cell diagram

# (x, y) of each box: the reset gate on top, the candidate n in the middle,
# the update gate below, the new state on the right.
_POS: dict[str, tuple[float, float]] = {
    "lin_xr": (2.0, 12.0),
    "lin_hr": (2.0, 10.8),
    "add_r": (4.4, 11.4),
    "sig_r": (6.8, 11.4),
    "lin_xn": (2.0, 8.6),
    "lin_hn": (2.0, 7.4),
    "mul_rn": (6.8, 7.4),
    "add_n": (9.2, 8.0),
    "tanh_n": (11.6, 8.0),
    "lin_xz": (2.0, 5.2),
    "lin_hz": (2.0, 4.0),
    "add_z": (4.4, 4.6),
    "sig_z": (6.8, 4.6),
    "sub_z": (9.2, 5.6),
    "mul_zn": (14.0, 6.8),
    "mul_zh": (14.0, 3.2),
    "add_h": (16.4, 5.0),
}
_OUT = (18.6, 5.0)
_EDGES: list[tuple[str, str]] = [
    ("lin_xr", "add_r"),
    ("lin_hr", "add_r"),
    ("add_r", "sig_r"),
    ("lin_xz", "add_z"),
    ("lin_hz", "add_z"),
    ("add_z", "sig_z"),
    ("sig_r", "mul_rn"),
    ("lin_hn", "mul_rn"),
    ("lin_xn", "add_n"),
    ("mul_rn", "add_n"),
    ("add_n", "tanh_n"),
    ("sig_z", "sub_z"),
    ("sub_z", "mul_zn"),
    ("tanh_n", "mul_zn"),
    ("sig_z", "mul_zh"),
    ("mul_zn", "add_h"),
    ("mul_zh", "add_h"),
    ("add_h", "h_t"),
]
_W, _H = 1.8, 0.95  # box size in data units
_SHORT = {
    **DESCRIPTION,
    "add_h": "mul_zn + mul_zh",
    "sig_r": "sigmoid(add_r)",
    "sig_z": "sigmoid(add_z)",
    "tanh_n": "tanh(add_n)",
}


def _edge_points(a: str, b: str) -> tuple[float, float, float, float]:
    """Arrow from a's right edge to b's left edge (or bottom to top when stacked)."""
    (x0, y0), (x1, y1) = _POS[a], _POS.get(b, _OUT)
    if abs(x1 - x0) < 1e-9:
        return x0, y0 - _H / 2, x1, y1 + _H / 2
    wb = _W if b in _POS else 1.9
    return x0 + _W / 2, y0, x1 - wb / 2, y1


def _arrow(x0: float, y0: float, x1: float, y1: float, text: str = "", color: str = "#666666") -> dict:
    return dict(
        x=x1,
        y=y1,
        ax=x0,
        ay=y0,
        xref="x",
        yref="y",
        axref="x",
        ayref="y",
        text=text,
        showarrow=True,
        arrowhead=2,
        arrowsize=1,
        arrowwidth=1.3,
        arrowcolor=color,
        font=dict(size=11, color="#333333"),
        xanchor="right" if text else "auto",
    )


def cell_diagram(genome: Sequence[int] | None = None, *, height: int = 460, title: str | None = None) -> go.Figure:
    """The GRU cell as boxes and arrows, each operator coloured by its bit width.

    Without a genome the boxes are neutral and show what each operator computes.
    Linear operators (weights) are drawn with a thick border: only their bits
    change the model's size.
    """
    # annotations and shapes are collected and set once: plotly re-validates the whole list on
    # every add_annotation, which made this figure cost 0.6 s of CPU (now 0.03 s)
    fig = go.Figure()
    notes: list[dict] = [_arrow(*_edge_points(a, b)) for a, b in _EDGES]
    shapes: list[dict] = []
    for i in (0, 1, 4, 5, 8, 9):  # inputs of the linear operators
        name = OPS[i]
        x, y = _POS[name]
        src = "x<sub>t</sub>" if name.startswith("lin_x") else "h<sub>t-1</sub>"
        notes.append(_arrow(0.45, y, x - _W / 2, y, src))
    x, y = _POS["mul_zh"]
    notes.append(_arrow(x, 1.5, x, y - _H / 2, ""))
    notes.append(dict(x=x, y=1.5, text="h<sub>t-1</sub>", showarrow=False, yanchor="top", font=dict(size=11)))
    hx, hy, htext = [], [], []
    for i, name in enumerate(OPS):
        x, y = _POS[name]
        if genome is None:
            fill, tc = "#eef2f7", "black"
            label = f"<b>{name}</b><br><span style='font-size:10px'>{_SHORT[name]}</span>"
        else:
            b = int(genome[i])
            fill, tc, label = bit_color(b), _text_color(b), f"<b>{name}</b><br>{b} bits"
        linear = i in LINEAR
        shapes.append(
            dict(
                type="rect",
                x0=x - _W / 2,
                x1=x + _W / 2,
                y0=y - _H / 2,
                y1=y + _H / 2,
                fillcolor=fill,
                line=dict(color="#222222", width=3 if linear else 1),
                layer="above",
            )
        )
        notes.append(dict(x=x, y=y, text=label, showarrow=False, font=dict(color=tc, size=12)))
        hx.append(x)
        hy.append(y)
        what = "weights" if linear else "output"
        bits = f"{int(genome[i])}-bit {what}" if genome is not None else f"its bits set the {what}"
        htext.append(f"<b>{i}. {name}</b>: {DESCRIPTION[name]}<br>{bits}")
    ox, oy = _OUT
    shapes.append(
        dict(
            type="rect",
            x0=ox - 0.95,
            x1=ox + 0.95,
            y0=oy - 0.85,
            y1=oy + 0.85,
            fillcolor="white",
            line=dict(color="#444444", width=1, dash="dot"),
        )
    )
    notes.append(
        dict(
            x=ox,
            y=oy,
            text="new state h<sub>t</sub><br><span style='font-size:10px'>(h<sub>t-1</sub> of the<br>next step)</span>",
            showarrow=False,
            font=dict(size=11),
        )
    )
    for label, y in (("reset gate r", 12.75), ("candidate n", 9.35), ("update gate z", 5.95)):
        notes.append(
            dict(
                x=1.1,
                y=y,
                text=f"<i>{label}</i>",
                showarrow=False,
                xanchor="left",
                yanchor="bottom",
                font=dict(size=11, color="#555555"),
            )
        )
    fig.add_trace(
        go.Scatter(
            x=hx,
            y=hy,
            mode="markers",
            marker=dict(size=40, opacity=0, symbol="square"),
            text=htext,
            hovertemplate="%{text}<extra></extra>",
            showlegend=False,
        )
    )
    if genome is not None:
        for b in range(MIN_BITS, MAX_BITS + 1):  # a legend for the colours
            fig.add_trace(
                go.Scatter(
                    x=[None],
                    y=[None],
                    mode="markers",
                    name=f"{b} bits",
                    marker=dict(symbol="square", size=13, color=bit_color(b)),
                )
            )
    fig.update_xaxes(visible=False, range=[-0.6, 19.8], fixedrange=True)
    fig.update_yaxes(visible=False, range=[1.0, 13.4], fixedrange=True)
    fig.update_layout(
        annotations=notes,
        shapes=shapes,
        height=height,
        margin=dict(l=5, r=5, t=35 if title else 5, b=5),
        plot_bgcolor="white",
        title=title,
        font=FONT,
        showlegend=genome is not None,
        legend=dict(
            orientation="h",
            y=-0.01,
            yanchor="top",
            x=0.5,
            xanchor="center",
            title_text="bits (thick border: weights, which set the model size)",
        ),
    )
    return fig


def layer_diagrams(genome: Sequence[int], *, height: int = 460) -> list[go.Figure]:
    """One cell diagram per layer of a genome (17 genes each), titled "layer 0", "layer 1", ...

    A one-layer genome gives the one untitled diagram. Above the first layer a
    cell's input x<sub>t</sub> is the layer below's new state (its add_h codes)."""
    cells = [tuple(genome[k : k + len(OPS)]) for k in range(0, len(genome), len(OPS))]
    if len(cells) == 1:
        return [cell_diagram(cells[0], height=height)]
    figs = []
    for k, cell in enumerate(cells):
        reads = "the input sequence" if k == 0 else f"layer {k - 1}'s new state h<sub>t</sub> (its add_h codes)"
        top = "; the classifier reads its last h<sub>t</sub>" if k == len(cells) - 1 else ""
        figs.append(cell_diagram(cell, height=height, title=f"<b>layer {k}</b>: x<sub>t</sub> is {reads}{top}"))
    return figs


# ---------------------------------------------------------------- learn


def quantized_signal_chart(t: np.ndarray, x: np.ndarray, q: Mapping) -> go.Figure:
    """The signal and its fixed-point version (top), the rounding error (bottom)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.06)
    fig.add_trace(go.Scatter(x=t, y=x, mode="lines", name="real value", line=dict(color="#1f77b4", width=2)), 1, 1)
    fig.add_trace(
        go.Scatter(
            x=t,
            y=q["values"],
            mode="lines",
            name=f"{q['format'].bits}-bit fixed point",
            line=dict(color=BEST_COLOR, width=2, shape="hv"),
        ),
        1,
        1,
    )
    fig.add_trace(
        go.Scatter(
            x=t,
            y=q["error"],
            mode="lines",
            name="rounding error",
            line=dict(color="#777777", width=1),
            fill="tozeroy",
            fillcolor="rgba(120,120,120,0.25)",
        ),
        2,
        1,
    )
    half = q["step"] / 2
    fig.update_yaxes(title_text="value", row=1, col=1, range=[-1.1, 1.1])
    fig.update_yaxes(title_text="error", row=2, col=1, range=[-1.15 * half, 1.15 * half], tickformat=".3f")
    fig.update_xaxes(title_text="time", row=2, col=1)
    fig.update_layout(
        font=FONT,
        height=380,
        margin=dict(l=60, r=10, t=10, b=40),
        plot_bgcolor="white",
        legend=dict(orientation="h", y=1.1),
    )
    return fig


def rms_chart(table: pd.DataFrame, highlight: int | None = None) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=table["bits"],
            y=table["rms"],
            mode="lines+markers",
            name="measured RMS error",
            line=dict(color=BEST_COLOR),
        )
    )
    fig.add_trace(
        go.Scatter(
            x=table["bits"],
            y=table["estimate"],
            mode="lines",
            name="step / √12 (theory)",
            line=dict(color="#999999", dash="dot"),
        )
    )
    if highlight is not None:
        row = table[table["bits"] == highlight]
        if len(row):
            fig.add_trace(
                go.Scatter(
                    x=row["bits"],
                    y=row["rms"],
                    mode="markers",
                    name=f"{highlight} bits",
                    marker=dict(size=16, color=BEST_COLOR, symbol="circle-open", line=dict(width=3)),
                )
            )
    fig.update_layout(
        font=FONT,
        height=320,
        margin=dict(l=50, r=10, t=10, b=40),
        plot_bgcolor="white",
        xaxis_title="bits",
        yaxis_title="RMS error (log scale)",
        yaxis_type="log",
        legend=dict(x=0.98, xanchor="right", y=0.98, bgcolor="rgba(255,255,255,0.8)"),
    )
    fig.update_yaxes(dtick=1, showgrid=True, gridcolor="#eeeeee")
    return fig


def lut_chart(lut: Mapping) -> go.Figure:
    xs = np.linspace(float(lut["x"].min()) - 0.5, float(lut["x"].max()) + 0.5, 400)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=xs, y=1 / (1 + np.exp(-xs)), mode="lines", name="true sigmoid", line=dict(color="#1f77b4", width=2)
        )
    )
    fig.add_trace(
        go.Scatter(
            x=lut["x"],
            y=lut["lut"],
            mode="lines+markers",
            name=f"look-up table ({lut['entries']} entries)",
            line=dict(color=BEST_COLOR, shape="hv"),
            marker=dict(size=5),
        )
    )
    fig.update_layout(
        font=FONT,
        height=340,
        margin=dict(l=50, r=10, t=10, b=40),
        plot_bgcolor="white",
        xaxis_title="input (real value of the input code)",
        yaxis_title="output",
        legend=dict(orientation="h", y=1.1),
    )
    return fig


def uniform_sizes_chart(sizes: Mapping[int, float]) -> go.Figure:
    """Model size (kB) when every operator has the same bits: the range a size limit can take."""
    bits = sorted(sizes)
    kb = [sizes[b] / KB for b in bits]
    fig = go.Figure(
        go.Bar(
            x=[f"all {b}-bit" for b in bits],
            y=kb,
            marker_color=[bit_color(b) for b in bits],
            text=[f"{v:.2f}" for v in kb],
            textposition="outside",
            hovertemplate="%{x}: %{y:.2f} kB<extra></extra>",
        )
    )
    fig.update_layout(
        height=220,
        margin=dict(l=10, r=10, t=10, b=10),
        yaxis_title="model size (kB)",
        yaxis_range=[0, 1.2 * max(kb)],
        showlegend=False,
    )
    return fig
