"""The 17 operators of a quantized GRU cell, in genome order.

One name per arithmetic boundary (see DESIGN.md): the gene at index i sets the
bit width of operator OPS[i]. For the six linear operators it is the width of
the weights; for the others, the width of the output.
"""

from __future__ import annotations

OPS: tuple[str, ...] = (
    "lin_xr",
    "lin_hr",
    "add_r",
    "sig_r",
    "lin_xz",
    "lin_hz",
    "add_z",
    "sig_z",
    "lin_xn",
    "lin_hn",
    "mul_rn",
    "add_n",
    "tanh_n",
    "sub_z",
    "mul_zn",
    "mul_zh",
    "add_h",
)
N_OPS = len(OPS)
INDEX: dict[str, int] = {name: i for i, name in enumerate(OPS)}

# Linear operators: gene = weight width; result stays in the int32 accumulator.
LINEAR: tuple[int, ...] = (0, 1, 4, 5, 8, 9)
# Which linear operators read the input x (the others read the state h).
INPUT_LINEAR: tuple[int, ...] = (0, 4, 8)
HIDDEN_LINEAR: tuple[int, ...] = (1, 5, 9)
# Gate order of torch.nn.GRU's stacked weights: r, z, n.
GATE_OF_LINEAR: dict[int, int] = {0: 0, 1: 0, 4: 1, 5: 1, 8: 2, 9: 2}

# Signed outputs whose fraction bits come from calibration (max |value|).
CALIBRATED: tuple[str, ...] = ("add_r", "add_z", "mul_rn", "add_n", "mul_zn", "mul_zh", "add_h")

DESCRIPTION: dict[str, str] = {
    "lin_xr": "W_ir x + b_ir",
    "lin_hr": "W_hr h + b_hr",
    "add_r": "lin_xr + lin_hr",
    "sig_r": "r = sigmoid(add_r)",
    "lin_xz": "W_iz x + b_iz",
    "lin_hz": "W_hz h + b_hz",
    "add_z": "lin_xz + lin_hz",
    "sig_z": "z = sigmoid(add_z)",
    "lin_xn": "W_in x + b_in",
    "lin_hn": "W_hn h + b_hn",
    "mul_rn": "r * lin_hn",
    "add_n": "lin_xn + mul_rn",
    "tanh_n": "n = tanh(add_n)",
    "sub_z": "1 - z",
    "mul_zn": "(1 - z) * n",
    "mul_zh": "z * h",
    "add_h": "mul_zn + mul_zh = new h",
}


MAX_LAYERS = 4  # stacked GRU layers a model may have


def layer_prefix(layer: int, layers: int) -> str:
    """`l{k}.` before a stacked model's operator names; nothing for one layer."""
    return f"l{layer}." if layers > 1 else ""


def layer_names(layers: int = 1) -> tuple[str, ...]:
    """The names of a genome's genes: OPS for one layer; `l0.lin_xr` ... `lK.add_h`
    for stacked layers (17 genes per layer, layer by layer)."""
    return tuple(layer_prefix(k, layers) + name for k in range(layers) for name in OPS)


def gene_names(genes: int) -> tuple[str, ...]:
    """The names of a genome of `genes` genes (17 per layer): `layer_names` by its length."""
    return layer_names(max(1, genes // N_OPS))


def weight_genes(genes: int) -> list[int]:
    """Indices of a genome's weight genes (lin_*, every layer's): the only genes that cost size."""
    return [i for i in range(genes) if i % N_OPS in LINEAR]


def parse_gene(name: str) -> tuple[int | None, str]:
    """An operator as a setting names it (--pin, --bits-range): `lin_xr`, every layer's (layer
    None), or `l1.lin_xr`, one layer's; a readable error naming what is allowed otherwise.
    Whether the layer exists depends on the model (`gruq.search.constraints`)."""
    import re

    from gruq.errors import GruqError

    m = re.fullmatch(r"l(\d+)\.(\w+)", name)
    layer, op = (int(m[1]), m[2]) if m else (None, name)
    if op not in INDEX or (layer is not None and layer >= MAX_LAYERS):
        raise GruqError(
            f"unknown operator {name!r}; operators are {', '.join(OPS)} (every layer), or one layer's "
            f"as l0.lin_xr ... l{MAX_LAYERS - 1}.add_h"
        )
    return layer, op


def op_index(name: str) -> int:
    """Index of an operator by name, with a readable error for a typo."""
    from gruq.errors import GruqError

    try:
        return INDEX[name]
    except KeyError:
        raise GruqError(f"unknown operator {name!r}; operators are {', '.join(OPS)}") from None
