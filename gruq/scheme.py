"""From a float model and a genome to the integer model: formats, codes, tables.

`formats` fixes every tensor's fixed-point format from the genome and the
calibration exponents (pure integers). `build` then quantizes the weights and
biases and tabulates the activations. The integer engine and the export read
an `IntegerModel`; the torch simulation derives the same numbers itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gruq.fixedpoint import Format, activation_lut, ceil_log2, frac_bits, quantize, sigmoid
from gruq.genome import HEAD_BITS, INPUT_BITS, Genome, validate
from gruq.model import Calibration, GRUClassifier
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


def weight_exponents(model: GRUClassifier) -> dict[str, int]:
    """ceil(log2 max|W|) of each linear operator's weights and of the head."""
    exps = {OPS[op]: ceil_log2(float(model.linear_weight(op).detach().abs().max())) for op in LINEAR}
    exps["head"] = ceil_log2(float(model.head.weight.detach().abs().max()))
    return exps


def formats(genome: Genome, calib: Calibration, wexp: dict[str, int]) -> Formats:
    """Every format of the quantized cell for `genome` (DESIGN.md's rules)."""
    b = dict(zip(OPS, genome))
    e = calib.ops
    x = Format(INPUT_BITS, frac_bits(INPUT_BITS, calib.x))
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


@dataclass(frozen=True)
class IntegerModel:
    """Everything integer inference needs: codes, formats and look-up tables."""

    genome: Genome
    fmt: Formats
    weights: dict[str, np.ndarray]  # (H, in) int64 codes per linear operator
    biases: dict[str, np.ndarray]  # (H,) int32-range codes at the accumulator's scale
    head_weight: np.ndarray  # (C, H)
    head_bias: np.ndarray  # (C,) at the logits' scale
    lut: dict[str, np.ndarray]  # sig_r, sig_z, tanh_n: indexed by input code - input lo

    @property
    def hidden(self) -> int:
        return int(self.head_weight.shape[1])

    def quantize_input(self, X: np.ndarray) -> np.ndarray:
        """8-bit codes of the input sequences (done before the integer loop)."""
        return quantize(X, self.fmt.x)


def _codes(t: torch.Tensor, fmt: Format) -> np.ndarray:
    return quantize(t.detach().double().numpy(), fmt)


def build(genome: Genome, model: GRUClassifier, calib: Calibration) -> IntegerModel:
    """Quantize `model` under `genome`: the integer model of record."""
    genome = validate(genome)
    fmt = formats(genome, calib, weight_exponents(model))
    weights, biases = {}, {}
    for op in LINEAR:
        name = OPS[op]
        weights[name] = _codes(model.linear_weight(op), fmt.weight[name])
        biases[name] = _codes(model.linear_bias(op), Format(32, fmt.acc_frac[name]))
    o = fmt.out
    lut = {
        "sig_r": activation_lut(sigmoid, o["add_r"], o["sig_r"]),
        "sig_z": activation_lut(sigmoid, o["add_z"], o["sig_z"]),
        "tanh_n": activation_lut(np.tanh, o["add_n"], o["tanh_n"]),
    }
    return IntegerModel(
        genome=genome,
        fmt=fmt,
        weights=weights,
        biases=biases,
        head_weight=_codes(model.head.weight, fmt.head_weight),
        head_bias=_codes(model.head.bias, Format(32, fmt.logit_frac)),
        lut=lut,
    )
