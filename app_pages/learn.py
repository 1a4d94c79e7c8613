"""Learn: fixed-point quantization of a GRU, step by step, with live examples."""

from __future__ import annotations

import streamlit as st

import ui
from gruq import figures, views
from gruq.ops import DESCRIPTION, LINEAR, OPS

ui.setup("Learn")
st.title("Learn: how a GRU is squeezed into a few bits")
st.markdown(
    "A small processor without floating point stores every number as an **integer code** and an agreed "
    "**scale**: the value is `code × 2^-f`. With **b bits** a signed code runs from −2^(b−1) to 2^(b−1)−1, "
    "so fewer bits mean a coarser grid of values, a smaller model and cheaper arithmetic — and more "
    "rounding error. gruq chooses the bits of every operator inside the GRU cell separately."
)

st.header("1 · Fewer bits, bigger rounding error")
bits = st.slider(
    "Bits per number",
    2,
    8,
    4,
    key="learn_bits",
    help="The signal lives in [-1, 1), so the format has b-1 fraction bits.",
)
t, x = views.demo_signal()
q = views.quantize_signal(x, bits)
table = views.rms_by_bits(x)
c1, c2 = st.columns([3, 2])
with c1:
    st.plotly_chart(figures.quantized_signal_chart(t, x, q), key="learn_signal")
with c2:
    st.metric("RMS rounding error", f"{q['rms']:.4f}", help="root mean square of (rounded value - real value)")
    st.markdown(
        f"With **{bits} bits** the grid step is 2^-{q['format'].frac} = **{q['step']:.4f}**: "
        f"{q['format'].levels} possible values. Each extra bit halves the step and so roughly halves the error."
    )
    st.plotly_chart(figures.rms_chart(table, highlight=bits), key="learn_rms")
st.caption(
    f"Rounding: round half up, then saturate to the format's range ({q['format'].lo} .. {q['format'].hi}); "
    "the same `gruq.fixedpoint` functions the integer engine uses."
)

st.header("2 · Activation functions become look-up tables")
st.markdown(
    "An integer-only chip cannot compute `sigmoid` or `tanh`. But a b-bit input has only 2^b possible codes, "
    "so gruq tabulates the function once: **the input code is the index, the table entry is the output code**. "
    "Input bits set the number of entries; output bits set how finely each entry is rounded."
)
c1, c2, c3 = st.columns(3)
in_bits = c1.slider("Input bits (table entries = 2^bits)", 2, 8, 5, key="learn_lut_in")
out_bits = c2.slider("Output bits", 2, 8, 4, key="learn_lut_out")
lut = views.sigmoid_lut(in_bits, out_bits)
c3.metric("Largest table error", f"{lut['max_error']:.4f}", help="over every entry of the table")
st.plotly_chart(figures.lut_chart(lut), key="learn_lut")
rng = views.format_range(lut["in_format"])
st.caption(
    f"{lut['entries']} entries; input range {rng['lo']:g} to {rng['hi']:g} ({rng['note']}); "
    f"output unsigned with scale 2^-{out_bits}, as sig_r and sig_z in gruq: its largest code stands for "
    f"1 − 2^-{out_bits} = {1 - 2**-out_bits:.4f}, so the table can never output exactly 1."
)

st.header("3 · The 17 operators of a GRU cell")
st.markdown(
    "At each time step the GRU reads an input x_t and its previous state h_(t-1), and computes two gates "
    "(**r**: how much of the past to use in the candidate; **z**: how much of the past to keep) and a "
    "candidate state **n**. gruq cuts the cell at every arithmetic step: **17 operators**, each with its "
    "own bit width (the *genome*)."
)
st.plotly_chart(figures.cell_diagram(None), key="learn_cell")
rows = [
    {
        "#": i,
        "operator": name,
        "computes": DESCRIPTION[name],
        "its bits set": "the weights (model size)" if i in LINEAR else "the output",
    }
    for i, name in enumerate(OPS)
]
st.dataframe(rows, hide_index=True)
st.markdown(
    "- The six **linear** operators multiply by a weight matrix: their bits are the weights' width, the only genes "
    "that change the model's size. Their sums stay in a wide 32-bit accumulator.\n"
    "- **add / mul** operators round their result to their bit width; **sig / tanh** are look-up tables.\n"
    "- **add_h** is the new state, carried to the next step: its rounding error accumulates over time, which "
    "makes low widths there risky.\n"
    "- Biases (32-bit) and the classifier (8-bit) cost the same in every scheme, which caps the possible "
    "size saving at roughly 60 to 67%."
)
st.info("Ready to try? Launch a search on the **Launch** page, or edit bits by hand in the **Explorer**.")
