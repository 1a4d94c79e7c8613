"""The fake-quant simulation in torch: the integer cell for a population of genomes.

A population of genomes runs as one leading batch dimension P: every format
constant is a (P, 1, 1) tensor, so one forward pass scores P genomes. Tensors
hold integer codes in floating point; the two paths below are bit-exact with
the integer engine (`gruq.engine`) for every genome.

**The reference path** (`trace=True`, or `ste=True`) computes the 17 operators
one by one, exactly as the engine does, on float64 tensors. float64 represents
every code, product and sum of this cell exactly (all stay far below 2^53),
scaling by a power of two is exact, so floor(v * 2^-s + 1/2) equals the
engine's (v + 2^(s-1)) >> s bit for bit. With `ste=True`, rounding and look-up
tables pass gradients straight through (clipped at saturation), for
quantization-aware fine-tuning.

**The fast path** (`trace=False`, `ste=False`: what the search uses) computes
the same numbers with far fewer, cheaper tensor passes. See `_Fast` for how and
for the proof that it is exact; it checks its preconditions from the actual
weights and formats and falls back to the reference path when one fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cached_property, lru_cache

import numpy as np
import torch

from gruq.fixedpoint import INT32_MAX, INT32_MIN, Format, activation_lut, round_shift, sigmoid
from gruq.genome import Genome, validate
from gruq.model import Calibration, Cell, GRUClassifier
from gruq.ops import HIDDEN_LINEAR, INPUT_LINEAR, OPS, layer_prefix
from gruq.scheme import Formats, layer_formats, weight_exponents

LUT_SIZE = 256  # 2^8: the widest input code any genome has
F64, F32, I32 = torch.float64, torch.float32, torch.int32
ELEMENTS = 1 << 16  # target size of one (genomes, sequences, hidden) block of the fast path
PARALLEL_BLOCKS = True  # run the fast path's blocks on as many Python threads as torch has threads
REFERENCE_GENOMES = 4  # genomes per pass of the reference path when it stands in for the fast one


def _col(values: Sequence[float], dtype: torch.dtype = F64) -> torch.Tensor:
    """Per-genome constants as a (P, 1, 1) tensor that broadcasts over (P, N, H)."""
    return torch.tensor(values, dtype=dtype).view(-1, 1, 1)


def _pow2(exps: Sequence[int], dtype: torch.dtype = F64) -> torch.Tensor:
    return _col([2.0**e for e in exps], dtype)


@lru_cache(maxsize=4096)
def _lut(name: str, fmt_in: Format, fmt_out: Format) -> np.ndarray:
    """The engine's own activation table (the very same function and call)."""
    lut = activation_lut(sigmoid if name != "tanh_n" else np.tanh, fmt_in, fmt_out)
    lut.flags.writeable = False
    return lut


def _requantize(v: np.ndarray, frac_in: int, fmt: Format) -> np.ndarray:
    """`fixedpoint.requantize` (its round_shift, then the same saturation by min/max: np.clip is slow on int64)."""
    r = round_shift(v, frac_in - fmt.frac)
    return np.minimum(np.maximum(r, fmt.lo, out=r), fmt.hi, out=r)


@contextmanager
def single_thread() -> Iterator[None]:
    """torch on one thread for a while (a process-wide setting, restored after):
    float reductions then do not depend on a process's thread count, and
    parallel work does not oversubscribe the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Rounding:
    """Round-half-up and saturation, straight-through when training."""

    def __init__(self, ste: bool) -> None:
        self.ste = ste

    def __call__(self, v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, exact: bool = False) -> torch.Tensor:
        """floor(v + 1/2) is exact for the cell's dyadic codes; parameters and
        inputs (`exact`) round like fixedpoint.quantize, for any float."""
        if exact:
            fl = torch.floor(v)
            r = fl + (v - fl >= 0.5).to(v.dtype)
        else:
            r = torch.floor(v + 0.5)
        if not self.ste:  # the same values as clamp, whose tensor-bound form is slow
            return torch.minimum(torch.maximum(r, lo), hi)
        return torch.clamp(v + (r - v).detach(), lo, hi)


def _param_codes(rounding: _Rounding, v: torch.Tensor, fmts: Sequence[Format]) -> torch.Tensor:
    """Codes of a parameter tensor under each genome's format: (P, *v.shape)."""
    lo, hi = _col([f.lo for f in fmts]), _col([f.hi for f in fmts])
    return rounding(v.to(F64).unsqueeze(0) * _pow2([f.frac for f in fmts]), lo, hi, exact=True)


class CellSim:
    """One GRU cell (one layer) for a population of genomes: its formats, constants,
    parameter codes, and one reference step. A stacked model runs one per layer."""

    def __init__(self, cell: Cell, fmts: Sequence[Formats], rounding: _Rounding) -> None:
        self.model, self.fmts, self.round, self.ste = cell, list(fmts), rounding, rounding.ste
        fm = self.fmts
        names = list(fm[0].out)
        self.lo = {n: _col([f.out[n].lo for f in fm]) for n in names}
        self.hi = {n: _col([f.out[n].hi for f in fm]) for n in names}
        self.frac = {n: [f.out[n].frac for f in fm] for n in names}
        self.acc = {n: [f.acc_frac[n] for f in fm] for n in fm[0].acc_frac}
        self.int32 = (_col([INT32_MIN]), _col([INT32_MAX]))

    @cached_property
    def lut(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The reference path's activation tables (flat) and per-genome offsets."""
        return {
            name: self._table(name, src) for name, src in (("sig_r", "add_r"), ("sig_z", "add_z"), ("tanh_n", "add_n"))
        }

    @cached_property
    def _scale(self) -> dict[str, torch.Tensor]:
        """The reference path's scale factors, once (not in the time loop)."""
        fr, acc = self.frac, self.acc
        shift = lambda dst, src: _pow2([d - s for d, s in zip(fr[dst], src)])  # noqa: E731
        add = lambda a, b: [x + y for x, y in zip(a, b)]  # noqa: E731
        scale = {
            "xr": shift("add_r", acc["lin_xr"]),
            "hr": shift("add_r", acc["lin_hr"]),
            "xz": shift("add_z", acc["lin_xz"]),
            "hz": shift("add_z", acc["lin_hz"]),
            "rn": shift("mul_rn", add(fr["sig_r"], acc["lin_hn"])),
            "xn": shift("add_n", acc["lin_xn"]),
            "mn": shift("add_n", fr["mul_rn"]),
            "sub": shift("sub_z", fr["sig_z"]),
            "one": _pow2(fr["sig_z"]),
            "zn": shift("mul_zn", add(fr["sub_z"], fr["tanh_n"])),
            "zh": shift("mul_zh", add(fr["sig_z"], fr["add_h"])),
            "nh": shift("add_h", fr["mul_zn"]),
            "hh": shift("add_h", fr["mul_zh"]),
        }
        for name, src in (("sig_r", "add_r"), ("sig_z", "add_z"), ("tanh_n", "add_n")):  # for the STE
            scale[f"{name}_in"], scale[f"{name}_out"] = _pow2([-e for e in fr[src]]), _pow2(fr[name])
        return scale

    def _table(self, name: str, src: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One activation table per genome, flat; and each genome's offset into it."""
        table = np.zeros((len(self.fmts), LUT_SIZE))
        offsets = []
        for p, f in enumerate(self.fmts):
            lut = _lut(name, f.out[src], f.out[name])
            table[p, : len(lut)] = lut
            offsets.append(p * LUT_SIZE - f.out[src].lo)
        return torch.tensor(table.ravel(), dtype=F64), torch.tensor(offsets, dtype=torch.long).view(-1, 1, 1)

    # -- parameters -------------------------------------------------------
    def _linear(self, op: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight codes (P, H, in) and bias codes (P, 1, H) of one linear operator."""
        name = OPS[op]
        w = _param_codes(self.round, self.model.linear_weight(op), [f.weight[name] for f in self.fmts])
        bias = self.model.linear_bias(op).view(1, -1)
        b = _param_codes(self.round, bias, [Format(32, f.acc_frac[name]) for f in self.fmts])
        return w, b

    def _weights(self, ops: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes of the weights of `ops`, stacked as (P, in, 3H), and biases (P, 1, 3H)."""
        ws, bs = zip(*(self._linear(op) for op in ops))
        return torch.cat(ws, dim=1).transpose(1, 2), torch.cat(bs, dim=2)

    def params(self) -> tuple[torch.Tensor, ...]:
        """The reference step's parameter codes: (wx, bx, wh, bh), once per forward."""
        return (*self._weights(INPUT_LINEAR), *self._weights(HIDDEN_LINEAR))

    def _lookup(self, name: str, v: torch.Tensor, fn: Callable) -> torch.Tensor:
        table, offset = self.lut[name]
        out = torch.take(table, v.detach().long() + offset)
        if not self.ste:
            return out
        # straight-through: the gradient of fn at the real input, in output codes
        smooth = fn(v * self._scale[f"{name}_in"]) * self._scale[f"{name}_out"]
        return smooth + (out - smooth).detach()

    def step(self, params: tuple[torch.Tensor, ...], xt: torch.Tensor, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """One time step of the 17 operators, as the engine computes them (float64):
        input codes xt (N, in) or (P, N, in), state h (P, N, H); new h is add_h."""
        R, lo, hi, s = self.round, self.lo, self.hi, self._scale
        wx, bx, wh, bh = params
        H = self.model.hidden
        i32lo, i32hi = self.int32
        ax = torch.clamp(torch.matmul(xt, wx) + bx, i32lo, i32hi)
        ah = torch.clamp(torch.bmm(h, wh) + bh, i32lo, i32hi)
        c = {
            "lin_xr": ax[..., :H],
            "lin_xz": ax[..., H : 2 * H],
            "lin_xn": ax[..., 2 * H :],
            "lin_hr": ah[..., :H],
            "lin_hz": ah[..., H : 2 * H],
            "lin_hn": ah[..., 2 * H :],
        }
        c["add_r"] = R(c["lin_xr"] * s["xr"] + c["lin_hr"] * s["hr"], lo["add_r"], hi["add_r"])
        c["sig_r"] = self._lookup("sig_r", c["add_r"], torch.sigmoid)
        c["add_z"] = R(c["lin_xz"] * s["xz"] + c["lin_hz"] * s["hz"], lo["add_z"], hi["add_z"])
        c["sig_z"] = self._lookup("sig_z", c["add_z"], torch.sigmoid)
        c["mul_rn"] = R(c["sig_r"] * c["lin_hn"] * s["rn"], lo["mul_rn"], hi["mul_rn"])
        c["add_n"] = R(c["lin_xn"] * s["xn"] + c["mul_rn"] * s["mn"], lo["add_n"], hi["add_n"])
        c["tanh_n"] = self._lookup("tanh_n", c["add_n"], torch.tanh)
        c["sub_z"] = R((s["one"] - c["sig_z"]) * s["sub"], lo["sub_z"], hi["sub_z"])
        c["mul_zn"] = R(c["sub_z"] * c["tanh_n"] * s["zn"], lo["mul_zn"], hi["mul_zn"])
        c["mul_zh"] = R(c["sig_z"] * h * s["zh"], lo["mul_zh"], hi["mul_zh"])
        c["add_h"] = R(c["mul_zn"] * s["nh"] + c["mul_zh"] * s["hh"], lo["add_h"], hi["add_h"])
        return c


class Simulation:
    """The quantized model for a population of genomes: one `CellSim` per layer
    (17 genes each, layer by layer), layer k + 1 reading layer k's add_h codes,
    and the head on the last layer's h."""

    def __init__(self, model: GRUClassifier, calib: Calibration, genomes: Sequence[Genome], ste: bool = False):
        self.model, self.genomes, self.calib = model, [validate(g, model.layers) for g in genomes], calib
        wexps = [weight_exponents(model, k) for k in range(model.layers)]
        per_genome = [layer_formats(g, calib, wexps) for g in self.genomes]
        self.round = _Rounding(ste)
        self.ste = ste
        self.cells = [CellSim(model.cell(k), [f[k] for f in per_genome], self.round) for k in range(model.layers)]
        self.fmts = self.cells[-1].fmts  # the last layer's: the head's formats
        self.int32 = (_col([INT32_MIN]), _col([INT32_MAX]))

    def _head(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Head weight codes (P, H, C) and bias codes (P, 1, C)."""
        w = _param_codes(self.round, self.model.head.weight, [f.head_weight for f in self.fmts])
        bias = self.model.head.bias.view(1, -1)
        b = _param_codes(self.round, bias, [Format(32, f.logit_frac) for f in self.fmts])
        return w.transpose(1, 2), b

    def input_codes(self, x: torch.Tensor) -> torch.Tensor:
        """8-bit codes of the input; the same for every genome."""
        fx = self.cells[0].fmts[0].x
        lo, hi = torch.tensor(float(fx.lo), dtype=F64), torch.tensor(float(fx.hi), dtype=F64)
        return _Rounding(False)(torch.ldexp(x.to(F64), torch.tensor(fx.frac)), lo, hi, exact=True)

    def logit_scale(self) -> torch.Tensor:
        """2^-f of the logits per genome, to turn codes into real logits for a loss."""
        return _pow2([-f.logit_frac for f in self.fmts])

    # -- forward ----------------------------------------------------------
    def forward(self, x: torch.Tensor, trace: bool = False):
        """Logit codes (P, N, C) for float inputs x (N, T, F); optionally every op's codes
        (names `l{k}.op` for stacked layers, each (P, N, T, H)).

        Without `trace` and `ste` this takes the fast path (no autograd graph);
        otherwise, or when the fast path cannot prove itself exact for these
        weights and genomes, the reference path.
        """
        if not (trace or self.ste):
            workers = torch.get_num_threads() if PARALLEL_BLOCKS else 1
            with single_thread():  # see _Fast.run
                fast = _Fast.plan(self)
                if fast is not None:
                    return fast.run(self.input_codes(x), workers=workers)
            if len(self.genomes) > REFERENCE_GENOMES:  # bounded memory: a few genomes at a time
                with torch.no_grad():
                    return torch.cat(
                        [
                            Simulation(self.model, self.calib, self.genomes[i : i + REFERENCE_GENOMES])._reference(
                                x, False
                            )
                            for i in range(0, len(self.genomes), REFERENCE_GENOMES)
                        ]
                    )
        return self._reference(x, trace)

    def _reference(self, x: torch.Tensor, trace: bool):
        """The 17 operators of each layer one by one, as the engine computes them (float64)."""
        params = [cell.params() for cell in self.cells]
        wo, bo = self._head()
        xc = self.input_codes(x)
        P, (N, T, _), H, L = len(self.genomes), x.shape, self.model.hidden, len(self.cells)
        hs = [torch.zeros(P, N, H, dtype=F64) for _ in self.cells]
        prefix = [layer_prefix(k, L) for k in range(L)]
        i32lo, i32hi = self.int32
        traced: dict[str, list[torch.Tensor]] = {}
        for t in range(T):
            inp = xc[:, t]
            for k, cell in enumerate(self.cells):
                c = cell.step(params[k], inp, hs[k])
                hs[k] = inp = c["add_h"]
                if trace:
                    for name, v in c.items():
                        traced.setdefault(prefix[k] + name, []).append(v)
        logits = torch.clamp(torch.bmm(hs[-1], wo) + bo, i32lo, i32hi)
        if trace:
            return logits, {name: torch.stack(v, dim=2) for name, v in traced.items()}
        return logits


def _fits(terms: Sequence[tuple[torch.Tensor, torch.Tensor]], mantissa: int) -> bool:
    """Are all partial sums of these terms exact in a float with `mantissa` bits?

    Each term is (B, e): an integer multiple of 2^e, at most B in magnitude
    (tensors over genomes, or broadcastable to them). Every partial sum of such
    terms, in any order, is a multiple of 2^emin (emin = the smallest e of the
    genome) bounded by sum(B * 2^e); it is exactly representable when that
    bound is below 2^(mantissa + emin) (and emin is far from underflow).
    """
    exps = torch.stack(torch.broadcast_tensors(*[e for _, e in terms]))
    emin = exps.min(dim=0).values
    total = sum(b * torch.exp2(e - emin) for b, e in terms)
    return bool((total < 2.0**mantissa).all()) and bool((emin > -100).all())


class _FastCell:
    """One cell of the no-grad fast path: the engine's codes in about 35 tensor
    operations a step and layer (a stacked model runs one per layer, see `_Fast`).

    Notation, per genome (everything is batched over the P genomes): an add's
    pre-rounding value is v, in units of the add's scale; its code is
    sat(floor(v + 1/2)), sat = clamp to [lo, hi] = [-2^(b-1), 2^(b-1) - 1].

    1. No int32 saturation of the accumulators. The engine clamps the six
       linear outputs to int32; the clamp cannot trigger when, for every unit
       j, sum_i |W_ji| max|input code| + |b_j| <= 2^31 - 1. `plan` checks this
       on the actual codes (max|x| = 2^(b_x - 1): 128 for the model's 8-bit
       input, the previous layer's h above it; max|h| = 2^(b_h - 1)).
    2. add_r, add_z and add_n are never materialised, only the table index
       they select:
       - r: with k = 8 - b, w = clamp(floor(2^k (v + 1/2)), -128, 127) gives
         the code as floor(w / 2^k) (the floor of a floor is the floor of the
         quotient, and w saturates exactly when the code does: -128 = 2^k lo,
         127 = 2^k hi + 2^k - 1). sig_r's table is indexed by w + 128 in
         [0, 255] for every genome: one clamp with scalar bounds;
       - z and n: index = clamp(floor(v + 1/2 - lo), 0, hi - lo) = code - lo.
       u = 2^k (v + 1/2) + 128, resp. v + 1/2 - lo, comes straight out of the
       matrix products: the scales 2^(f_add - f_acc) (times 2^k) are folded
       into the weights, the scaled biases and constants into their bias;
       add_n's mul_rn part is added in the loop. floor is the conversion to
       int32, which truncates: floor, since u >= 0 after the clamp.
    3. mul_rn = sat(floor(sig_r 2^e lin_hn + 1/2)), sig_r 2^e read from a table
       by w_r; in float64 (an 8-bit code times a 32-bit accumulator).
    4. sub_z, mul_zn and mul_zh depend only on the codes of add_z, add_n and h:
       per genome, table zn gives mul_zn 2^(f_h - f_mul_zn) + 1/2 by (add_z,
       add_n), table zh gives mul_zh 2^(f_h - f_mul_zh) by (add_z, h), both
       built with the engine's own activation tables and round_shift; then
       add_h = sat(floor(zn + zh)), the engine's align_add(mul_zn, mul_zh).
    5. Exact in float32 where provable. Every value above is a sum of terms,
       each an integer multiple of some 2^e bounded by some B (an 8-bit weight
       code times an 8-bit input code, summed over the actual rows; biases;
       constants). Every partial sum of such terms, in any order (a BLAS
       blocks and reorders), is a multiple of 2^emin bounded by sum B 2^e, so
       exactly representable with m mantissa bits when
       sum B 2^(e - emin) < 2^m (`_fits`). `plan` computes these bounds from
       the actual codes and formats and runs the products, sums and tables in
       float32 when all fit 24 bits, in float64 when they fit 53, and
       otherwise gives up (the reference path runs). mul_rn is always float64
       (checked against 53 bits); table indices are int32. Products by powers
       of two, conversions of integers, clamps, floors and table reads are
       exact on exact values: every code equals the engine's.
    """

    def __init__(self, cell: CellSim, dtype: torch.dtype, parts: dict) -> None:
        self.cell, self.dtype = cell, dtype
        self.P, self.F, self.H = len(cell.fmts), cell.model.input_size, cell.model.hidden
        dt, p = dtype, parts
        self.w_r, self.b_r = p["w_r"].to(dt), p["b_r"].to(dt)
        self.w_z, self.b_z = p["w_z"].to(dt), p["b_z"].to(dt)
        self.w_l, self.b_l = p["w_l"].to(dt), p["b_l"].to(dt)
        self.w_n, self.b_n = p["w_n"].to(dt), p["b_n"].to(dt)
        self.sig_r = p["sig_r"]  # float64 (P * 256,)
        self.tables = self._tables(cell.fmts, p["s1"], p["s2"], dt)
        self.c_n, self.top_z, self.top_n = p["c_n"].to(dt), p["top_z"].to(dt), p["top_n"].to(dt)
        self.rn_lo, self.rn_hi = cell.lo["mul_rn"], cell.hi["mul_rn"]
        self.h_lo, self.h_hi = cell.lo["add_h"].to(dt), cell.hi["add_h"].to(dt)

    # -- the plan ---------------------------------------------------------
    @classmethod
    def plan(cls, cell: CellSim, dtype: torch.dtype | None = None) -> _FastCell | None:
        """The fast path for `cell`, or None when its exactness cannot be proved (see the
        class); `dtype` forces a precision (tests), skipping only the float checks."""
        with torch.no_grad():
            parts, bounds = cls._parts(cell)
            if not bounds["int32"] or not _fits(bounds["mul_rn"], 53):
                return None
            if dtype is not None:
                return cls(cell, dtype, parts)
            for dtype, mantissa in ((F32, 24), (F64, 53)):
                if all(_fits(bounds[k], mantissa) for k in ("r", "z", "lin_hn", "n", "add_h")):
                    return cls(cell, dtype, parts)
        return None

    @staticmethod
    def _parts(sim: CellSim) -> tuple[dict, dict]:
        """Scaled weights, biases and tables (float64) and the exactness bounds."""
        fm, fr, acc = sim.fmts, sim.frac, sim.acc
        e = lambda v: torch.tensor(v, dtype=F64).view(-1, 1, 1)  # noqa: E731  exponents (P, 1, 1)
        xmax = e([2 ** (f.x.bits - 1) for f in fm])  # max |x code|: 128 for the 8-bit input
        hmax = e([2 ** (f.h.bits - 1) for f in fm])
        lin = {op: sim._linear(op) for op in INPUT_LINEAR + HIDDEN_LINEAR}
        # per unit j: sum_i |W_ji| max|in| + |b_j|, shape (P, 1, H)
        mag = {
            OPS[op]: (w.abs().sum(2).unsqueeze(1) * (xmax if op in INPUT_LINEAR else hmax) + b.abs())
            for op, (w, b) in lin.items()
        }
        parts: dict = {}
        bounds: dict = {"int32": all(bool((m <= INT32_MAX).all()) for m in mag.values())}
        # r: normalised index w_r + 128 (point 1)
        k = e([8 - f.out["add_r"].bits for f in fm])
        ex, eh = k + e(fr["add_r"]) - e(acc["lin_xr"]), k + e(fr["add_r"]) - e(acc["lin_hr"])
        (wx, bx), (wh, bh) = lin[0], lin[1]
        parts["w_r"] = torch.cat([wx.transpose(1, 2) * torch.exp2(ex), wh.transpose(1, 2) * torch.exp2(eh)], 1)
        parts["b_r"] = bx * torch.exp2(ex) + bh * torch.exp2(eh) + torch.exp2(k - 1) + 128
        bounds["r"] = [(mag["lin_xr"], ex), (mag["lin_hr"], eh), (1.0, k - 1), (128.0, e([0]))]
        # z: code - lo, v + 1/2 - lo (point 3)
        lo_z = e([f.out["add_z"].lo for f in fm])
        ex, eh = e(fr["add_z"]) - e(acc["lin_xz"]), e(fr["add_z"]) - e(acc["lin_hz"])
        (wx, bx), (wh, bh) = lin[4], lin[5]
        parts["w_z"] = torch.cat([wx.transpose(1, 2) * torch.exp2(ex), wh.transpose(1, 2) * torch.exp2(eh)], 1)
        parts["b_z"] = bx * torch.exp2(ex) + bh * torch.exp2(eh) + 0.5 - lo_z
        bounds["z"] = [(mag["lin_xz"], ex), (mag["lin_hz"], eh), (1.0, e([-1])), (-lo_z, e([0]))]
        # lin_hn, in the accumulator's own scale
        wl, bl = lin[9]
        parts["w_l"], parts["b_l"] = wl.transpose(1, 2), bl
        bounds["lin_hn"] = [(mag["lin_hn"], e([0]))]
        # n: lin_xn part of v + 1/2 - lo; mul_rn * 2^c_n is added in the loop
        lo_n = e([f.out["add_n"].lo for f in fm])
        ex = e(fr["add_n"]) - e(acc["lin_xn"])
        cn = e(fr["add_n"]) - e(fr["mul_rn"])
        wn, bn = lin[8]
        parts["w_n"], parts["b_n"] = wn.transpose(1, 2) * torch.exp2(ex), bn * torch.exp2(ex) + 0.5 - lo_n
        parts["c_n"] = torch.exp2(cn)
        bounds["n"] = [
            (mag["lin_xn"], ex),
            (e([2 ** (f.out["mul_rn"].bits - 1) for f in fm]), cn),
            (1.0, e([-1])),
            (-lo_n, e([0])),
        ]
        er = e(fr["mul_rn"]) - e(fr["sig_r"]) - e(acc["lin_hn"])
        bounds["mul_rn"] = [(mag["lin_hn"] * e([2 ** f.out["sig_r"].bits for f in fm]), er), (1.0, e([-1]))]
        s1 = [a - b for a, b in zip(fr["add_h"], fr["mul_zn"])]
        s2 = [a - b for a, b in zip(fr["add_h"], fr["mul_zh"])]
        bounds["add_h"] = [
            (e([2 ** (f.out["mul_zn"].bits - 1) for f in fm]), e(s1)),
            (e([2 ** (f.out["mul_zh"].bits - 1) for f in fm]), e(s2)),
            (1.0, e([-1])),
        ]
        parts["sig_r"] = _FastCell._sig_r(fm, er.view(-1).tolist())
        parts["s1"], parts["s2"] = s1, s2
        parts["top_z"] = e([f.out["add_z"].hi - f.out["add_z"].lo for f in fm])
        parts["top_n"] = e([f.out["add_n"].hi - f.out["add_n"].lo for f in fm])
        return parts, bounds

    @staticmethod
    def _sig_r(fm: Sequence, er: Sequence[float]) -> torch.Tensor:
        """sig_r * 2^er of each genome by w_r + 128 (code = floor(w_r / 2^k)), flat (P * 256)."""
        w = np.arange(256) - 128
        rows = []
        for f, e in zip(fm, er):
            fin = f.out["add_r"]
            lut = _lut("sig_r", fin, f.out["sig_r"])
            rows.append(np.ldexp(lut[np.floor_divide(w, 2 ** (8 - fin.bits)) - fin.lo].astype(np.float64), int(e)))
        return torch.tensor(np.concatenate(rows), dtype=F64)

    @staticmethod
    def _tables(fm: Sequence, s1: Sequence[int], s2: Sequence[int], dtype: torch.dtype) -> dict:
        """The mul_zn and mul_zh tables (point 3), with the engine's own arithmetic.

        Genome p's block of zn starts at zn_at[p]: mul_zn * 2^s1 + 1/2 for the
        codes (add_z, add_n) at (add_z - lo_z) * 2^b_add_n + (add_n - lo_n). Its
        block of zh starts at zh_at[p]: mul_zh * 2^s2 for the codes (add_z, h) at
        (add_z - lo_z) * 2^b_h + (h - lo_h). Tables are flat, genome after genome.
        """
        zn_at, zh_at = [0], [0]
        for f in fm:
            zn_at.append(zn_at[-1] + f.out["add_z"].levels * f.out["add_n"].levels)
            zh_at.append(zh_at[-1] + f.out["add_z"].levels * f.out["add_h"].levels)
        npdt = np.float32 if dtype == F32 else np.float64
        zn, zh = np.empty(zn_at[-1], dtype=npdt), np.empty(zh_at[-1], dtype=npdt)
        for p, f in enumerate(fm):
            o = f.out
            sig_z = _lut("sig_z", o["add_z"], o["sig_z"])
            sub_z = _requantize((1 << o["sig_z"].frac) - sig_z, o["sig_z"].frac, o["sub_z"])
            tanh_n = _lut("tanh_n", o["add_n"], o["tanh_n"])
            mul_zn = _requantize(sub_z[:, None] * tanh_n[None, :], o["sub_z"].frac + o["tanh_n"].frac, o["mul_zn"])
            h = np.arange(o["add_h"].lo, o["add_h"].hi + 1)
            mul_zh = _requantize(sig_z[:, None] * h[None, :], o["sig_z"].frac + o["add_h"].frac, o["mul_zh"])
            zn[zn_at[p] : zn_at[p + 1]] = np.ldexp(mul_zn, s1[p]).ravel() + 0.5
            zh[zh_at[p] : zh_at[p + 1]] = np.ldexp(mul_zh, s2[p]).ravel()
        return {
            "zn": torch.from_numpy(zn),
            "zh": torch.from_numpy(zh),
            "zn_at": zn_at,
            "zh_at": zh_at,
            "zn_row": [f.out["add_n"].levels for f in fm],
            "zh_row": [f.out["add_h"].levels for f in fm],
            "h_lo": [f.out["add_h"].lo for f in fm],
        }

    def block(self, g: slice, n: int) -> _CellBlock:
        """This cell's constants and buffers for genomes g and n sequences."""
        return _CellBlock(self, g, n)


class _CellBlock:
    """One cell of one block of the fast path: its slices of the constants, its
    buffers and its state h; `step` advances it by one time step."""

    def __init__(self, fc: _FastCell, g: slice, N: int) -> None:
        P, F, H, dt = g.stop - g.start, fc.F, fc.H, fc.dtype
        self.F = F
        self.w_r, self.b_r, self.w_z, self.b_z = fc.w_r[g], fc.b_r[g], fc.w_z[g], fc.b_z[g]
        self.w_l, self.b_l, self.w_n, self.b_n = fc.w_l[g], fc.b_l[g], fc.w_n[g], fc.b_n[g]
        self.sig_r = fc.sig_r[g.start * 256 : g.stop * 256]
        tb = fc.tables
        self.zn = tb["zn"][tb["zn_at"][g.start] : tb["zn_at"][g.stop]]
        self.zh = tb["zh"][tb["zh_at"][g.start] : tb["zh_at"][g.stop]]
        i32 = lambda v: torch.tensor(v, dtype=I32).view(P, 1, 1)  # noqa: E731
        self.zn_at = i32([a - tb["zn_at"][g.start] for a in tb["zn_at"][g]])
        self.zh_at = i32([a - tb["zh_at"][g.start] - lo for a, lo in zip(tb["zh_at"][g], tb["h_lo"][g])])
        self.zn_row, self.zh_row = i32(tb["zn_row"][g]), i32(tb["zh_row"][g])
        self.c_n, self.top_z, self.top_n = fc.c_n[g], fc.top_z[g], fc.top_n[g]
        self.rn_lo, self.rn_hi, self.h_lo, self.h_hi = fc.rn_lo[g], fc.rn_hi[g], fc.h_lo[g], fc.h_hi[g]
        self.half = torch.full((1, 1, 1), 0.5, dtype=F64)
        self.off_r = (torch.arange(P, dtype=I32) * 256).view(P, 1, 1)
        self.xh = torch.zeros(P, N, F + H, dtype=dt)  # [x_t | h]
        self.h = self.xh[..., F:]
        self.u_r, self.u_z, self.lin, self.u_n = (torch.empty(P, N, H, dtype=dt) for _ in range(4))
        self.i_r, self.i_z, self.i_n, self.i_h = (torch.empty(P, N, H, dtype=I32) for _ in range(4))
        self.lin64 = self.lin if dt == F64 else torch.empty(P, N, H, dtype=F64)
        self.rn = torch.empty(P, N, H, dtype=F64)
        self.rn_dt = self.rn if dt == F64 else torch.empty(P, N, H, dtype=dt)
        self.s_r = torch.empty(P * N * H, dtype=F64)
        self.m1, self.m2 = torch.empty(P, N, H, dtype=dt), torch.empty(P, N, H, dtype=dt)
        self.P, self.N, self.H = P, N, H

    def step(self, xt: torch.Tensor) -> torch.Tensor:
        """h after one step on input codes xt ((n, F), or (P, n, F) from the layer below)."""
        P, N, H = self.P, self.N, self.H
        xh, h, u_r, u_z, lin, u_n = self.xh, self.h, self.u_r, self.u_z, self.lin, self.u_n
        i_r, i_z, i_n, i_h, lin64, rn, rn_dt = self.i_r, self.i_z, self.i_n, self.i_h, self.lin64, self.rn, self.rn_dt
        s_r, m1, m2 = self.s_r, self.m1, self.m2
        xh[..., : self.F] = xt
        torch.baddbmm(self.b_r, xh, self.w_r, out=u_r)
        torch.baddbmm(self.b_z, xh, self.w_z, out=u_z)
        torch.baddbmm(self.b_l, h, self.w_l, out=lin)
        torch.baddbmm(self.b_n, xh[..., : self.F], self.w_n, out=u_n)
        # r: sig_r * 2^e by w_r, then mul_rn in float64
        i_r.copy_(u_r.clamp_(0, 255)).add_(self.off_r)
        torch.index_select(self.sig_r, 0, i_r.view(-1), out=s_r)
        if lin64 is not lin:
            lin64.copy_(lin)
        torch.addcmul(self.half, s_r.view(P, N, H), lin64, out=rn).floor_()
        torch.minimum(torch.maximum(rn, self.rn_lo, out=rn), self.rn_hi, out=rn)
        if rn_dt is not rn:
            rn_dt.copy_(rn)
        # n and z: indices into the two tables; int32 arithmetic
        i_n.copy_(torch.minimum(u_n.addcmul_(rn_dt, self.c_n).clamp_(min=0), self.top_n, out=u_n))
        i_z.copy_(torch.minimum(u_z.clamp_(min=0), self.top_z, out=u_z))
        i_n.add_(torch.mul(i_z, self.zn_row, out=i_r)).add_(self.zn_at)  # (int32 addcmul is slow)
        torch.index_select(self.zn, 0, i_n.view(-1), out=m1.view(-1))
        i_h.copy_(h).add_(torch.mul(i_z, self.zh_row, out=i_r)).add_(self.zh_at)
        torch.index_select(self.zh, 0, i_h.view(-1), out=m2.view(-1))
        # add_h
        torch.add(m1, m2, out=m1).floor_()
        torch.minimum(torch.maximum(m1, self.h_lo, out=m1), self.h_hi, out=h)
        return h


class _Fast:
    """The fast path of a whole model: one `_FastCell` per layer, stepped layer
    after layer at each time step (layer k + 1 reads layer k's new h codes, copied
    into its own input: no requantization), and the head on the last layer's h.
    Each cell proves its own exactness and picks its own precision."""

    def __init__(self, sim: Simulation, cells: Sequence[_FastCell]) -> None:
        self.sim, self.cells = sim, list(cells)
        self.P, self.H = len(sim.genomes), sim.model.hidden
        self.head = sim._head()

    @property
    def dtype(self) -> torch.dtype:
        """The widest precision any layer needs."""
        return F64 if any(c.dtype == F64 for c in self.cells) else F32

    @classmethod
    def plan(cls, sim: Simulation, dtype: torch.dtype | None = None) -> _Fast | None:
        """The fast path for `sim`, or None when one layer cannot prove itself exact."""
        cells = []
        for cell in sim.cells:
            fc = _FastCell.plan(cell, dtype)
            if fc is None:
                return None
            cells.append(fc)
        return cls(sim, cells)

    # -- the run ----------------------------------------------------------
    def run(self, xc: torch.Tensor, states: bool = False, workers: int = 1):
        """Logit codes (P, N, C) for input codes xc (N, T, F); with `states`, also
        the codes of the last layer's h (add_h) after every step, (P, N, T, H) (for tests).

        The work is cut into independent blocks (a group of genomes x a tile of
        sequences, about ELEMENTS codes per tensor: they stay in cache), run on
        `workers` Python threads. Call it with torch on one thread (forward
        does): then each block is single-threaded, with one parallel region
        per block rather than one per tensor operation (a few dozen per time
        step); that scales better, and on a busy machine torch's own threads,
        which wait for each other at every operation, can be many times slower.
        """
        N = xc.shape[0]
        out = torch.empty(self.P, N, self.head[0].shape[2], dtype=F64)
        hs = torch.empty(self.P, N, xc.shape[1], self.H, dtype=F64) if states else None
        if N == 0:
            return (out, hs) if states else out
        per = max(1, min(ELEMENTS // max(1, N * self.H), -(-self.P // workers)))
        tile = N if per > 1 else max(1, min(ELEMENTS // self.H, -(-N // workers)))
        xt = xc.to(self.cells[0].dtype).transpose(0, 1).contiguous()  # (T, N, F)
        blocks = [
            (slice(p, min(p + per, self.P)), slice(i, i + tile))
            for p in range(0, self.P, per)
            for i in range(0, N, tile)
        ]

        def work(block: tuple[slice, slice]) -> None:
            with torch.no_grad():
                g, n = block
                out[g, n] = self._block(g, xt[:, n], None if hs is None else hs[g, n])

        if workers == 1 or len(blocks) == 1:
            for block in blocks:
                work(block)
        else:
            with single_thread(), ThreadPoolExecutor(min(workers, len(blocks))) as pool:
                list(pool.map(work, blocks))
        return (out, hs) if states else out

    def _block(self, g: slice, xt: torch.Tensor, hs: torch.Tensor | None) -> torch.Tensor:
        """Logit codes of genomes g for input codes xt (T, n, F); last h of each step into hs."""
        layers = [fc.block(g, xt.shape[1]) for fc in self.cells]
        for t in range(xt.shape[0]):
            inp = xt[t]
            for layer in layers:
                inp = layer.step(inp)
            if hs is not None:
                hs[:, :, t] = inp
        wo, bo = self.head
        lo, hi = self.sim.int32
        return torch.clamp(torch.bmm(layers[-1].h.to(F64), wo[g]) + bo[g], lo, hi)
