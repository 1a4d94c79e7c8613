"""The fake-quant simulation in torch: the integer cell on float64 tensors.

Tensors hold integer codes in float64, which represents every code, product
and sum of this cell exactly (all stay far below 2^53), and scaling by a power
of two is exact, so rounding floor(v * 2^-s + 1/2) equals the integer engine's
(v + 2^(s-1)) >> s bit for bit. Two things make it the hot path's tool:

- a population of genomes runs as one leading batch dimension P: every format
  constant is a (P, 1, 1) tensor, so one forward pass scores P genomes;
- with `ste=True`, rounding and look-up tables pass gradients straight through
  (clipped at saturation), for quantization-aware fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from gruq.fixedpoint import INT32_MAX, INT32_MIN, Format
from gruq.genome import Genome
from gruq.model import Calibration, GRUClassifier
from gruq.ops import HIDDEN_LINEAR, INPUT_LINEAR, OPS
from gruq.scheme import Formats, formats, weight_exponents

LUT_SIZE = 256  # 2^8: the widest input code any genome has
F64 = torch.float64


def _col(values: Sequence[float]) -> torch.Tensor:
    """Per-genome constants as a (P, 1, 1) tensor that broadcasts over (P, N, H)."""
    return torch.tensor(values, dtype=F64).view(-1, 1, 1)


def _pow2(exps: Sequence[int]) -> torch.Tensor:
    return _col([2.0 ** e for e in exps])


@dataclass
class _Q:
    """A format across the population: bounds and, when needed, the scale."""

    lo: torch.Tensor
    hi: torch.Tensor

    @classmethod
    def of(cls, fmts: Sequence[Format]) -> "_Q":
        return cls(_col([f.lo for f in fmts]), _col([f.hi for f in fmts]))


class _Rounding:
    """Round-half-up and saturation, straight-through when training."""

    def __init__(self, ste: bool) -> None:
        self.ste = ste

    def __call__(self, v: torch.Tensor, q: _Q) -> torch.Tensor:
        r = torch.floor(v + 0.5)
        if self.ste:
            r = v + (r - v).detach()
        return torch.clamp(r, q.lo, q.hi)


def _luts(fmts: Sequence[Formats], fn: Callable, src: str, dst: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack one activation table per genome; return (flat table, per-genome offset)."""
    from gruq.fixedpoint import activation_lut

    table = np.zeros((len(fmts), LUT_SIZE))
    offsets = []
    for p, f in enumerate(fmts):
        lut = activation_lut(fn, f.out[src], f.out[dst])
        table[p, :len(lut)] = lut
        offsets.append(p * LUT_SIZE - f.out[src].lo)
    return torch.tensor(table.ravel(), dtype=F64), torch.tensor(offsets, dtype=torch.long).view(-1, 1, 1)


class Simulation:
    """The quantized cell for a population of genomes over one model."""

    def __init__(self, model: GRUClassifier, calib: Calibration, genomes: Sequence[Genome], ste: bool = False):
        from gruq.fixedpoint import sigmoid

        self.model, self.genomes = model, list(genomes)
        wexp = weight_exponents(model)
        self.fmts = [formats(g, calib, wexp) for g in self.genomes]
        self.round = _Rounding(ste)
        self.ste = ste
        out = lambda name: [f.out[name] for f in self.fmts]  # noqa: E731
        self.q = {name: _Q.of(out(name)) for name in self.fmts[0].out}
        self.lut = {
            "sig_r": _luts(self.fmts, sigmoid, "add_r", "sig_r"),
            "sig_z": _luts(self.fmts, sigmoid, "add_z", "sig_z"),
            "tanh_n": _luts(self.fmts, np.tanh, "add_n", "tanh_n"),
        }
        self.frac = {name: [f.out[name].frac for f in self.fmts] for name in self.fmts[0].out}
        self.acc = {name: [f.acc_frac[name] for f in self.fmts] for name in self.fmts[0].acc_frac}

    # -- parameters -------------------------------------------------------
    def _weights(self, ops: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes of the weights of `ops`, stacked as (P, in, 3H), and biases (P, 1, 3H)."""
        ws, bs = [], []
        int32 = _Q(_col([INT32_MIN]), _col([INT32_MAX]))
        for op in ops:
            name = OPS[op]
            wf = [f.weight[name] for f in self.fmts]
            w = self.model.linear_weight(op).to(F64).unsqueeze(0)
            ws.append(self.round(w * _pow2([f.frac for f in wf]), _Q.of(wf)))
            b = self.model.linear_bias(op).to(F64).view(1, 1, -1)
            bs.append(self.round(b * _pow2(self.acc[name]), int32))
        return torch.cat(ws, dim=1).transpose(1, 2), torch.cat(bs, dim=2)

    def _head(self) -> tuple[torch.Tensor, torch.Tensor]:
        hf = [f.head_weight for f in self.fmts]
        w = self.round(self.model.head.weight.to(F64).unsqueeze(0) * _pow2([f.frac for f in hf]), _Q.of(hf))
        int32 = _Q(_col([INT32_MIN]), _col([INT32_MAX]))
        b = self.round(self.model.head.bias.to(F64).view(1, 1, -1) * _pow2([f.logit_frac for f in self.fmts]), int32)
        return w.transpose(1, 2), b

    def input_codes(self, x: torch.Tensor) -> torch.Tensor:
        """8-bit codes of the input; the same for every genome."""
        fx = self.fmts[0].x
        return torch.clamp(torch.floor(torch.ldexp(x.to(F64), torch.tensor(fx.frac)) + 0.5), fx.lo, fx.hi)

    # -- forward ----------------------------------------------------------
    def _lookup(self, name: str, v: torch.Tensor, fn: Callable, in_frac: str, out_frac: int | None = None):
        table, offset = self.lut[name]
        out = torch.take(table, v.detach().long() + offset)
        if not self.ste:
            return out
        # straight-through: the gradient of fn at the real input, in output codes
        src = {"sig_r": "add_r", "sig_z": "add_z", "tanh_n": "add_n"}[name]
        smooth = fn(v * _pow2([-e for e in self.frac[src]])) * _pow2(self.frac[name])
        return smooth + (out - smooth).detach()

    def _rescale(self, v: torch.Tensor, frac_in: Sequence[int], dst: str) -> torch.Tensor:
        """Codes at scale 2^-frac_in, exactly re-expressed at dst's scale (before rounding)."""
        return v * _pow2([fo - fi for fo, fi in zip(self.frac[dst], frac_in)])

    def forward(self, x: torch.Tensor, trace: bool = False):
        """Logit codes (P, N, C) for float inputs x (N, T, F); optionally every op's codes."""
        R, q, fr, acc = self.round, self.q, self.frac, self.acc
        wx, bx = self._weights(INPUT_LINEAR)
        wh, bh = self._weights(HIDDEN_LINEAR)
        wo, bo = self._head()
        xc = self.input_codes(x)
        P, (N, T, _), H = len(self.genomes), x.shape, self.model.hidden
        h = torch.zeros(P, N, H, dtype=F64)
        int32 = _Q(_col([INT32_MIN]), _col([INT32_MAX]))
        sig_frac = lambda n: fr[n]  # noqa: E731
        traced: dict[str, list[torch.Tensor]] = {}
        for t in range(T):
            ax = torch.clamp(torch.matmul(xc[:, t], wx) + bx, int32.lo, int32.hi)
            ah = torch.clamp(torch.bmm(h, wh) + bh, int32.lo, int32.hi)
            c = {
                "lin_xr": ax[..., :H], "lin_xz": ax[..., H:2 * H], "lin_xn": ax[..., 2 * H:],
                "lin_hr": ah[..., :H], "lin_hz": ah[..., H:2 * H], "lin_hn": ah[..., 2 * H:],
            }
            c["add_r"] = R(self._rescale(c["lin_xr"], acc["lin_xr"], "add_r")
                           + self._rescale(c["lin_hr"], acc["lin_hr"], "add_r"), q["add_r"])
            c["sig_r"] = self._lookup("sig_r", c["add_r"], torch.sigmoid, "add_r")
            c["add_z"] = R(self._rescale(c["lin_xz"], acc["lin_xz"], "add_z")
                           + self._rescale(c["lin_hz"], acc["lin_hz"], "add_z"), q["add_z"])
            c["sig_z"] = self._lookup("sig_z", c["add_z"], torch.sigmoid, "add_z")
            prod_frac = [a + b for a, b in zip(sig_frac("sig_r"), acc["lin_hn"])]
            c["mul_rn"] = R(self._rescale(c["sig_r"] * c["lin_hn"], prod_frac, "mul_rn"), q["mul_rn"])
            c["add_n"] = R(self._rescale(c["lin_xn"], acc["lin_xn"], "add_n")
                           + self._rescale(c["mul_rn"], fr["mul_rn"], "add_n"), q["add_n"])
            c["tanh_n"] = self._lookup("tanh_n", c["add_n"], torch.tanh, "add_n")
            one = _pow2(fr["sig_z"])
            c["sub_z"] = R(self._rescale(one - c["sig_z"], fr["sig_z"], "sub_z"), q["sub_z"])
            zn_frac = [a + b for a, b in zip(fr["sub_z"], fr["tanh_n"])]
            c["mul_zn"] = R(self._rescale(c["sub_z"] * c["tanh_n"], zn_frac, "mul_zn"), q["mul_zn"])
            zh_frac = [a + b for a, b in zip(fr["sig_z"], fr["add_h"])]
            c["mul_zh"] = R(self._rescale(c["sig_z"] * h, zh_frac, "mul_zh"), q["mul_zh"])
            c["add_h"] = R(self._rescale(c["mul_zn"], fr["mul_zn"], "add_h")
                           + self._rescale(c["mul_zh"], fr["mul_zh"], "add_h"), q["add_h"])
            h = c["add_h"]
            if trace:
                for name, v in c.items():
                    traced.setdefault(name, []).append(v)
        logits = torch.clamp(torch.bmm(h, wo) + bo, int32.lo, int32.hi)
        if trace:
            return logits, {name: torch.stack(v, dim=2) for name, v in traced.items()}
        return logits

    def logit_scale(self) -> torch.Tensor:
        """2^-f of the logits per genome, to turn codes into real logits for a loss."""
        return _pow2([-f.logit_frac for f in self.fmts])
