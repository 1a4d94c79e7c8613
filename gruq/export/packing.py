"""Bit-packing of integer codes at their bit widths.

The layout (documented in docs/export-format.md) is little-endian bit-packed
two's complement: element i of a flat array of b-bit codes occupies bits
i*b .. i*b + b - 1 of the stream, least significant bit first, and stream bit n
is bit (n mod 8) of byte n div 8. A matrix is packed row-major (rows
contiguous); the last byte is padded with zero bits. So an element never
spans more than two bytes for b <= 8.
"""

from __future__ import annotations

import numpy as np

from gruq.errors import GruqError


def packed_size(count: int, bits: int) -> int:
    """Bytes that `count` codes of `bits` bits take packed (padded to a whole byte)."""
    return (count * bits + 7) // 8


def pack(codes: np.ndarray, bits: int) -> bytes:
    """Pack signed codes (any shape, flattened row-major) at `bits` bits each."""
    if not 1 <= bits <= 32:
        raise GruqError(f"cannot pack at {bits} bits")
    flat = np.asarray(codes, dtype=np.int64).ravel()
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if flat.size and (flat.min() < lo or flat.max() > hi):
        raise GruqError(f"codes out of the {bits}-bit signed range [{lo}, {hi}]")
    unsigned = (flat & ((1 << bits) - 1)).astype(np.uint64)  # two's complement, `bits` wide
    # one row of `bits` bits per element, least significant bit first
    bitmat = ((unsigned[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bitmat.ravel(), bitorder="little").tobytes()


def unpack(data: bytes, bits: int, count: int) -> np.ndarray:
    """The `count` signed codes of `bits` bits packed in `data` (int64, flat)."""
    if not 1 <= bits <= 32:
        raise GruqError(f"cannot unpack at {bits} bits")
    if len(data) < packed_size(count, bits):
        raise GruqError(f"{len(data)} bytes cannot hold {count} codes of {bits} bits")
    stream = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    bitmat = stream[: count * bits].reshape(count, bits).astype(np.int64)
    unsigned = (bitmat << np.arange(bits, dtype=np.int64)).sum(axis=1)
    return unsigned - ((unsigned >> (bits - 1)) << bits)  # sign extension
