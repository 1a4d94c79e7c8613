"""Genomes: one bit width (2..8) per operator, with the costs they imply.

Model size and bit operations are pure functions of a genome and the model's
shape, so the search, the reports and the export agree on them by construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral

from gruq.errors import GruqError
from gruq.ops import HIDDEN_LINEAR, INPUT_LINEAR, LINEAR, N_OPS, OPS

MIN_BITS, MAX_BITS = 2, 8
INPUT_BITS = 8  # x is quantized to 8 bits, outside the genome
HEAD_BITS = 8  # classifier weights, outside the genome
ACC_BITS = 32  # accumulators and biases

Genome = tuple[int, ...]


@dataclass(frozen=True)
class ModelShape:
    """What a model's costs depend on besides its genome."""

    features: int
    hidden: int
    classes: int
    steps: int


def validate(bits: Iterable[int]) -> Genome:
    """Return `bits` as a genome, or explain in one line why it is not one."""
    genome = tuple(int(b) if isinstance(b, Integral) and not isinstance(b, bool) else b for b in bits)
    if len(genome) != N_OPS:
        raise GruqError(f"a genome has {N_OPS} bit widths, one per operator; got {len(genome)}")
    for name, b in zip(OPS, genome):
        if isinstance(b, bool) or not isinstance(b, int) or not MIN_BITS <= b <= MAX_BITS:
            raise GruqError(f"bit width of {name} must be an integer from {MIN_BITS} to {MAX_BITS}; got {b!r}")
    return genome


def homogeneous(b: int) -> Genome:
    """The genome giving every operator `b` bits: the baselines of every front."""
    return validate([b] * N_OPS)


def parse_bits(text: str) -> Genome:
    """Parse `--bits`: one width for all operators, or 17 comma-separated widths."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise GruqError(f"--bits takes one integer or {N_OPS} comma-separated integers; got {text!r}") from None
    if len(values) == 1:
        values = values * N_OPS
    return validate(values)


def weight_count(op: int, shape: ModelShape) -> int:
    """Number of weights of linear operator `op` (0 for the others)."""
    if op in INPUT_LINEAR:
        return shape.hidden * shape.features
    if op in HIDDEN_LINEAR:
        return shape.hidden * shape.hidden
    return 0


def fixed_bytes(shape: ModelShape) -> float:
    """Bytes every genome pays: GRU biases (int32), head weights (8 bit) and bias (int32)."""
    gru_bias = 6 * shape.hidden * ACC_BITS / 8
    head = shape.hidden * shape.classes * HEAD_BITS / 8 + shape.classes * ACC_BITS / 8
    return gru_bias + head


def op_bytes(bits: Sequence[int], shape: ModelShape) -> list[float]:
    """Weight bytes per operator, the part of the size a genome controls."""
    return [weight_count(i, shape) * b / 8 for i, b in enumerate(bits)]


def size_bytes(bits: Sequence[int], shape: ModelShape) -> float:
    """Model size in bytes as DESIGN.md defines it (weights packed at their widths)."""
    return sum(op_bytes(bits, shape)) + fixed_bytes(shape)


def size_cap(shape: ModelShape) -> float:
    """Largest possible size reduction against all-8-bit (all-2-bit's), as a fraction."""
    return 1 - size_bytes(homogeneous(MIN_BITS), shape) / size_bytes(homogeneous(MAX_BITS), shape)


def bops(bits: Sequence[int], shape: ModelShape) -> int:
    """Bit operations per sequence: sum of multiplies x operand bits x operand bits.

    Accumulator operands (the linear results that mul_rn consumes) count as
    32 bits; adds, look-up tables and shifts count as zero. The classifier
    head, run once per sequence on the last h, is included.
    """
    H, F, T = shape.hidden, shape.features, shape.steps
    b = bits
    h_bits = b[16]
    per_step = sum(H * F * b[i] * INPUT_BITS for i in INPUT_LINEAR)
    per_step += sum(H * H * b[i] * h_bits for i in HIDDEN_LINEAR)
    per_step += H * b[3] * ACC_BITS  # mul_rn: r x lin_hn accumulator
    per_step += H * b[13] * b[12]  # mul_zn: (1 - z) x n
    per_step += H * b[7] * h_bits  # mul_zh: z x h
    head = H * shape.classes * HEAD_BITS * h_bits
    return int(T * per_step + head)


assert set(LINEAR) == set(INPUT_LINEAR) | set(HIDDEN_LINEAR)
