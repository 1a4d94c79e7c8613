"""From a float model and a genome to the integer model: formats, codes, tables.

`formats` fixes every tensor's fixed-point format from the genome and the
calibration exponents (pure integers). `build` then quantizes the weights and
biases and tabulates the activations. The integer engine and the export read
an `IntegerModel`; the torch simulation derives the same numbers itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gruq.errors import GruqError
from gruq.fixedpoint import Format, activation_lut, ceil_log2, frac_bits, quantize, sigmoid
from gruq.genome import HEAD_BITS, INPUT_BITS, Genome, cells, validate
from gruq.model import Calibration, Cell, GRUClassifier
from gruq.ops import INPUT_LINEAR, LINEAR, OPS


@dataclass(frozen=True)
class Formats:
    """The fixed-point format of every tensor of one genome."""

    x: Format
    weight: dict[str, Format]  # the six linear operators
    acc_frac: dict[str, int]  # their int32 accumulators' fraction bits
    out: dict[str, Format]  # the eleven other operators
    head_weight: Format

    @property
    def h(self) -> Format:
        return self.out["add_h"]

    @property
    def logit_frac(self) -> int:
        return self.head_weight.frac + self.h.frac


def weight_exponents(model: GRUClassifier, layer: int = 0) -> dict[str, int]:
    """ceil(log2 max|W|) of each linear operator's weights of one layer, and of the head."""
    cell = model.cell(layer)
    exps = {OPS[op]: ceil_log2(float(cell.linear_weight(op).detach().abs().max())) for op in LINEAR}
    exps["head"] = ceil_log2(float(model.head.weight.detach().abs().max()))
    return exps


def input_format(calib: Calibration) -> Format:
    """The model's input x: 8 bits, outside the genome."""
    return Format(INPUT_BITS, frac_bits(INPUT_BITS, calib.x))


def formats(
    genome: Genome, calib: Calibration, wexp: dict[str, int], layer: int = 0, x: Format | None = None
) -> Formats:
    """Every format of one cell (layer `layer`, 17 genes) for `genome` (DESIGN.md's rules).

    `x` is the cell's input format: the model's 8-bit input for layer 0 (the
    default), the previous layer's add_h format above it (no requantization).
    """
    b = dict(zip(OPS, genome))
    e = calib.layers[layer]
    x = x or input_format(calib)
    h = Format(b["add_h"], frac_bits(b["add_h"], e["add_h"]))
    out = {name: Format(b[name], frac_bits(b[name], e[name])) for name in e}
    out["sig_r"] = Format(b["sig_r"], b["sig_r"], signed=False)
    out["sig_z"] = Format(b["sig_z"], b["sig_z"], signed=False)
    out["sub_z"] = Format(b["sub_z"], b["sub_z"], signed=False)
    out["tanh_n"] = Format(b["tanh_n"], b["tanh_n"] - 1)
    weight, acc_frac = {}, {}
    for op in LINEAR:
        name = OPS[op]
        weight[name] = Format(b[name], frac_bits(b[name], wexp[name]))
        acc_frac[name] = weight[name].frac + (x.frac if op in INPUT_LINEAR else h.frac)
    head = Format(HEAD_BITS, frac_bits(HEAD_BITS, wexp["head"]))
    return Formats(x=x, weight=weight, acc_frac=acc_frac, out=out, head_weight=head)


def layer_formats(genome: Genome, calib: Calibration, wexps: Sequence[dict[str, int]]) -> tuple[Formats, ...]:
    """The formats of every layer of a stacked genome (17 genes per layer): each
    layer's input format is the previous layer's h. The head reads the last one's."""
    out: list[Formats] = []
    for k, genes in enumerate(cells(genome)):
        out.append(formats(genes, calib, wexps[k], k, out[-1].h if out else None))
    return tuple(out)


@dataclass(frozen=True)
class CellModel:
    """One quantized layer: its genes, formats, codes and look-up tables."""

    genome: Genome  # this layer's 17 genes
    fmt: Formats
    weights: dict[str, np.ndarray]  # (H, in) int64 codes per linear operator
    biases: dict[str, np.ndarray]  # (H,) int32-range codes at the accumulator's scale
    lut: dict[str, np.ndarray]  # sig_r, sig_z, tanh_n: indexed by input code - input lo


@dataclass(frozen=True)
class IntegerModel:
    """Everything integer inference needs: one quantized cell per layer and the head.

    `fmt`, `weights`, `biases` and `lut` are the one cell of a one-layer model
    (what the single-layer views and exports read).
    """

    genome: Genome
    cells: tuple[CellModel, ...]
    head_weight: np.ndarray  # (C, H)
    head_bias: np.ndarray  # (C,) at the logits' scale

    @property
    def hidden(self) -> int:
        return int(self.head_weight.shape[1])

    @property
    def layers(self) -> int:
        return len(self.cells)

    @property
    def fmt(self) -> Formats:
        """The last cell's formats (the head reads its h; the only cell of one layer)."""
        return self.cells[-1].fmt

    @property
    def weights(self) -> dict[str, np.ndarray]:
        return self._single().weights

    @property
    def biases(self) -> dict[str, np.ndarray]:
        return self._single().biases

    @property
    def lut(self) -> dict[str, np.ndarray]:
        return self._single().lut

    def _single(self) -> CellModel:
        if len(self.cells) != 1:
            raise GruqError(f"this needs a one-layer model; this one has {len(self.cells)} layers")
        return self.cells[0]

    def quantize_input(self, X: np.ndarray) -> np.ndarray:
        """8-bit codes of the input sequences (done before the integer loop)."""
        return quantize(X, self.cells[0].fmt.x)


def _codes(t: torch.Tensor, fmt: Format) -> np.ndarray:
    return quantize(t.detach().double().numpy(), fmt)


def build_cell(genes: Genome, fmt: Formats, cell: Cell) -> CellModel:
    """Quantize one layer's weights and tabulate its activations."""
    weights, biases = {}, {}
    for op in LINEAR:
        name = OPS[op]
        weights[name] = _codes(cell.linear_weight(op), fmt.weight[name])
        biases[name] = _codes(cell.linear_bias(op), Format(32, fmt.acc_frac[name]))
    o = fmt.out
    lut = {
        "sig_r": activation_lut(sigmoid, o["add_r"], o["sig_r"]),
        "sig_z": activation_lut(sigmoid, o["add_z"], o["sig_z"]),
        "tanh_n": activation_lut(np.tanh, o["add_n"], o["tanh_n"]),
    }
    return CellModel(genome=tuple(genes), fmt=fmt, weights=weights, biases=biases, lut=lut)


def build(genome: Genome, model: GRUClassifier, calib: Calibration) -> IntegerModel:
    """Quantize `model` under `genome` (17 genes per layer): the integer model of record."""
    genome = validate(genome, model.layers)
    wexps = [weight_exponents(model, k) for k in range(model.layers)]
    fmts = layer_formats(genome, calib, wexps)
    cell_models = tuple(build_cell(g, f, model.cell(k)) for k, (g, f) in enumerate(zip(cells(genome), fmts)))
    last = fmts[-1]
    return IntegerModel(
        genome=genome,
        cells=cell_models,
        head_weight=_codes(model.head.weight, last.head_weight),
        head_bias=_codes(model.head.bias, Format(32, last.logit_frac)),
    )
