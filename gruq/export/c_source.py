"""C99 sources of an exported model: constants, kernel, check program, test vectors.

- gruq_model.h   the model's constants: dimensions, formats, shifts as macros;
                 packed weights, biases, look-up tables and head as arrays
                 (only where GRUQ_MODEL_IMPLEMENTATION is defined: the kernel).
- gruq_kernel.h  the C API; gruq_kernel.c the kernel, the same text for every
                 model (everything model-specific is in gruq_model.h).
- test_vectors.h/.c  input codes of a whole split and the integer engine's logits.
- check.c        runs the kernel on every test vector; the only `main`.

The kernel is integers only, with no dynamic memory and nothing beyond
<stdint.h>, <stddef.h> and <string.h>. It mirrors gruq.engine operation for
operation (the reference of truth), so its logits are bit-identical.
"""

from __future__ import annotations

import numpy as np

from gruq.export.packing import pack
from gruq.export.plan import ADDS, LUTS, MULS, shifts, wide_ops
from gruq.fixedpoint import INT32_MIN
from gruq.genome import ModelShape
from gruq.ops import DESCRIPTION, INPUT_LINEAR, LINEAR, OPS
from gruq.scheme import CellModel, IntegerModel

MODEL_H, KERNEL_H, KERNEL_C, CELL_H = "gruq_model.h", "gruq_kernel.h", "gruq_kernel.c", "gruq_cell.h"
VECTORS_H, VECTORS_C, CHECK_C = "test_vectors.h", "test_vectors.c", "check.c"
FILES = (MODEL_H, KERNEL_H, KERNEL_C, CELL_H, VECTORS_H, VECTORS_C, CHECK_C)
KERNEL_INCLUDES = ("stdint.h", "stddef.h", "string.h")
MAX_SHOWN = 5  # mismatching sequences the check program describes
PACK_PAD = 4  # zero bytes after each bit-packed matrix: the kernel decodes with word loads


def _int(v: int) -> str:
    """A C integer literal of v (INT32_MIN written so that it has type int)."""
    v = int(v)
    return "(-2147483647 - 1)" if v == INT32_MIN else str(v)


def _array(values: np.ndarray, per_line: int = 24, indent: str = "    ") -> str:
    """Comma-separated C literals of an integer array (flattened row-major)."""
    vals = [_int(v) for v in np.asarray(values).ravel()]
    lines = [indent + ", ".join(vals[i : i + per_line]) + "," for i in range(0, len(vals), per_line)]
    return "\n".join(lines) if lines else indent + "0,"


def _hex_bytes(data: bytes, per_line: int = 16) -> str:
    lines = [
        "    " + ", ".join(f"0x{b:02x}" for b in data[i : i + per_line]) + "," for i in range(0, len(data), per_line)
    ]
    return "\n".join(lines) if lines else "    0x00,"


def _macro(name: str) -> str:
    return "GRUQ_" + name.upper()


def _weights(name: str, w: np.ndarray, bits: int) -> str:
    """The C array of one weight matrix: packed at `bits`, and below 8 bits also
    one byte per weight under GRUQ_WEIGHTS_UNPACKED (the same codes either way)."""

    def array(data: bytes, at: int, pad: int = 0) -> str:
        note = f", then {pad} zero bytes for the decoder's word loads" if pad else ""
        return (
            f"static const uint8_t gruq_{name}_w[{len(data) + pad}] = {{ /* {w.shape[0]} x {w.shape[1]} "
            f"at {at} bits{note} */\n" + _hex_bytes(data + bytes(pad)) + "\n};"
        )

    packed = array(pack(w, bits), bits, 0 if bits == 8 else PACK_PAD)
    if bits == 8:
        return packed
    return f"#if GRUQ_WEIGHTS_UNPACKED\n{array(pack(w, 8), 8)}\n#else\n{packed}\n#endif"


def _prefixes(k: int, layers: int) -> tuple[str, str]:
    """Macro and array name prefixes of layer k: none for a one-layer model (its
    header is unchanged), "L{k}_" / "l{k}_" for a stacked one."""
    return ("", "") if layers == 1 else (f"L{k}_", f"l{k}_")


def _cell_macros(cell: CellModel, mp: str) -> list[str]:
    """The #defines of one layer's cell: weight formats, output formats, shifts, WIDE flags."""
    f, plan = cell.fmt, shifts(cell.fmt)
    d = ["/* linear operators: weight bits and fraction bits, int32 accumulator fraction bits */"]
    for op in LINEAR:
        name = OPS[op]
        m, wf = _macro(mp + name), f.weight[name]
        d.append(f"#define {m}_BITS {wf.bits} /* {DESCRIPTION[name]} */")
        d.append(f"#define {m}_WFRAC {wf.frac}")
        d.append(f"#define {m}_ACC_FRAC {f.acc_frac[name]}")
    d.append(
        "\n/* Weights are stored bit-packed at their widths (the smallest flash), or, built with\n"
        " * -DGRUQ_WEIGHTS_UNPACKED=1, one byte per weight (no decoding: faster, larger).\n"
        " * STORED_BITS is the width of a weight in memory. */"
    )
    d.append("#ifndef GRUQ_WEIGHTS_UNPACKED\n#define GRUQ_WEIGHTS_UNPACKED 0\n#endif")
    for unpacked in (True, False):
        d.append("#if GRUQ_WEIGHTS_UNPACKED" if unpacked else "#else")
        for op in LINEAR:
            m = _macro(mp + OPS[op])
            d.append(f"#define {m}_STORED_BITS {'8' if unpacked else m + '_BITS'}")
    d.append("#endif")
    d.append("\n/* other operators: output format (bits, fraction bits, code range) */")
    for name in OPS:
        if name in f.out:
            o, m = f.out[name], _macro(mp + name)
            d.append(f"#define {m}_BITS {o.bits} /* {DESCRIPTION[name]}, {'signed' if o.signed else 'unsigned'} */")
            d.append(f"#define {m}_FRAC {o.frac}")
            d.append(f"#define {m}_LO ({o.lo})")
            d.append(f"#define {m}_HI {o.hi}")
    d.append(
        "\n/* shifts: SHL_A/SHL_B align an add's operands (multiply by 2^SHL); SHR rounds half up\n"
        " * and divides by 2^SHR when > 0, multiplies by 2^-SHR when < 0; then saturation. */"
    )
    for name in list(ADDS) + list(MULS) + ["sub_z"]:
        for key, v in plan[name].items():
            d.append(f"#define {_macro(mp + name)}_{key.upper()} ({v})")
    d.append(
        "\n/* WIDE: 1 when the operator's intermediate values can leave int32 for some input\n"
        " * (computed in int64), 0 when int32 is exact (bounds from this model's weights). */"
    )
    for name, wide in wide_ops(cell).items():
        d.append(f"#define {_macro(mp + name)}_WIDE {int(wide)}")
    return d


def _cell_arrays(cell: CellModel, ap: str) -> list[str]:
    """One layer's parameter arrays: weights, biases, look-up tables."""
    f, d = cell.fmt, []
    for op in LINEAR:
        name = OPS[op]
        d.append(_weights(ap + name, cell.weights[name], f.weight[name].bits))
        d.append(f"static const int32_t gruq_{ap}{name}_b[GRUQ_HIDDEN] = {{")
        d.append(_array(cell.biases[name]) + "\n};")
    d.append("/* activation look-up tables: entry k is for input code (index op's LO) + k */")
    for name, index in LUTS.items():
        ctype = "uint8_t" if not f.out[name].signed else "int8_t"
        d.append(f"static const {ctype} gruq_{ap}{name}_lut[{len(cell.lut[name])}] = {{ /* indexed by {index} */")
        d.append(_array(cell.lut[name], per_line=32) + "\n};")
    return d


def model_header(im: IntegerModel, shape: ModelShape, task: str = "") -> str:
    """gruq_model.h: the model's constants (a stacked model's per layer, prefixed GRUQ_Lk_ / gruq_lk_)."""
    f, layers = im.fmt, im.layers
    first = im.cells[0].fmt
    genome = "\n *   ".join(", ".join(str(b) for b in c.genome) for c in im.cells)
    d: list[str] = []
    d.append(f"""/* gruq_model.h: integer GRU model exported by gruq{f" for task {task}" if task else ""}.
 * Genome (bits per operator, in order {", ".join(OPS)}{", one line per layer" if layers > 1 else ""}):
 *   {genome}
 * Generated file: the kernel (gruq_kernel.c) is the same for every model.
 * Every tensor is two's complement with scale 2^-FRAC: value = code / 2^FRAC.
 * Define GRUQ_MODEL_IMPLEMENTATION before including this file in exactly one
 * translation unit (gruq_kernel.c does) to get the parameter arrays; other
 * files get the dimensions and formats only.
 */
#ifndef GRUQ_MODEL_H
#define GRUQ_MODEL_H

#include <stdint.h>

/* dimensions */
#define GRUQ_FEATURES {shape.features}
#define GRUQ_HIDDEN {shape.hidden}
#define GRUQ_CLASSES {shape.classes}
#define GRUQ_STEPS {shape.steps} /* sequence length of the test vectors; the kernel takes any */
#define GRUQ_LAYERS {layers} /* stacked GRU layers; layer k > 0 reads layer k - 1's h */

/* input x: 8-bit codes, x_code = clamp(floor(x * 2^GRUQ_X_FRAC + 1/2), -128, 127) */
#define GRUQ_X_FRAC {first.x.frac}
/* state h (add_h's format{" of the last layer, the one the head reads" if layers > 1 else ""}) */
#define GRUQ_H_BITS {f.h.bits}
#define GRUQ_H_FRAC {f.h.frac}
/* logits: int32 codes with scale 2^-GRUQ_LOGIT_FRAC */
#define GRUQ_LOGIT_FRAC {f.logit_frac}
""")
    for k, cell in enumerate(im.cells):
        mp, _ = _prefixes(k, layers)
        if layers > 1:
            d.append(f"\n/* ---- layer {k}: genes {', '.join(str(b) for b in cell.genome)} ---- */")
        d.extend(_cell_macros(cell, mp))
    d.append(f"\n#define GRUQ_HEAD_WFRAC {f.head_weight.frac} /* head weights: 8 bits */")
    d.append("\n#ifdef GRUQ_MODEL_IMPLEMENTATION")
    d.append(
        "/* Weights: bit-packed two's complement, little-endian, rows contiguous:\n"
        " * weight k of row j is element i = j * cols + k, in bits i*BITS .. i*BITS+BITS-1\n"
        " * (stream bit n = bit n%8 of byte n/8). Biases: int32 at the accumulator's scale. */"
    )
    for k, cell in enumerate(im.cells):
        _, ap = _prefixes(k, layers)
        if layers > 1:
            d.append(f"/* layer {k} */")
        d.extend(_cell_arrays(cell, ap))
    d.append("/* classifier head on the last h: int8 weights (classes x hidden), int32 bias at the logits' scale */")
    d.append("static const int8_t gruq_head_w[GRUQ_CLASSES * GRUQ_HIDDEN] = {")
    d.append(_array(im.head_weight, per_line=32) + "\n};")
    d.append("static const int32_t gruq_head_b[GRUQ_CLASSES] = {")
    d.append(_array(im.head_bias) + "\n};")
    d.append("#endif /* GRUQ_MODEL_IMPLEMENTATION */\n\n#endif /* GRUQ_MODEL_H */\n")
    return "\n".join(d)


KERNEL_HEADER = """\
/* gruq_kernel.h: C API of the gruq integer GRU kernel (C99, integers only).
 *
 * One sequence of input codes is x_codes[t * GRUQ_FEATURES + f], t < steps,
 * 8-bit codes (see GRUQ_X_FRAC in gruq_model.h). Logits are int32 codes at
 * scale 2^-GRUQ_LOGIT_FRAC; the predicted class is their argmax.
 *
 * Memory: the caller owns a gruq_state ((GRUQ_LAYERS + 1) * GRUQ_HIDDEN bytes:
 * each layer's state h and the scratch row of the new h); there is no dynamic allocation and no static
 * buffer (gruq_infer's static state aside). A step uses the stack for the
 * decoded weight rows (3 * (GRUQ_FEATURES + GRUQ_HIDDEN) bytes at most) and,
 * on Arm DSP cores, x and h as halfword pairs. The parameters are const
 * arrays (read-only memory). Every function but gruq_infer is reentrant.
 */
#ifndef GRUQ_KERNEL_H
#define GRUQ_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#include "gruq_model.h"

typedef struct {
    int8_t h[GRUQ_HIDDEN];      /* state: the last layer's h codes in its add_h's format */
    int8_t h_next[GRUQ_HIDDEN]; /* scratch: the new h of a layer while its step runs */
#if GRUQ_LAYERS > 1
    int8_t below[GRUQ_LAYERS - 1][GRUQ_HIDDEN]; /* the state h of layers 0 .. GRUQ_LAYERS - 2 */
#endif
} gruq_state;

/* h = 0: call before each sequence. */
void gruq_reset(gruq_state *s);

/* One time step on x_t[GRUQ_FEATURES]: h = GRU(x_t, h). */
void gruq_step(gruq_state *s, const int8_t *x_t);

/* The classifier head on the current h: logits[GRUQ_CLASSES]. */
void gruq_logits(const gruq_state *s, int32_t *logits);

/* Reset, `steps` steps over x_codes, head: the logits of one sequence. Reentrant. */
void gruq_run(gruq_state *s, const int8_t *x_codes, size_t steps, int32_t *logits);

/* gruq_run over GRUQ_STEPS steps with a static state: not reentrant. */
void gruq_infer(const int8_t *x_codes, int32_t *logits);

/* Index of the largest logit (the first one on ties). */
int gruq_argmax(const int32_t *logits);

#endif /* GRUQ_KERNEL_H */
"""

KERNEL_SOURCE = """\
/* gruq_kernel.c: the gruq integer GRU kernel, C99, integers only.
 *
 * It computes exactly what gruq.engine (numpy int64) computes, operator by
 * operator, so the logits are bit-identical:
 * - a linear operator is a dot product of weight codes (each packed row
 *   decoded once per step) and input codes, exact in int32, plus the int32
 *   bias, saturated to int32;
 * - an add aligns its operands to the finer scale (exact multiplication by a
 *   power of two), adds, rounds once and saturates;
 * - a product is exact, then rounded once and saturated;
 * - adds and products run in int32 where the exporter proved (GRUQ_*_WIDE 0)
 *   that int32 is exact for every input, else in int64;
 * - rounding is round-half-up: (v + 2^(s-1)) shifted right by s, where the
 *   shift is arithmetic, i.e. floor(v / 2^s), also for negative v;
 * - sigmoid and tanh are look-up tables indexed by code - lowest code.
 * gruq's exporter proves that no intermediate value exceeds 2^62 in magnitude
 * for this model, so int64_t never overflows.
 *
 * Every unit j of the new h depends on the old h only, so a step computes the
 * 17 operators unit by unit (six dot products, then the element-wise chain)
 * into the scratch row and copies it to h at the end. The cell (gruq_cell.h)
 * is one code for every layer: a stacked model runs it once per layer and time
 * step, layer k > 0 reading layer k - 1's new h (add_h codes) as its input.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define GRUQ_MODEL_IMPLEMENTATION
#include "gruq_kernel.h"

/* The dot products accumulate in int32, exact while n * 2^14 < 2^31. */
#if GRUQ_FEATURES > 65535 || GRUQ_HIDDEN > 65535
#error "gruq_kernel.c: more than 65535 features or hidden units"
#endif
#if GRUQ_LAYERS < 1 || GRUQ_LAYERS > 4
#error "gruq_kernel.c: 1 to 4 layers"
#endif

/* The Cortex-M4's DSP instructions (SMLAD, SXTB16, USUB8, QADD) through the Arm C
 * Language Extensions; every other compiler and core takes the plain C below,
 * with the same results. Define GRUQ_PORTABLE to force the plain C. */
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP) && !defined(GRUQ_PORTABLE)
#include <arm_acle.h>
#define GRUQ_SIMD32 1
#else
#define GRUQ_SIMD32 0
#endif

/* v * 2^s for 0 <= s <= 62. Written as a multiplication because shifting a
 * negative value left is undefined behaviour in C99. */
static int64_t gruq_shl(int64_t v, int s)
{
    return v * ((int64_t)1 << s);
}

/* floor(v / 2^s) for 1 <= s <= 62: the arithmetic shift right.
 * In C99, right-shifting a negative value is implementation-defined, so for
 * v < 0 we shift the non-negative -(v + 1) = ~v instead:
 * floor(v / 2^s) = -(floor((-v - 1) / 2^s)) - 1. Only non-negative values are
 * ever shifted right, and -(v + 1) cannot overflow. (GCC compiles both
 * branches to one arithmetic shift.) */
static int64_t gruq_asr(int64_t v, int s)
{
    if (v >= 0) {
        return v >> s;
    }
    return -((-(v + 1)) >> s) - 1;
}

/* gruq_asr in int32, for 1 <= s <= 31. */
static int32_t gruq_asr32(int32_t v, int s)
{
    if (v >= 0) {
        return v >> s;
    }
    return -((-(v + 1)) >> s) - 1;
}

/* Round v / 2^s half up (s > 0) or multiply exactly by 2^-s (s <= 0), then
 * saturate to [lo, hi]: gruq.fixedpoint.requantize. In int32 when `wide` is 0
 * (the exporter proved that v and v + 2^(s-1), or v * 2^-s, fit in int32 for
 * every input: the result is the same), else in int64. [lo, hi] is an output
 * format's range (at most 8 bits), so the result fits in int32. */
static int32_t gruq_requant(int64_t v, int s, int32_t lo, int32_t hi, int wide)
{
    if (wide) {
        if (s > 0) {
            v = gruq_asr(v + ((int64_t)1 << (s - 1)), s);
        } else if (s < 0) {
            v = gruq_shl(v, -s);
        }
        return (int32_t)(v < lo ? lo : (v > hi ? hi : v));
    } else {
        int32_t u = (int32_t)v;
        if (s > 0) {
            u = gruq_asr32(u + ((int32_t)1 << (s - 1)), s);
        } else if (s < 0) {
            u = u * ((int32_t)1 << -s);
        }
        return u < lo ? lo : (u > hi ? hi : u);
    }
}

/* a * 2^sa + b * 2^sb, rounded by s, saturated: gruq.fixedpoint.align_add
 * (in int32 when `wide` is 0, as gruq_requant). */
static int32_t gruq_add(int32_t a, int sa, int32_t b, int sb, int s, int32_t lo, int32_t hi, int wide)
{
    if (wide) {
        return gruq_requant(gruq_shl(a, sa) + gruq_shl(b, sb), s, lo, hi, 1);
    }
    return gruq_requant(a * ((int32_t)1 << sa) + b * ((int32_t)1 << sb), s, lo, hi, 0);
}

/* a * b, rounded by s, saturated (in int32 when `wide` is 0). */
static int32_t gruq_mul(int32_t a, int32_t b, int s, int32_t lo, int32_t hi, int wide)
{
    return gruq_requant(wide ? (int64_t)a * b : (int64_t)(a * b), s, lo, hi, wide);
}

#if GRUQ_SIMD32
/* 4 bytes from p (any alignment; the Cortex-M4 loads unaligned words). */
static uint32_t gruq_load4(const void *p)
{
    uint32_t u;
    memcpy(&u, p, sizeof u);
    return u;
}

/* Bytes 1 and 3 of x, sign-extended to two halfwords: one SXTB16 with ROR #8
 * (GCC does not fold the rotation into the intrinsic by itself). */
static int16x2_t gruq_sxtb16_odd(uint32_t x)
{
#if defined(__GNUC__)
    int16x2_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
#else
    return __sxtb16((int8x4_t)((x >> 8) | (x << 24)));
#endif
}

/* The codes v[0..n) as halfword pairs for SMLAD, once per step for every row:
 * for each group of four, (v[4m], v[4m+2]) then (v[4m+1], v[4m+3]). */
#define GRUQ_PAIRS(n) (2u * ((n) / 4u) + 1u) /* words (at least one: no empty array) */
static void gruq_pairs(const int8_t *v, uint32_t n, int16x2_t *pairs)
{
    uint32_t k;
    for (k = 0; k + 4u <= n; k += 4u) {
        uint32_t w = gruq_load4(v + k);
        pairs[k / 2u] = __sxtb16((int8x4_t)w);
        pairs[k / 2u + 1u] = gruq_sxtb16_odd(w);
    }
    pairs[2u * (n / 4u)] = 0; /* the spare word: every word written */
}
typedef int16x2_t gruq_pair;
#else
typedef int32_t gruq_pair; /* no pairs without the DSP extension */
#endif

/* Row j of a (GRUQ_HIDDEN x cols) matrix as bytes (each the 8-bit two's
 * complement of a weight code), into row[cols], from its stored form:
 * at stored_bits == 8 the matrix is already bytes and nothing is copied (the
 * row is returned in place); below 8 bits it is bit-packed and decoded once
 * per row: weight k of row j is element i = j * cols + k, `bits` bits at
 * stream bit i * bits, least significant bit first, two's complement.
 * With the DSP extension, four codes at a time: one unaligned word load (two
 * at 7 bits), the four fields spread into four bytes, and per-byte sign
 * extension with USUB8 (the packed arrays end with 4 zero bytes of padding so
 * that these loads stay inside them). The rest, and every code elsewhere,
 * with a small bit buffer that reads no byte beyond the matrix. */
static inline const uint8_t *gruq_row(const uint8_t *w, uint32_t stored_bits, uint32_t j, uint32_t cols,
                                      uint8_t *row)
{
    uint32_t k = 0, bit, have, buf, mask, sign;
    const uint8_t *p;
    if (stored_bits == 8u) {
        return w + j * cols;
    }
    bit = j * cols * stored_bits;
    mask = (1u << stored_bits) - 1u;
    sign = 1u << (stored_bits - 1u);
#if GRUQ_SIMD32
    for (; k + 4u <= cols; k += 4u) {
        uint32_t shift = bit & 7u, u, spread, signs = sign * 0x01010101u;
        p = w + (bit >> 3);
        u = gruq_load4(p) >> shift;
        if (4u * stored_bits + shift > 32u) { /* 7 bits: the fourth code reaches a fifth byte */
            u |= (uint32_t)p[4] << (32u - shift);
        }
        spread = (u & mask) | ((u >> stored_bits) & mask) << 8 | ((u >> (2u * stored_bits)) & mask) << 16 |
                 ((u >> (3u * stored_bits)) & mask) << 24;
        memcpy(row + k, &(uint32_t){__usub8(spread ^ signs, signs)}, 4);
        bit += 4u * stored_bits;
    }
    if (k == cols) {
        return row;
    }
#endif
    p = w + (bit >> 3);
    have = 8u - (bit & 7u); /* bits left in the buffer */
    buf = (uint32_t)(*p++) >> (bit & 7u);
    for (; k < cols; ++k) {
        if (have < stored_bits) {
            buf |= (uint32_t)(*p++) << have;
            have += 8u;
        }
        /* sign extension to 8 bits, in unsigned arithmetic (no implementation-defined conversion) */
        row[k] = (uint8_t)((((buf & mask) ^ sign) - sign) & 0xFFu);
        buf >>= stored_bits;
        have -= stored_bits;
    }
    return row;
}

/* A byte (8-bit two's complement) as its signed value. */
static int32_t gruq_byte(uint8_t b)
{
    return (int32_t)(b ^ 0x80u) - 0x80;
}

/* The three dot products of rows a, b, c (bytes) with the same n codes v,
 * into acc[0..2]. |code| <= 128, so every partial sum is below n * 2^14 < 2^30
 * and int32 is exact. With the DSP extension (Cortex-M4), four MACs of a row
 * take one word load, two SXTB16 and two SMLAD against `pairs` (v prepared by
 * gruq_pairs); the remaining n % 4 codes, and every code elsewhere, take the
 * plain loop. */
static inline void gruq_dot3(const uint8_t *a, const uint8_t *b, const uint8_t *c, const int8_t *v,
                      const gruq_pair *pairs, uint32_t n, int32_t *acc)
{
    int32_t sa = 0, sb = 0, sc = 0;
    uint32_t k = 0;
#if GRUQ_SIMD32
    const int16x2_t *p = pairs;
    for (; k + 4u <= n; k += 4u) {
        int16x2_t ve = p[0], vo = p[1];
        uint32_t wa = gruq_load4(a), wb = gruq_load4(b), wc = gruq_load4(c);
        sa = __smlad(__sxtb16((int8x4_t)wa), ve, sa);
        sa = __smlad(gruq_sxtb16_odd(wa), vo, sa);
        sb = __smlad(__sxtb16((int8x4_t)wb), ve, sb);
        sb = __smlad(gruq_sxtb16_odd(wb), vo, sb);
        sc = __smlad(__sxtb16((int8x4_t)wc), ve, sc);
        sc = __smlad(gruq_sxtb16_odd(wc), vo, sc);
        p += 2;
        a += 4;
        b += 4;
        c += 4;
        v += 4;
    }
#else
    (void)pairs;
#endif
    for (; k < n; ++k) {
        int32_t x = *v++;
        sa += gruq_byte(*a++) * x;
        sb += gruq_byte(*b++) * x;
        sc += gruq_byte(*c++) * x;
    }
    acc[0] = sa;
    acc[1] = sb;
    acc[2] = sc;
}

/* a + b saturated to int32 (a dot product plus its bias): QADD on the Cortex-M4. */
static int32_t gruq_qadd(int32_t a, int32_t b)
{
#if GRUQ_SIMD32
    return __qadd(a, b);
#else
    int64_t s = (int64_t)a + b;
    return (int32_t)(s < INT32_MIN ? INT32_MIN : (s > INT32_MAX ? INT32_MAX : s));
#endif
}

/* The cell, once per layer (gruq_cell.h): layer k is gruq_cell_lk, with layer k's
 * constants and arrays. One source; each layer's constants fold at compile time. */
#if GRUQ_LAYERS == 1 /* one layer: the unprefixed names */
#define GRUQ_C(name) GRUQ_##name
#define GRUQ_A(name) gruq_##name
#else
#define GRUQ_C(name) GRUQ_L0_##name
#define GRUQ_A(name) gruq_l0_##name
#endif
#define GRUQ_CELL_FN gruq_cell_l0
#define GRUQ_CELL_INPUTS GRUQ_FEATURES
#include "gruq_cell.h"
#undef GRUQ_C
#undef GRUQ_A
#undef GRUQ_CELL_FN
#undef GRUQ_CELL_INPUTS

#if GRUQ_LAYERS > 1
#define GRUQ_C(name) GRUQ_L1_##name
#define GRUQ_A(name) gruq_l1_##name
#define GRUQ_CELL_FN gruq_cell_l1
#define GRUQ_CELL_INPUTS GRUQ_HIDDEN
#include "gruq_cell.h"
#undef GRUQ_C
#undef GRUQ_A
#undef GRUQ_CELL_FN
#undef GRUQ_CELL_INPUTS
#endif

#if GRUQ_LAYERS > 2
#define GRUQ_C(name) GRUQ_L2_##name
#define GRUQ_A(name) gruq_l2_##name
#define GRUQ_CELL_FN gruq_cell_l2
#define GRUQ_CELL_INPUTS GRUQ_HIDDEN
#include "gruq_cell.h"
#undef GRUQ_C
#undef GRUQ_A
#undef GRUQ_CELL_FN
#undef GRUQ_CELL_INPUTS
#endif

#if GRUQ_LAYERS > 3
#define GRUQ_C(name) GRUQ_L3_##name
#define GRUQ_A(name) gruq_l3_##name
#define GRUQ_CELL_FN gruq_cell_l3
#define GRUQ_CELL_INPUTS GRUQ_HIDDEN
#include "gruq_cell.h"
#undef GRUQ_C
#undef GRUQ_A
#undef GRUQ_CELL_FN
#undef GRUQ_CELL_INPUTS
#endif

void gruq_reset(gruq_state *s)
{
    memset(s->h, 0, sizeof s->h);
    memset(s->h_next, 0, sizeof s->h_next);
#if GRUQ_LAYERS > 1
    memset(s->below, 0, sizeof s->below);
#endif
}

/* Layer k's step: its cell on its state h and input x_t, through the scratch row. */
#define GRUQ_LAYER_STEP(cell, h, x_t)      \\
    do {                                   \\
        cell((h), (x_t), s->h_next);       \\
        memcpy((h), s->h_next, GRUQ_HIDDEN); \\
    } while (0)

void gruq_step(gruq_state *s, const int8_t *x_t)
{
    /* layers below the last: each one's new h is the next one's input (add_h codes) */
#if GRUQ_LAYERS > 1
    GRUQ_LAYER_STEP(gruq_cell_l0, s->below[0], x_t);
    x_t = s->below[0];
#endif
#if GRUQ_LAYERS > 2
    GRUQ_LAYER_STEP(gruq_cell_l1, s->below[1], x_t);
    x_t = s->below[1];
#endif
#if GRUQ_LAYERS > 3
    GRUQ_LAYER_STEP(gruq_cell_l2, s->below[2], x_t);
    x_t = s->below[2];
#endif
    /* the last layer, whose h the head reads */
#if GRUQ_LAYERS == 1
    GRUQ_LAYER_STEP(gruq_cell_l0, s->h, x_t);
#elif GRUQ_LAYERS == 2
    GRUQ_LAYER_STEP(gruq_cell_l1, s->h, x_t);
#elif GRUQ_LAYERS == 3
    GRUQ_LAYER_STEP(gruq_cell_l2, s->h, x_t);
#else
    GRUQ_LAYER_STEP(gruq_cell_l3, s->h, x_t);
#endif
}

void gruq_logits(const gruq_state *s, int32_t *logits)
{
    uint32_t c, k;
    for (c = 0; c < GRUQ_CLASSES; ++c) {
        int64_t acc = gruq_head_b[c];
        for (k = 0; k < GRUQ_HIDDEN; ++k) {
            acc += (int64_t)gruq_head_w[c * GRUQ_HIDDEN + k] * (int64_t)s->h[k];
        }
        logits[c] = (int32_t)(acc < INT32_MIN ? INT32_MIN : (acc > INT32_MAX ? INT32_MAX : acc));
    }
}

void gruq_run(gruq_state *s, const int8_t *x_codes, size_t steps, int32_t *logits)
{
    size_t t;
    gruq_reset(s);
    for (t = 0; t < steps; ++t) {
        gruq_step(s, x_codes + t * GRUQ_FEATURES);
    }
    gruq_logits(s, logits);
}

void gruq_infer(const int8_t *x_codes, int32_t *logits)
{
    static gruq_state state;
    gruq_run(&state, x_codes, GRUQ_STEPS, logits);
}

int gruq_argmax(const int32_t *logits)
{
    int best = 0;
    int c;
    for (c = 1; c < GRUQ_CLASSES; ++c) {
        if (logits[c] > logits[best]) {
            best = c;
        }
    }
    return best;
}
"""

CELL_SOURCE = """\
/* gruq_cell.h: the one GRU cell of the kernel, included by gruq_kernel.c once per
 * layer (never on its own). Before each inclusion gruq_kernel.c defines
 *   GRUQ_CELL_FN      the function's name (gruq_cell_l0, gruq_cell_l1, ...),
 *   GRUQ_CELL_INPUTS  the layer's input width (GRUQ_FEATURES for layer 0, GRUQ_HIDDEN above),
 *   GRUQ_C(NAME)      the layer's constant GRUQ_NAME (one layer) or GRUQ_Lk_NAME (stacked),
 *   GRUQ_A(name)      the layer's array gruq_name (one layer) or gruq_lk_name (stacked),
 * so every layer runs this same code with its own compile-time constants, which
 * the compiler folds as it does for a one-layer model.
 */
/* One step of one layer's cell: reads its state h and its input x_t
 * (x_t[GRUQ_CELL_INPUTS]), writes h_next[0..GRUQ_HIDDEN).
 * Per unit j: the six dot products (rows decoded once; the three x-rows share
 * x_t, the three h-rows share h), then the element-wise chain of the 17
 * operators. Shifts, ranges and WIDE flags are compile-time constants, so
 * each helper folds to a few instructions. */
static void GRUQ_CELL_FN(const int8_t *h, const int8_t *x_t, int8_t *h_next)
{
    uint8_t row_x[3][GRUQ_CELL_INPUTS], row_h[3][GRUQ_HIDDEN];
    uint32_t j;
#if GRUQ_SIMD32
    int16x2_t x_pairs[GRUQ_PAIRS(GRUQ_CELL_INPUTS)], h_pairs[GRUQ_PAIRS(GRUQ_HIDDEN)];
    gruq_pairs(x_t, GRUQ_CELL_INPUTS, x_pairs);
    gruq_pairs(h, GRUQ_HIDDEN, h_pairs);
#else
    const gruq_pair *x_pairs = NULL, *h_pairs = NULL;
#endif
    for (j = 0; j < GRUQ_HIDDEN; ++j) {
        int32_t x_acc[3], h_acc[3];
        int32_t lin_xr, lin_hr, lin_xz, lin_hz, lin_xn, lin_hn;
        int32_t add_r, sig_r, add_z, sig_z, mul_rn, add_n, tanh_n, sub_z, mul_zn, mul_zh, add_h;
        gruq_dot3(gruq_row(GRUQ_A(lin_xr_w), GRUQ_C(LIN_XR_STORED_BITS), j, GRUQ_CELL_INPUTS, row_x[0]),
                  gruq_row(GRUQ_A(lin_xz_w), GRUQ_C(LIN_XZ_STORED_BITS), j, GRUQ_CELL_INPUTS, row_x[1]),
                  gruq_row(GRUQ_A(lin_xn_w), GRUQ_C(LIN_XN_STORED_BITS), j, GRUQ_CELL_INPUTS, row_x[2]), x_t, x_pairs,
                  GRUQ_CELL_INPUTS, x_acc);
        gruq_dot3(gruq_row(GRUQ_A(lin_hr_w), GRUQ_C(LIN_HR_STORED_BITS), j, GRUQ_HIDDEN, row_h[0]),
                  gruq_row(GRUQ_A(lin_hz_w), GRUQ_C(LIN_HZ_STORED_BITS), j, GRUQ_HIDDEN, row_h[1]),
                  gruq_row(GRUQ_A(lin_hn_w), GRUQ_C(LIN_HN_STORED_BITS), j, GRUQ_HIDDEN, row_h[2]), h, h_pairs,
                  GRUQ_HIDDEN, h_acc);
        lin_xr = gruq_qadd(x_acc[0], GRUQ_A(lin_xr_b)[j]);
        lin_xz = gruq_qadd(x_acc[1], GRUQ_A(lin_xz_b)[j]);
        lin_xn = gruq_qadd(x_acc[2], GRUQ_A(lin_xn_b)[j]);
        lin_hr = gruq_qadd(h_acc[0], GRUQ_A(lin_hr_b)[j]);
        lin_hz = gruq_qadd(h_acc[1], GRUQ_A(lin_hz_b)[j]);
        lin_hn = gruq_qadd(h_acc[2], GRUQ_A(lin_hn_b)[j]);

        add_r = gruq_add(lin_xr, GRUQ_C(ADD_R_SHL_A), lin_hr, GRUQ_C(ADD_R_SHL_B), GRUQ_C(ADD_R_SHR), GRUQ_C(ADD_R_LO),
                         GRUQ_C(ADD_R_HI), GRUQ_C(ADD_R_WIDE));
        sig_r = GRUQ_A(sig_r_lut)[add_r - GRUQ_C(ADD_R_LO)];
        add_z = gruq_add(lin_xz, GRUQ_C(ADD_Z_SHL_A), lin_hz, GRUQ_C(ADD_Z_SHL_B), GRUQ_C(ADD_Z_SHR), GRUQ_C(ADD_Z_LO),
                         GRUQ_C(ADD_Z_HI), GRUQ_C(ADD_Z_WIDE));
        sig_z = GRUQ_A(sig_z_lut)[add_z - GRUQ_C(ADD_Z_LO)];
        mul_rn = gruq_mul(sig_r, lin_hn, GRUQ_C(MUL_RN_SHR), GRUQ_C(MUL_RN_LO), GRUQ_C(MUL_RN_HI), GRUQ_C(MUL_RN_WIDE));
        add_n = gruq_add(lin_xn, GRUQ_C(ADD_N_SHL_A), mul_rn, GRUQ_C(ADD_N_SHL_B), GRUQ_C(ADD_N_SHR), GRUQ_C(ADD_N_LO),
                         GRUQ_C(ADD_N_HI), GRUQ_C(ADD_N_WIDE));
        tanh_n = GRUQ_A(tanh_n_lut)[add_n - GRUQ_C(ADD_N_LO)];
        sub_z = gruq_requant(GRUQ_C(SUB_Z_ONE) - sig_z, GRUQ_C(SUB_Z_SHR), GRUQ_C(SUB_Z_LO), GRUQ_C(SUB_Z_HI), GRUQ_C(SUB_Z_WIDE));
        mul_zn = gruq_mul(sub_z, tanh_n, GRUQ_C(MUL_ZN_SHR), GRUQ_C(MUL_ZN_LO), GRUQ_C(MUL_ZN_HI), GRUQ_C(MUL_ZN_WIDE));
        mul_zh = gruq_mul(sig_z, h[j], GRUQ_C(MUL_ZH_SHR), GRUQ_C(MUL_ZH_LO), GRUQ_C(MUL_ZH_HI), GRUQ_C(MUL_ZH_WIDE));
        add_h = gruq_add(mul_zn, GRUQ_C(ADD_H_SHL_A), mul_zh, GRUQ_C(ADD_H_SHL_B), GRUQ_C(ADD_H_SHR), GRUQ_C(ADD_H_LO),
                         GRUQ_C(ADD_H_HI), GRUQ_C(ADD_H_WIDE));
        h_next[j] = (int8_t)add_h; /* in [GRUQ_C(ADD_H_LO), GRUQ_C(ADD_H_HI)], within int8 */
    }
}
"""


CHECK_SOURCE = f"""\
/* check.c: runs the kernel on every test vector and compares its logits with
 * the integer engine's (gruq.engine, the reference of truth), bit for bit.
 * The last line printed is "N/N identical"; the exit status is 0 only when
 * every sequence's logits are identical. `./check K` checks the first K
 * sequences only.
 * Build: cc -std=c99 -Wall -Wextra -Werror -O2 *.c -o check && ./check
 *
 * A target that counts instructions (cortex-m4: SysTick under QEMU's -icount)
 * defines GRUQ_TIMER_HEADER, a header giving gruq_timer_init(), gruq_timer(),
 * gruq_ticks(t0, t1) and gruq_timer_calibrate(n) (ticks of a loop of 2n
 * instructions); the check then also prints the ticks the steps and the head
 * took, and the calibration.
 */
#include <stdio.h>
#include <stdlib.h>

#include "gruq_kernel.h"
#include "test_vectors.h"
#ifdef GRUQ_TIMER_HEADER
#include GRUQ_TIMER_HEADER
#define GRUQ_CALIBRATION_LOOPS 100000UL
#endif

#define MAX_SHOWN {MAX_SHOWN}

/* The number of sequences to check: all, or the first K when K is given. */
static unsigned long checked_count(int argc, char **argv)
{{
    unsigned long k;
    char *end = NULL;
    if (argc < 2) {{
        return GRUQ_TEST_COUNT;
    }}
    k = strtoul(argv[1], &end, 10);
    return (end != argv[1] && *end == '\\0' && k < GRUQ_TEST_COUNT) ? k : GRUQ_TEST_COUNT;
}}

int main(int argc, char **argv)
{{
    static int8_t x[GRUQ_STEPS * GRUQ_FEATURES];
    static gruq_state state;
    unsigned long n, same = 0, shown = 0, correct = 0;
    unsigned long count = checked_count(argc, argv);
    int32_t logits[GRUQ_CLASSES];
#ifdef GRUQ_TIMER_HEADER
    unsigned long long step_ticks = 0, head_ticks = 0;
    gruq_timer_init();
    printf("timer: %lu ticks for %lu instructions\\n", (unsigned long)gruq_timer_calibrate(GRUQ_CALIBRATION_LOOPS),
           2 * GRUQ_CALIBRATION_LOOPS);
#endif
    for (n = 0; n < count; ++n) {{
        const int32_t *expected = gruq_test_logits + n * GRUQ_CLASSES;
        int c, bad = -1;
        size_t i;
        for (i = 0; i < GRUQ_STEPS * GRUQ_FEATURES; ++i) {{
            unsigned u = gruq_test_x[n][i];
            x[i] = (int8_t)((int)u - (int)((u >> 7) << 8)); /* two's complement byte -> code */
        }}
#ifdef GRUQ_TIMER_HEADER
        {{
            uint32_t t0 = gruq_timer(), t1, t2;
            gruq_reset(&state);
            for (i = 0; i < GRUQ_STEPS; ++i) {{
                gruq_step(&state, x + i * GRUQ_FEATURES);
            }}
            t1 = gruq_timer();
            gruq_logits(&state, logits);
            t2 = gruq_timer();
            step_ticks += gruq_ticks(t0, t1);
            head_ticks += gruq_ticks(t1, t2);
        }}
#else
        gruq_run(&state, x, GRUQ_STEPS, logits);
#endif
        for (c = 0; c < GRUQ_CLASSES; ++c) {{
            if (logits[c] != expected[c]) {{
                bad = c;
                break;
            }}
        }}
        if (bad < 0) {{
            ++same;
        }} else if (shown < MAX_SHOWN) {{
            printf("sequence %lu: logit %d is %ld, expected %ld\\n", n, bad, (long)logits[bad], (long)expected[bad]);
            ++shown;
        }}
#if GRUQ_TEST_HAS_LABELS
        if (gruq_argmax(logits) == gruq_test_labels[n]) {{
            ++correct;
        }}
#endif
    }}
    if (count - same > shown) {{
        printf("(%lu more mismatching sequences not shown)\\n", count - same - shown);
    }}
#ifdef GRUQ_TIMER_HEADER
    printf("ticks: steps %llu over %lu steps, head %llu over %lu sequences\\n", step_ticks,
           count * (unsigned long)GRUQ_STEPS, head_ticks, count);
#endif
#if GRUQ_TEST_HAS_LABELS
    printf("accuracy %lu/%lu\\n", correct, count);
#else
    (void)correct;
#endif
    printf("%lu/%lu identical\\n", same, count);
    return same == count ? 0 : 1;
}}
"""

LOGITS_MARK = "/* logits: one sequence per line */"
STRING_ROW_MAX = 4094  # bytes of one string row (+ its NUL: the C99 minimum limit of 4095)


def vectors_header(count: int, has_labels: bool, split: str = "") -> str:
    return f"""\
/* test_vectors.h: {count} test sequences{f" (the {split} split)" if split else ""} and the integer engine's logits. */
#ifndef GRUQ_TEST_VECTORS_H
#define GRUQ_TEST_VECTORS_H

#include <stdint.h>

#include "gruq_model.h"

#define GRUQ_TEST_COUNT {count}UL
#define GRUQ_TEST_HAS_LABELS {1 if has_labels else 0}

/* input codes of sequence n, step t, feature f: byte [n][t * GRUQ_FEATURES + f],
 * the code's 8-bit two's complement (code & 0xff); the row has one more byte (0). */
#define GRUQ_TEST_ROW (GRUQ_STEPS * GRUQ_FEATURES + 1)
extern const unsigned char gruq_test_x[GRUQ_TEST_COUNT][GRUQ_TEST_ROW];
/* expected logits: sequence n, class c at [n * GRUQ_CLASSES + c] */
extern const int32_t gruq_test_logits[GRUQ_TEST_COUNT * GRUQ_CLASSES];
#if GRUQ_TEST_HAS_LABELS
/* true classes, for the accuracy line */
extern const int gruq_test_labels[GRUQ_TEST_COUNT];
#endif

#endif /* GRUQ_TEST_VECTORS_H */
"""


def _byte_row(codes: np.ndarray) -> str:
    """One sequence's codes as C bytes (two's complement, code & 0xff): a string
    literal, which compilers parse far faster than numbers, when it is short
    enough for every C99 compiler (at most 4095 characters); else a brace list."""
    raw = (np.asarray(codes, dtype=np.int64) & 0xFF).tolist()
    if len(raw) <= STRING_ROW_MAX:
        return '"' + "".join(f"\\x{v:02x}" for v in raw) + '"'
    return "{" + ",".join(str(v) for v in raw) + "}"


def vectors_source(x_codes: np.ndarray, logits: np.ndarray, labels: np.ndarray | None) -> str:
    """test_vectors.c: every input code and the engine's logits (one line per sequence)."""
    x = np.asarray(x_codes, dtype=np.int64)
    n, t, feat = x.shape
    rows = x.reshape(n, t * feat)
    out = ['#include "test_vectors.h"', "", "const unsigned char gruq_test_x[GRUQ_TEST_COUNT][GRUQ_TEST_ROW] = {"]
    out.append(",\n".join(_byte_row(row) for row in rows))
    out.append("};")
    out.append("")
    out.append("const int32_t gruq_test_logits[GRUQ_TEST_COUNT * GRUQ_CLASSES] = {")
    out.append(LOGITS_MARK)
    for row in np.asarray(logits, dtype=np.int64):
        out.append(",".join(_int(v) for v in row) + ",")
    out.append("};")
    if labels is not None:
        out.append("")
        out.append("const int gruq_test_labels[GRUQ_TEST_COUNT] = {")
        out.append(_array(np.asarray(labels, dtype=np.int64), per_line=40))
        out.append("};")
    return "\n".join(out) + "\n"


def sources(
    im: IntegerModel,
    shape: ModelShape,
    x_codes: np.ndarray,
    logits: np.ndarray,
    labels: np.ndarray | None = None,
    task: str = "",
    split: str = "",
) -> dict[str, str]:
    """File name -> text of every C file of an export."""
    assert shape.features == int(im.cells[0].weights[OPS[INPUT_LINEAR[0]]].shape[1])
    return {
        MODEL_H: model_header(im, shape, task),
        KERNEL_H: KERNEL_HEADER,
        KERNEL_C: KERNEL_SOURCE,
        CELL_H: CELL_SOURCE,
        VECTORS_H: vectors_header(len(x_codes), labels is not None, split),
        VECTORS_C: vectors_source(x_codes, logits, labels),
        CHECK_C: CHECK_SOURCE,
    }
