"""Genomes: one bit width (2..8) per operator, with the costs they imply.

Model size and bit operations are pure functions of a genome and the model's
shape, so the search, the reports and the export agree on them by construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral

from gruq.errors import GruqError
from gruq.ops import HIDDEN_LINEAR, INPUT_LINEAR, LINEAR, MAX_LAYERS, N_OPS, layer_names

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
    layers: int = 1  # stacked GRU layers of `hidden` units; layer k > 0 reads layer k - 1's h

    def inputs(self, layer: int) -> int:
        """Input width of a layer: the features for layer 0, the hidden size above it."""
        return self.features if layer == 0 else self.hidden


def validate(bits: Iterable[int], layers: int = 1) -> Genome:
    """Return `bits` as a genome of a `layers`-layer model (17 genes per layer,
    layer by layer), or explain in one line why it is not one."""
    genome = tuple(int(b) if isinstance(b, Integral) and not isinstance(b, bool) else b for b in bits)
    if len(genome) != N_OPS * layers:
        per = "one per operator" if layers == 1 else f"17 per layer for {layers} layers"
        raise GruqError(f"a genome has {N_OPS * layers} bit widths, {per}; got {len(genome)}")
    for name, b in zip(layer_names(layers), genome):
        if isinstance(b, bool) or not isinstance(b, int) or not MIN_BITS <= b <= MAX_BITS:
            raise GruqError(f"bit width of {name} must be an integer from {MIN_BITS} to {MAX_BITS}; got {b!r}")
    return genome


def layers_of(genome: Sequence[int]) -> int:
    """How many layers a genome is for (its length / 17), checked."""
    layers, rest = divmod(len(genome), N_OPS)
    if rest or not 1 <= layers <= MAX_LAYERS:
        raise GruqError(f"a genome has 17 bit widths per layer (1 to {MAX_LAYERS} layers); got {len(genome)}")
    return layers


def expand(bits: Sequence[int], layers: int) -> Genome:
    """A genome for a `layers`-layer model: 17 widths are repeated for every layer;
    17 x layers are taken as they are (what `--bits` may give)."""
    if len(bits) == N_OPS and layers > 1:
        bits = tuple(bits) * layers
    return validate(bits, layers)


def cells(genome: Sequence[int]) -> list[Genome]:
    """The 17 genes of each layer, in layer order."""
    return [tuple(genome[k : k + N_OPS]) for k in range(0, len(genome), N_OPS)]


def homogeneous(b: int, layers: int = 1) -> Genome:
    """The genome giving every operator `b` bits: the baselines of every front."""
    return validate([b] * (N_OPS * layers), layers)


def widths(text: str) -> list[int]:
    """Comma-separated bit widths; one width stands for all 17 operators. ValueError if
    a part is no integer (each caller words the refusal for where the text came from)."""
    values = [int(p.strip()) for p in text.split(",")]
    return values * N_OPS if len(values) == 1 else values


def parse_bits(text: str) -> Genome:
    """Parse `--bits`: one width for all operators, 17 comma-separated widths (the
    same for every layer), or 17 x L (layer by layer). One width gives 17; the
    model's layer count is applied later (`expand`)."""
    try:
        values = widths(text)
    except ValueError:
        raise GruqError(
            f"--bits takes one integer, or {N_OPS} (or {N_OPS} per layer) comma-separated integers; got {text!r}"
        ) from None
    return validate(values, layers_of(values))


def weight_count(op: int, shape: ModelShape, layer: int = 0) -> int:
    """Number of weights of linear operator `op` of a layer (0 for the others)."""
    if op in INPUT_LINEAR:
        return shape.hidden * shape.inputs(layer)
    if op in HIDDEN_LINEAR:
        return shape.hidden * shape.hidden
    return 0


def fixed_bytes(shape: ModelShape) -> float:
    """Bytes every genome pays: GRU biases (int32, every layer), head weights (8 bit) and bias (int32)."""
    gru_bias = 6 * shape.hidden * ACC_BITS / 8 * shape.layers
    head = shape.hidden * shape.classes * HEAD_BITS / 8 + shape.classes * ACC_BITS / 8
    return gru_bias + head


def op_bytes(bits: Sequence[int], shape: ModelShape) -> list[float]:
    """Weight bytes per gene, the part of the size a genome controls."""
    return [weight_count(i % N_OPS, shape, i // N_OPS) * b / 8 for i, b in enumerate(bits)]


def size_bytes(bits: Sequence[int], shape: ModelShape) -> float:
    """Model size in bytes as DESIGN.md defines it (weights packed at their widths)."""
    return sum(op_bytes(bits, shape)) + fixed_bytes(shape)


def size_cap(shape: ModelShape) -> float:
    """Largest possible size reduction against all-8-bit (all-2-bit's), as a fraction."""
    low, high = homogeneous(MIN_BITS, shape.layers), homogeneous(MAX_BITS, shape.layers)
    return 1 - size_bytes(low, shape) / size_bytes(high, shape)


def bops(bits: Sequence[int], shape: ModelShape) -> int:
    """Bit operations per sequence: sum of multiplies x operand bits x operand bits.

    Accumulator operands (the linear results that mul_rn consumes) count as
    32 bits; adds, look-up tables and shifts count as zero. The classifier
    head, run once per sequence on the last h, is included. Layers add up;
    layer k > 0 reads layer k - 1's h, at add_h's width.
    """
    H, T = shape.hidden, shape.steps
    per_step, x_bits = 0, INPUT_BITS
    for layer, b in enumerate(cells(bits)):
        F, h_bits = shape.inputs(layer), b[16]
        per_step += sum(H * F * b[i] * x_bits for i in INPUT_LINEAR)
        per_step += sum(H * H * b[i] * h_bits for i in HIDDEN_LINEAR)
        per_step += H * b[3] * ACC_BITS  # mul_rn: r x lin_hn accumulator
        per_step += H * b[13] * b[12]  # mul_zn: (1 - z) x n
        per_step += H * b[7] * h_bits  # mul_zh: z x h
        x_bits = h_bits
    head = H * shape.classes * HEAD_BITS * x_bits
    return int(T * per_step + head)


assert set(LINEAR) == set(INPUT_LINEAR) | set(HIDDEN_LINEAR)
