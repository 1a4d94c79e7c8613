"""The fast training path of the fake-quant cell: P genomes, each with its own weights, as one batch.

Quantization-aware fine-tuning needs the loss gradient of the quantized cell.
The reference path (`Simulation(..., ste=True)`) gets it from autograd over its
17 operators in float64, one by one: about 40 tensor passes a step forward,
as many again backward, each with autograd's bookkeeping. This module computes
the same forward codes and the same straight-through gradients with a
hand-written backward, in float32, in about 30 passes a step forward and 16
backward, for a whole group of genomes at once (a leading dimension P, each
genome with its own copy of the weights, as `gruq.fakequant._Fast` scores
them).

**Forward.** As `_Fast`: the scales are folded into the weights, add_r, add_z
and add_n are never materialised, only the table index they select, and
sub_z, mul_zn and mul_zh come from per-genome tables indexed by (add_z, add_n)
and (add_z, h). Unlike `_Fast`, each index has one extra entry at both ends
that stands for "saturated below / above": the forward tables repeat the
saturated value there, and the gradient tables hold 0 (the clipped STE). The
codes are the engine's whenever the products fit float32's 24 bits (the bound
`_Fast.plan` checks; checked in the tests): every value is then an integer
multiple of a power of two, exact in any summation order. mul_rn, an 8-bit
code times a wide accumulator, is computed in float32 when a bound on the
actual codes proves it exact for every genome of the group, else in float64
(as in `_Fast`): both give the same codes, so the choice cannot make a genome
depend on its group. One matrix product a step, [x_t | 1 | h_t] times the
stacked folded weights, gives every gate's pre-rounding value. The
engine's int32 clamp of the six accumulators is not applied: it cannot
trigger unless a bias code comes within (F + H) 2^14 of 2^31.

**Backward (the STE of the reference path).** Rounding passes the gradient
where the rounded value lies inside the format and blocks it where it
saturates; a table passes the derivative of its function at the input code
(sigmoid' or tanh', times the formats' scales). Every derivative of add_h with
respect to add_z, add_n and h is a product of such factors depending only on
(add_z, add_n) or (add_z, h), so it is read from a table too (`_Tables`); what
depends on three codes (add_h's own saturation, mul_rn's) is a saved mask.

**Stacked layers.** A model of L layers runs the one cell (`_Layer`) once per
layer, over the whole sequence: layer k + 1's input at step t is layer k's
add_h codes after step t, in add_h's format (as `Simulation` and the engine;
a layer's steps depend only on its own earlier steps and on the layer below at
the same step, so layer after layer computes the same codes as step after
step). Backward runs the layers from the top down; layer k + 1 hands layer k
the gradient of its input codes, d[u_r | u_z | lin' | u_n] times its folded
input weights, which joins layer k's gradient of h at that step (before
add_h's saturation mask, as the reference path's rounding does).

**Group independence, bit for bit.** A genome's trained weights must not
depend on which genomes share its batch (the search's Evaluator contract, and
issue 9 rebuilds a fine-tuned model alone). Every operation here is one of:
(a) elementwise with a single rounding (mul, add, floor, min/max, table
reads, comparisons), which computes each element alone whatever its
neighbours or its place in a vector register; (b) a matrix product per genome
(bmm, baddbmm) whose slices have the same shapes in any group; (c) a softmax
along each row (one sequence of one genome). No reduction ever runs across
genomes; sums over sequences and time (bias gradients) are matrix products
against a column of ones. MKL computes a batched product slice by slice with
the same kernel, but rounds differently when a slice starts at a different
alignment (measured with 5 hidden units), so every product's slices start
64-byte aligned, as a tensor of their own does: buffers are time-major
(T, P, Np, ...), with the sequences padded to Np, a multiple of 16, and the
padding rows getting no gradient; weights and per-genome parameter vectors
are padded likewise (`_buf`, ALIGN). Fused multiply-adds are avoided where a
value is inexact (backward, Adam): a scalar tail and a vector body might
round them differently. tests/test_qat.py checks the end result with
torch.equal on odd shapes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from gruq.errors import GruqError
from gruq.fakequant import _lut
from gruq.fixedpoint import Format, round_shift
from gruq.genome import HEAD_BITS, INPUT_BITS, Genome, cells, validate
from gruq.model import Calibration, GRUClassifier
from gruq.ops import GATE_OF_LINEAR, INDEX, INPUT_LINEAR, LINEAR, OPS
from gruq.scheme import Formats, formats, layer_formats

F32, F64, I32 = torch.float32, torch.float64, torch.int32
ALIGN = 64  # floats: each genome's parameter slice starts 256-byte aligned, as a tensor of its own would
INT32_LO, INT32_HI = -(2.0**31), 2.0**31 - 1
BLOCK_ELEMENTS = 1 << 15  # target genomes x sequences x hidden of one step's tensors: they then stay in cache


def parameters(layers: int = 1) -> tuple[str, ...]:
    """What the cells below train, in GRUClassifier's order: each layer's four GRU tensors, then the head."""
    kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return (*(f"gru.{kind}_l{k}" for k in range(layers) for kind in kinds), "head.weight", "head.bias")


PARAMETERS = parameters(1)  # the one-layer classifier's


def block_genomes(batch: int, hidden: int) -> int:
    """Genomes per Population for mini-batches of `batch` sequences: as many as keep a step's
    tensors near BLOCK_ELEMENTS. Beyond that, every pass streams from memory and a genome
    costs more, not less, in a bigger batch (measured on smnist and ecg: 4 to 8 genomes per
    block cost 1.4 to 1.8 times less per genome than one alone, 16 no less than 8)."""
    return max(1, BLOCK_ELEMENTS // (-(-batch // 16) * 16 * hidden))


# -- the fixed tables of one genome (they depend on the activation formats only) ----------------------


def _dsigmoid(x: np.ndarray) -> np.ndarray:
    s = 1.0 / (1.0 + np.exp(-x))
    return s * (1.0 - s)


def _dtanh(x: np.ndarray) -> np.ndarray:
    return 1.0 - np.tanh(x) ** 2


def _extended(fmt: Format) -> tuple[np.ndarray, np.ndarray]:
    """Codes and STE masks of an index with one extra entry at both ends (saturated below, above)."""
    codes = np.concatenate([[fmt.lo], np.arange(fmt.lo, fmt.hi + 1), [fmt.hi]]).astype(np.int64)
    mask = np.ones(len(codes))
    mask[0] = mask[-1] = 0.0
    return codes, mask


def _rounded(v: np.ndarray, s: int, fmt: Format) -> tuple[np.ndarray, np.ndarray]:
    """`fixedpoint.requantize`'s codes and the STE mask (the unsaturated rounding lies in the format)."""
    r = round_shift(v, s)
    return np.clip(r, fmt.lo, fmt.hi), ((r >= fmt.lo) & (r <= fmt.hi)).astype(np.float64)


@dataclass(frozen=True)
class _Tables:
    """One genome's forward and gradient tables (float32 unless said), flat."""

    sig_r: np.ndarray  # (258,) float64: sig_r code by the normalised add_r index
    dsig_r: np.ndarray  # (258,): d sig_r / d u_r (u_r: the normalised add_r pre-rounding value)
    zn: np.ndarray  # ((Lz+2) (Ln+2),): mul_zn 2^s1 + 1/2 by (add_z, add_n) index
    zn_dz: np.ndarray  # d add_h / d u_z through mul_zn
    zn_dn: np.ndarray  # d add_h / d u_n
    zh: np.ndarray  # ((Lz+2) Lh,): mul_zh 2^s2 by (add_z index, h - lo_h)
    zh_dz: np.ndarray  # d add_h / d u_z through mul_zh
    zh_dh: np.ndarray  # d add_h / d h
    rows: tuple[int, int, int]  # Lz + 2, Ln + 2, Lh


def _tables(genes: Genome, calib: Calibration, layer: int = 0) -> _Tables:
    """The tables of one layer's 17 `genes` under `calib` (weights do not enter: they are fixed for a
    whole fine-tuning; neither does the layer's input format)."""
    return _tables_of(tuple(genes), calib.x, tuple(sorted(calib.layers[layer].items())))


@lru_cache(maxsize=1024)
def _tables_of(genome: Genome, x: int, ops: tuple[tuple[str, int], ...]) -> _Tables:
    o = formats(genome, Calibration(x=x, layers=(dict(ops),)), {OPS[op]: 0 for op in LINEAR} | {"head": 0}).out
    fr = {n: f.frac for n, f in o.items()}
    # r: normalised index j = w + 129, w = floor(2^k (v + 1/2)) in [-129, 128] (see _Fast, point 2)
    k = 8 - o["add_r"].bits
    w = np.arange(258) - 129
    code_r = np.clip(np.floor_divide(w, 2**k), o["add_r"].lo, o["add_r"].hi)
    lut_r = _lut("sig_r", o["add_r"], o["sig_r"])
    sig_r = lut_r[code_r - o["add_r"].lo].astype(np.float64)
    mask_r = ((w >= -128) & (w <= 127)).astype(np.float64)
    dsig_r = _dsigmoid(np.ldexp(code_r, -fr["add_r"])) * 2.0 ** (fr["sig_r"] - fr["add_r"]) * mask_r * 2.0**-k
    # z, n, h codes
    cz, mz = _extended(o["add_z"])
    cn, mn = _extended(o["add_n"])
    ch = np.arange(o["add_h"].lo, o["add_h"].hi + 1)
    sig_z = _lut("sig_z", o["add_z"], o["sig_z"])[cz - o["add_z"].lo]
    dsig_z = _dsigmoid(np.ldexp(cz, -fr["add_z"])) * 2.0 ** (fr["sig_z"] - fr["add_z"]) * mz
    tanh_n = _lut("tanh_n", o["add_n"], o["tanh_n"])[cn - o["add_n"].lo]
    dtanh_n = _dtanh(np.ldexp(cn, -fr["add_n"])) * 2.0 ** (fr["tanh_n"] - fr["add_n"]) * mn
    s_sub = fr["sub_z"] - fr["sig_z"]
    sub_z, m_sub = _rounded((1 << fr["sig_z"]) - sig_z, -s_sub, o["sub_z"])
    s_zn = fr["mul_zn"] - fr["sub_z"] - fr["tanh_n"]
    mul_zn, m_zn = _rounded(sub_z[:, None] * tanh_n[None, :], -s_zn, o["mul_zn"])
    s_zh = fr["mul_zh"] - fr["sig_z"] - fr["add_h"]
    mul_zh, m_zh = _rounded(sig_z[:, None] * ch[None, :], -s_zh, o["mul_zh"])
    s1, s2 = fr["add_h"] - fr["mul_zn"], fr["add_h"] - fr["mul_zh"]
    # d add_h = 2^s1 d mul_zn + 2^s2 d mul_zh (before add_h's own mask, saved per step)
    d_sub = -m_sub * 2.0**s_sub * dsig_z  # d sub_z / d u_z
    g_zn = 2.0**s1 * m_zn * 2.0**s_zn
    g_zh = 2.0**s2 * m_zh * 2.0**s_zh
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32).ravel()  # noqa: E731
    return _Tables(
        sig_r=sig_r,
        dsig_r=f32(dsig_r),
        zn=f32(np.ldexp(mul_zn.astype(np.float64), s1) + 0.5),
        zn_dz=f32(g_zn * tanh_n[None, :] * d_sub[:, None]),
        zn_dn=f32(g_zn * sub_z[:, None] * dtanh_n[None, :]),
        zh=f32(np.ldexp(mul_zh.astype(np.float64), s2)),
        zh_dz=f32(g_zh * ch[None, :] * dsig_z[:, None]),
        zh_dh=f32(g_zh * sig_z[:, None]),
        rows=(len(cz), len(cn), len(ch)),
    )


# -- parameters: one flat, padded vector per genome ------------------------------------------------------


def _layout(model: GRUClassifier) -> tuple[list[tuple[str, torch.Size, int]], int]:
    """(name, shape, offset) of each parameter in a genome's flat vector, and its padded length."""
    out, at = [], 0
    for name, p in model.named_parameters():
        out.append((name, p.shape, at))
        at += p.numel()
    return out, -(-at // ALIGN) * ALIGN


def _ceil_log2(m: torch.Tensor) -> torch.Tensor:
    """`fixedpoint.ceil_log2` elementwise, exact (frexp)."""
    mant, ex = torch.frexp(m)
    e = torch.where(mant == 0.5, ex - 1, ex)
    return torch.where(m > 0, e, torch.zeros_like(e)).to(F64)


def _buf(P: int, *shape: int, dtype: torch.dtype = F32, fill: float | None = None) -> torch.Tensor:
    """A (P, *shape) tensor whose genome slices start ALIGN-aligned, as a tensor of their own would:
    MKL's products can round differently at different alignments (measured at H = 5)."""
    n = math.prod(shape)
    size = (P, -(-n // ALIGN) * ALIGN)
    t = torch.empty(size, dtype=dtype) if fill is None else torch.full(size, fill, dtype=dtype)
    return t[:, :n].view(P, *shape)


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """A float32 copy of t (P, ...) in a `_buf`."""
    out = _buf(t.shape[0], *t.shape[1:])
    out.copy_(t)
    return out


def _col(values: Sequence[float], dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype).view(-1, 1, 1)


def _quantize(v: torch.Tensor, frac: torch.Tensor, lo, hi):
    """Codes of v under per-genome fractions (as fixedpoint.quantize), and the STE mask."""
    lo, hi = torch.as_tensor(lo, dtype=v.dtype), torch.as_tensor(hi, dtype=v.dtype)
    y = v * torch.exp2(frac)
    fl = torch.floor(y)
    r = fl + (y - fl >= 0.5).to(y.dtype)
    return torch.minimum(torch.maximum(r, lo), hi), (r >= lo) & (r <= hi)


class _Layer:
    """Layer k of a `Population`: the one cell, for every genome of the group. It holds the
    group's constants of this layer (tables, clamp bounds and formats: fixed for the whole
    fine-tuning), quantizes the layer's weights each step, and runs the layer forward over a
    whole sequence and backward. Layer k > 0 reads layer k - 1's add_h codes, in add_h's
    format (no requantization), as `Simulation` and the engine do; its backward hands the
    gradient of its input codes down to layer k - 1 (the straight-through path of that input)."""

    def __init__(self, pop: Population, k: int, fm: Sequence[Formats]) -> None:
        self.k, self.P, self.H = k, pop.P, pop.H
        self.F = pop.F if k == 0 else pop.H  # input width: the model's features, or the layer below's h
        self.K = -(-(self.F + 1 + self.H) // 4) * 4  # [x | 1 | h | 0]: a multiple of 4 keeps (K, 4H) blocks aligned
        self.names = parameters(pop.layers)[4 * k : 4 * k + 4]  # weight_ih, weight_hh, bias_ih, bias_hh
        self.param = pop.param
        self.genes = [cells(g)[k] for g in pop.genomes]
        self.out = [f.out for f in fm]
        # input fraction bits: the 8-bit input's (one for the group), or each genome's h below
        self.x_frac = fm[0].x.frac if k == 0 else _col([f.x.frac for f in fm])
        self._constants(pop.calib)

    # -- constants of the group (fixed for the whole fine-tuning) --------------------------------------
    def _constants(self, calib: Calibration) -> None:
        P, H = self.P, self.H
        tabs = [_tables(g, calib, self.k) for g in self.genes]
        cat = lambda name: torch.from_numpy(np.concatenate([getattr(t, name) for t in tabs]))  # noqa: E731
        self.t_sig_r64 = cat("sig_r")  # forward
        self.t_sig_r_fwd = self.t_sig_r64.to(F32)
        # backward: times c_n = 2^(f_add_n - f_mul_rn), the scale from mul_rn to add_n (exact)
        c_n = torch.tensor([2.0 ** (o["add_n"].frac - o["mul_rn"].frac) for o in self.out], dtype=F64)
        self.t_sig_r = (self.t_sig_r64.view(P, 258) * c_n.view(P, 1)).to(F32).view(-1)
        self.t_dsig_r = (cat("dsig_r").view(P, 258).to(F64) * c_n.view(P, 1)).to(F32).view(-1)
        for name in ("zn", "zn_dz", "zn_dn", "zh", "zh_dz", "zh_dh"):
            setattr(self, f"t_{name}", cat(name))
        i32 = lambda v: torch.tensor(v, dtype=I32).view(P, 1, 1)  # noqa: E731
        zn_size = [t.rows[0] * t.rows[1] for t in tabs]
        zh_size = [t.rows[0] * t.rows[2] for t in tabs]
        self.off_r = i32([258 * p for p in range(P)])
        self.row_n, self.row_h = i32([t.rows[1] for t in tabs]), i32([t.rows[2] for t in tabs])
        self.at_zn = i32(np.cumsum([0] + zn_size[:-1]).tolist())
        self.at_zh = i32([a - o["add_h"].lo for a, o in zip(np.cumsum([0] + zh_size[:-1]).tolist(), self.out)])
        # clamp tops of the r and z indices, side by side (P, 1, 2H); of n (P, 1, 1)
        top_z = _col([o["add_z"].levels + 1 for o in self.out], F32)
        self.top_rz = torch.cat([torch.full((P, 1, H), 257.0), top_z.expand(P, 1, H)], dim=2)
        self.top_n = _col([o["add_n"].levels + 1 for o in self.out], F32)
        self.rn_lo = _col([o["mul_rn"].lo for o in self.out])
        self.rn_hi = _col([o["mul_rn"].hi for o in self.out])
        self.h_lo = _col([o["add_h"].lo for o in self.out], F32)
        self.h_hi = _col([o["add_h"].hi for o in self.out], F32)
        self.c_n = _col([2.0 ** (o["add_n"].frac - o["mul_rn"].frac) for o in self.out], F32)
        self.bits = {name: _col([g[INDEX[name]] for g in self.genes]) for name in OPS}
        self.frac = {name: _col([o[name].frac for o in self.out]) for name in self.out[0]}

    def quantized(self) -> dict:
        """This step's weight codes, folded scales and STE factors of the layer (per genome; see the module)."""
        P, H, F = self.P, self.H, self.F
        w_ih, w_hh, b_ih, b_hh = (self.param(n).to(F64) for n in self.names)
        fr, bits = self.frac, self.bits
        q: dict = {}
        for op in LINEAR:  # weight codes, per genome format from its own max |w| (scheme.weight_exponents)
            name, gate = OPS[op], GATE_OF_LINEAR[op]
            w = (w_ih if op in INPUT_LINEAR else w_hh)[:, gate * H : (gate + 1) * H]
            b = (b_ih if op in INPUT_LINEAR else b_hh)[:, gate * H : (gate + 1) * H].unsqueeze(1)
            fw = bits[name] - 1 - _ceil_log2(w.abs().amax(dim=(1, 2))).view(P, 1, 1)
            hi = torch.exp2(bits[name] - 1) - 1
            q[name, "w"], q[name, "wm"] = _quantize(w, fw, -hi - 1, hi)
            acc = fw + (self.x_frac if op in INPUT_LINEAR else fr["add_h"])
            q[name, "b"], q[name, "bm"] = _quantize(b, acc, INT32_LO, INT32_HI)
            q[name, "fw"], q[name, "acc"] = fw, acc
        # exponents of the folded scales (see _Fast._parts), per genome (P, 1, 1)
        k = 8 - bits["add_r"]
        e = {
            "xr": k + fr["add_r"] - q["lin_xr", "acc"],
            "hr": k + fr["add_r"] - q["lin_hr", "acc"],
            "xz": fr["add_z"] - q["lin_xz", "acc"],
            "hz": fr["add_z"] - q["lin_hz", "acc"],
            "hn": fr["mul_rn"] - fr["sig_r"] - q["lin_hn", "acc"],  # lin' = lin_hn 2^e: mul_rn = R(sig_r lin')
            "xn": fr["add_n"] - q["lin_xn", "acc"],
        }
        s = {key: torch.exp2(v) for key, v in e.items()}
        q["s"] = s
        T = lambda name, key: q[name, "w"].transpose(1, 2) * s[key]  # noqa: E731  (P, in, H)
        lo_z = _col([o["add_z"].lo for o in self.out])
        lo_n = _col([o["add_n"].lo for o in self.out])
        bias = torch.cat(
            [
                q["lin_xr", "b"] * s["xr"] + q["lin_hr", "b"] * s["hr"] + torch.exp2(k - 1) + 129,
                q["lin_xz", "b"] * s["xz"] + q["lin_hz", "b"] * s["hz"] + 0.5 - lo_z + 1,
                q["lin_hn", "b"] * s["hn"],
                q["lin_xn", "b"] * s["xn"] + 0.5 - lo_n + 1,
            ],
            dim=2,
        )
        # one product a step: [x_t | 1 | h_t | 0] (K columns) @ w4 -> [u_r | u_z | lin' | u_n's x part]
        K = self.K
        w4 = torch.zeros(P, K, 4 * H, dtype=F64)
        w4[:, :F, :H], w4[:, :F, H : 2 * H], w4[:, :F, 3 * H :] = (
            T("lin_xr", "xr"),
            T("lin_xz", "xz"),
            T("lin_xn", "xn"),
        )
        w4[:, F : F + 1] = bias
        w4[:, F + 1 : F + 1 + H, : 3 * H] = torch.cat([T("lin_hr", "hr"), T("lin_hz", "hz"), T("lin_hn", "hn")], 2)
        q["w4"] = _aligned(w4)  # (P, K, 4H)
        q["whT"] = _aligned(w4[:, F + 1 : F + 1 + H, : 3 * H].transpose(1, 2))  # (P, 3H, H)
        if self.k > 0:  # d loss / d input codes = d [u_r | u_z | lin' | u_n] @ wxT, for the layer below
            q["wxT"] = _aligned(w4[:, :F].transpose(1, 2))  # (P, 4H, F)
        # mul_rn = floor(sig_r lin' + 1/2) in float32 when exact for every genome (as _Fast's bound
        # for float64): then float32 and float64 give the same codes, so the choice, made for the
        # whole group, cannot change any genome's result.
        w, b = q["lin_hn", "w"], q["lin_hn", "b"].squeeze(1)
        mag = (w.abs().sum(2) * torch.exp2(bits["add_h"].view(P, 1) - 1) + b.abs()).amax(1)
        er, emin = e["hn"].view(P), torch.minimum(e["hn"].view(P), torch.tensor(-1.0, dtype=F64))
        bound = mag * torch.exp2(bits["sig_r"].view(P)) * torch.exp2(er - emin) + torch.exp2(-1 - emin)
        q["rn_f32"] = bool((bound < 2.0**24).all())
        return q

    # -- forward and backward over a sequence ----------------------------------------------------------
    def inputs(self, T: int, Np: int) -> torch.Tensor:
        """The layer's [x_t | 1 | h_t | 0] of every step (T + 1, P, Np, K), zero but the ones; h_0 = 0.
        The caller writes x; `forward` writes h."""
        xh = torch.zeros(T + 1, self.P, Np, self.K, dtype=F32)
        xh[..., self.F] = 1.0
        return xh

    def h(self, xh: torch.Tensor) -> torch.Tensor:
        """The add_h codes (T + 1, P, Np, H) held in `xh` after `forward` (step 0: h_0)."""
        return xh[..., self.F + 1 : self.F + 1 + self.H]

    def forward(self, q: dict, xh: torch.Tensor) -> dict:
        """Run the layer over every step of `xh` (its inputs written in): the h codes go into `xh`;
        returns what backward needs.

        Time-major buffers (T, P, Np, ...): each step's slice is one contiguous,
        aligned (P, Np, ...) block, so MKL multiplies all genomes in one batched
        call, slice by slice. Np = N rounded up to a multiple of 16: the extra
        sequences (zero input) keep every genome's block 64-byte aligned; they
        get no gradient (see Population._loss)."""
        P, H, F = self.P, self.H, self.F
        T, Np = xh.shape[0] - 1, xh.shape[2]
        acc = torch.empty(T, P, Np, 4 * H, dtype=F32)  # [u_r | u_z | lin' | u_n] of every step (lin' is kept)
        i_rz = torch.empty(P, Np, 2 * H, dtype=I32)
        i_n, i_h = torch.empty(P, Np, H, dtype=I32), torch.empty(P, Np, H, dtype=I32)
        g_r, i_zn, i_zh = (torch.empty(T, P, Np, H, dtype=I32) for _ in range(3))
        m_rn, m_h = torch.empty(T, P, Np, H, dtype=F32), torch.empty(T, P, Np, H, dtype=F32)
        dt = F32 if q["rn_f32"] else F64  # of mul_rn
        table, rn_lo, rn_hi = (self.t_sig_r_fwd, self.rn_lo.to(dt), self.rn_hi.to(dt))
        if dt == F64:
            table = self.t_sig_r64
        sig = torch.empty(P * Np * H, dtype=dt)
        rn, rnc = torch.empty(P, Np, H, dtype=dt), torch.empty(P, Np, H, dtype=dt)
        lin64, rn32 = torch.empty(P, Np, H, dtype=F64), torch.empty(P, Np, H, dtype=F32)
        m1, m2 = torch.empty(P, Np, H, dtype=F32), torch.empty(P, Np, H, dtype=F32)
        half = torch.full((1, 1, 1), 0.5, dtype=dt)
        for t in range(T):
            a, h = acc[t], xh[t, ..., F + 1 : F + 1 + H]
            torch.bmm(xh[t], q["w4"], out=a)
            u = a[..., : 2 * H]
            u.clamp_(min=0)
            torch.minimum(u, self.top_rz, out=u)
            i_rz.copy_(u)
            torch.add(i_rz[..., :H], self.off_r, out=g_r[t])
            torch.index_select(table, 0, g_r[t].view(-1), out=sig)
            lin = a[..., 2 * H : 3 * H] if dt == F32 else lin64.copy_(a[..., 2 * H : 3 * H])
            torch.addcmul(half, sig.view(P, Np, H), lin, out=rn).floor_()
            torch.minimum(torch.maximum(rn, rn_lo, out=rnc), rn_hi, out=rnc)
            torch.eq(rn, rnc, out=m_rn[t])
            u_n = a[..., 3 * H :]
            u_n.addcmul_(rnc if dt == F32 else rn32.copy_(rnc), self.c_n).clamp_(min=0)
            i_n.copy_(torch.minimum(u_n, self.top_n, out=u_n))
            z = i_rz[..., H:]
            torch.mul(z, self.row_n, out=i_zn[t]).add_(i_n).add_(self.at_zn)
            torch.index_select(self.t_zn, 0, i_zn[t].view(-1), out=m1.view(-1))
            i_h.copy_(h)
            torch.mul(z, self.row_h, out=i_zh[t]).add_(i_h).add_(self.at_zh)
            torch.index_select(self.t_zh, 0, i_zh[t].view(-1), out=m2.view(-1))
            torch.add(m1, m2, out=m1).floor_()
            nxt = xh[t + 1, ..., F + 1 : F + 1 + H]
            torch.minimum(torch.maximum(m1, self.h_lo, out=nxt), self.h_hi, out=nxt)
            torch.eq(m1, nxt, out=m_h[t])
        return {"xh": xh, "acc": acc, "g_r": g_r, "i_zn": i_zn, "i_zh": i_zh, "m_rn": m_rn, "m_h": m_h}

    def backward(
        self, q: dict, saved: dict, g: torch.Tensor, above: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Gradients of the folded GEMM weights (P, K, 4H) and, for k > 0, of the input codes
        (T, P, Np, F). `g` (P, Np, H, overwritten) is d loss / d h_T from the head (zero below
        the top layer); `above[t]` (T, P, Np, H), when given, is d loss / d (this layer's h after
        step t) through the layer above: its input at step t."""
        P, H, K = self.P, self.H, self.K
        xh, acc = saved["xh"], saved["acc"]
        T, Np = acc.shape[0], acc.shape[2]
        da = acc  # overwritten step by step, backwards: d[u_r | u_z | lin' | u_n]
        g_next = torch.empty(P, Np, H, dtype=F32)
        dw4 = torch.zeros(P, K, 4 * H, dtype=F32)
        dx = torch.empty(T, P, Np, self.F, dtype=F32) if self.k > 0 else None
        gg, a, b, qq = (torch.empty(P, Np, H, dtype=F32) for _ in range(4))
        for t in range(T - 1, -1, -1):
            if above is not None:
                g.add_(above[t])
            d = da[t]
            torch.mul(g, saved["m_h"][t], out=gg)
            i_zn, i_zh, g_r = saved["i_zn"][t].view(-1), saved["i_zh"][t].view(-1), saved["g_r"][t].view(-1)
            torch.index_select(self.t_zn_dz, 0, i_zn, out=a.view(-1))
            torch.index_select(self.t_zh_dz, 0, i_zh, out=b.view(-1))
            torch.mul(torch.add(a, b, out=a), gg, out=d[..., H : 2 * H])
            torch.index_select(self.t_zn_dn, 0, i_zn, out=a.view(-1))
            torch.mul(a, gg, out=d[..., 3 * H :])
            torch.index_select(self.t_zh_dh, 0, i_zh, out=b.view(-1))
            torch.mul(b, gg, out=g_next)  # d loss / d h_t, directly through mul_zh
            torch.mul(d[..., 3 * H :], saved["m_rn"][t], out=qq)  # d loss / d mul_rn, over c_n (in the tables)
            torch.index_select(self.t_dsig_r, 0, g_r, out=a.view(-1))
            torch.mul(torch.mul(qq, d[..., 2 * H : 3 * H], out=b), a, out=d[..., :H])
            torch.index_select(self.t_sig_r, 0, g_r, out=a.view(-1))
            torch.mul(qq, a, out=d[..., 2 * H : 3 * H])
            g_next.baddbmm_(d[..., : 3 * H], q["whT"])
            dw4.baddbmm_(xh[t].transpose(1, 2), d)
            if dx is not None:
                torch.bmm(d, q["wxT"], out=dx[t])
            g, g_next = g_next, g
        return dw4, dx

    def to_params(self, q: dict, dw4: torch.Tensor, grad: torch.Tensor) -> None:
        """Gradients of the folded GEMM weights -> of the codes -> of the layer's float weights in `grad`
        (exact scalings)."""
        H, F, s = self.H, self.F, q["s"]
        cols = {"lin_xr": 0, "lin_xz": 1, "lin_xn": 3, "lin_hr": 0, "lin_hz": 1, "lin_hn": 2}
        scale = {"lin_xr": "xr", "lin_hr": "hr", "lin_xz": "xz", "lin_hz": "hz", "lin_xn": "xn", "lin_hn": "hn"}
        w_ih, w_hh, b_ih, b_hh = (self.param(n, grad) for n in self.names)
        for op in LINEAR:
            name = OPS[op]
            c, gate = cols[name], GATE_OF_LINEAR[op]
            src = dw4[:, :F] if op in INPUT_LINEAR else dw4[:, F + 1 : F + 1 + H]
            dw = src[:, :, c * H : (c + 1) * H].transpose(1, 2).to(F64) * s[scale[name]]
            db = dw4[:, F : F + 1, c * H : (c + 1) * H].to(F64) * s[scale[name]]
            dw = dw * torch.exp2(q[name, "fw"]) * q[name, "wm"]
            db = (db * torch.exp2(q[name, "acc"]) * q[name, "bm"]).squeeze(1)
            rows = slice(gate * H, (gate + 1) * H)
            (w_ih if op in INPUT_LINEAR else w_hh)[:, rows] = dw.to(F32)
            (b_ih if op in INPUT_LINEAR else b_hh)[:, rows] = db.to(F32)


class Population:
    """P copies of a model's weights, one per genome, trained together with Adam.

    `step(X, y)` runs one optimizer step of every genome on its own mini-batch
    (X: (P, N, T, F), y: (P, N)); `model(p)` is genome p's current float model.
    A stacked model runs the one cell per layer (`_Layer`), layer after layer,
    each on the add_h codes of the layer below; the head reads the last one's.
    """

    BETAS, EPS, CLIP = (0.9, 0.999), 1e-8, 1.0  # torch.optim.Adam's defaults; train.py's gradient clipping

    def __init__(self, model: GRUClassifier, calib: Calibration, genomes: Sequence[Genome]) -> None:
        self.base, self.calib, self.layers = model, calib, model.layers
        self.genomes = [validate(g, self.layers) for g in genomes]
        self.P, self.H, self.F = len(self.genomes), model.hidden, model.gru.input_size
        self.HQ = -(-(self.H + 1) // 16) * 16  # [h | 1 | 0] of the head's gradient: a multiple of 16 keeps it aligned
        self.C = model.head.out_features
        self.layout, self.L = _layout(model)
        expected = parameters(self.layers)
        if [n for n, _, _ in self.layout] != list(expected) or model.gru.bidirectional or model.gru.proj_size:
            raise GruqError(
                "quantization-aware fine-tuning handles the GRU classifier of stacked unidirectional layers "
                f"({', '.join(expected)}); this model has {', '.join(n for n, _, _ in self.layout)}"
            )
        flat = torch.zeros(self.L, dtype=F32)
        for (_, _, at), p in zip(self.layout, model.parameters()):
            flat[at : at + p.numel()] = p.detach().reshape(-1)
        self.flat = flat.repeat(self.P, 1).contiguous()  # (P, L)
        self.m, self.v = torch.zeros_like(self.flat), torch.zeros_like(self.flat)
        self.steps = 0
        dummy = {OPS[op]: 0 for op in LINEAR} | {"head": 0}  # weight formats follow the weights, step by step
        fm = [layer_formats(g, calib, [dummy] * self.layers) for g in self.genomes]
        self.x_frac = fm[0][0].x.frac
        self.cells = [_Layer(self, k, [f[k] for f in fm]) for k in range(self.layers)]
        self.h_frac = self.cells[-1].frac["add_h"]  # the head reads the last layer's h

    # -- the weights ---------------------------------------------------------------------------------
    def param(self, name: str, flat: torch.Tensor | None = None) -> torch.Tensor:
        """Genome-stacked view (P, *shape) of one parameter of `flat` (default: the weights)."""
        flat = self.flat if flat is None else flat
        for n, shape, at in self.layout:
            if n == name:
                return flat[:, at : at + shape.numel()].view(self.P, *shape)
        raise KeyError(name)

    def model(self, p: int) -> GRUClassifier:
        """Genome p's current weights as a float model (a new module)."""
        m = GRUClassifier(self.F, self.H, self.C, self.layers)
        with torch.no_grad():
            for (_, shape, at), q in zip(self.layout, m.parameters()):
                q.copy_(self.flat[p, at : at + shape.numel()].view(shape))
        return m.eval()

    def _quantized(self) -> dict:
        """This step's codes, scales and STE factors: each layer's ("cells") and the head's."""
        P = self.P
        q: dict = {"cells": [cell.quantized() for cell in self.cells]}
        hw, hb = self.param("head.weight").to(F64), self.param("head.bias").to(F64).unsqueeze(1)
        fh = HEAD_BITS - 1 - _ceil_log2(hw.abs().amax(dim=(1, 2))).view(P, 1, 1)
        hi = 2.0 ** (HEAD_BITS - 1) - 1
        q["head", "w"], q["head", "wm"] = _quantize(hw, fh, -hi - 1, hi)
        lf = fh + self.h_frac
        q["head", "b"], q["head", "bm"] = _quantize(hb, lf, INT32_LO, INT32_HI)
        q["head", "fw"], q["head", "acc"] = fh, lf
        q["wo"] = _aligned(q["head", "w"])  # (P, C, H)
        q["woT"] = _aligned(q["wo"].transpose(1, 2))
        q["bo"] = q["head", "b"].to(F32)  # (P, 1, C)
        q["logit"] = torch.exp2(-lf).to(F32)
        return q

    def input_codes(self, X: torch.Tensor) -> torch.Tensor:
        """8-bit input codes (as `Simulation.input_codes`), float32."""
        y = X.to(F32) * 2.0**self.x_frac
        fl = torch.floor(y)
        r = fl + (y - fl >= 0.5).to(F32)
        lim = 2.0 ** (INPUT_BITS - 1)
        return r.clamp_(-lim, lim - 1)

    # -- forward and backward ----------------------------------------------------------------------------
    def loss_and_grad(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy of each genome on its batch (P,), and the gradients (P, L) of the flat weights."""
        q = self._quantized()
        with torch.no_grad():
            saved, logits = self._forward(q, X)
            losses, dlogit = self._loss(logits * q["logit"], y)
            grad = self._backward(q, saved, dlogit.mul_(q["logit"]))
        return losses, grad

    def _forward(self, q: dict, X: torch.Tensor) -> tuple[list[dict], torch.Tensor]:
        """Logit codes (P, Np, C) of every genome on its own batch X (P, N, T, F), and what backward
        needs, per layer: layer 0 on the input codes, layer k + 1 on layer k's h codes of every step
        (the sequences padded to Np, see `_Layer.forward`)."""
        P, H = self.P, self.H
        _, N, T, _ = X.shape
        Np = -(-N // 16) * 16
        saved: list[dict] = []
        for k, (cell, qc) in enumerate(zip(self.cells, q["cells"])):
            xh = cell.inputs(T, Np)
            if k == 0:
                xh[:T, :, :N, : self.F] = self.input_codes(X).permute(2, 0, 1, 3)
            else:
                xh[:T, :, :N, :H] = self.cells[k - 1].h(saved[-1]["xh"])[1:, :, :N]
            saved.append(cell.forward(qc, xh))
        logits = torch.empty(P, Np, self.C, dtype=F32)
        logits.copy_(q["bo"].expand(P, Np, self.C)).baddbmm_(self.cells[-1].h(saved[-1]["xh"])[T], q["woT"])
        saved[0]["N"] = N
        return saved, logits

    @staticmethod
    def _loss(z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy per genome over its N real sequences, and its gradient with respect to the
        real logits z (P, Np, C); rows past N (padding) get no gradient."""
        P, N = y.shape
        logp = torch.log_softmax(z[:, :N], dim=2)
        losses = -torch.gather(logp, 2, y.view(P, N, 1)).view(P, N).sum(1) / N
        grad = torch.softmax(z, dim=2)
        grad[:, N:] = 0.0
        grad[:, :N].scatter_add_(2, y.view(P, N, 1), torch.full((P, N, 1), -1.0, dtype=z.dtype))
        return losses, grad.mul_(1.0 / N)

    def _backward(self, q: dict, saved: list[dict], dlogit: torch.Tensor) -> torch.Tensor:
        """Gradients (P, L) of the flat weights: the head's, then each layer's from the top down,
        each handing the gradient of its input codes to the layer below."""
        P, H = self.P, self.H
        Np = dlogit.shape[1]
        g = torch.empty(P, Np, H, dtype=F32)
        torch.bmm(dlogit, q["wo"], out=g)  # d loss / d h_T of the last layer
        grad = torch.zeros_like(self.flat)
        above = None
        for k in range(self.layers - 1, -1, -1):
            if k < self.layers - 1:
                g = torch.zeros(P, Np, H, dtype=F32)  # below the top, h_T reaches the loss through `above` only
            dw4, above = self.cells[k].backward(q["cells"][k], saved[k], g, above)
            self.cells[k].to_params(q["cells"][k], dw4, grad)
        hT1 = torch.zeros(P, Np, self.HQ, dtype=F32)
        hT1[..., :H], hT1[..., H] = self.cells[-1].h(saved[-1]["xh"])[-1], 1.0
        dwo = torch.bmm(hT1.transpose(1, 2), dlogit).to(F64)  # (P, HQ, C): [h_T | 1 | 0]^T d logits
        hw, hb = self.param("head.weight", grad), self.param("head.bias", grad)
        hw.copy_(dwo[:, :H].transpose(1, 2) * torch.exp2(q["head", "fw"]) * q["head", "wm"])
        hb.copy_((dwo[:, H : H + 1] * torch.exp2(q["head", "acc"]) * q["head", "bm"]).squeeze(1))
        return grad

    # -- the optimizer --------------------------------------------------------------------------------------
    def step(self, X: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        """One Adam step of every genome on its own batch, after clipping its gradient norm; its losses (P,)."""
        losses, grad = self.loss_and_grad(X, y)
        # each genome's norm from its own row (a contiguous, aligned slice: no reduction across genomes)
        norms = torch.stack([torch.linalg.vector_norm(grad[p]) for p in range(self.P)]).view(self.P, 1)
        coef = torch.clamp(self.CLIP / (norms + 1e-6), max=1.0)
        grad.mul_(coef)
        b1, b2 = self.BETAS
        self.steps += 1
        self.m.mul_(b1).add_(grad * (1 - b1))
        self.v.mul_(b2).add_(grad * grad * (1 - b2))
        bc1, bc2 = 1 - b1**self.steps, 1 - b2**self.steps
        denom = (self.v.sqrt() / math.sqrt(bc2)).add_(self.EPS)
        self.flat.sub_(self.m / denom * (lr / bc1))
        return losses
