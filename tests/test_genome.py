"""gruq.genome: what a genome is, and the size and BOPs it implies (DESIGN.md)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gruq.errors import GruqError
from gruq.genome import (
    MAX_BITS,
    MIN_BITS,
    ModelShape,
    bops,
    fixed_bytes,
    homogeneous,
    op_bytes,
    parse_bits,
    size_bytes,
    size_cap,
    validate,
    weight_count,
)
from gruq.ops import HIDDEN_LINEAR, INPUT_LINEAR, LINEAR, N_OPS, OPS

SMNIST = ModelShape(features=28, hidden=64, classes=10, steps=28)
genomes = st.lists(st.integers(MIN_BITS, MAX_BITS), min_size=N_OPS, max_size=N_OPS).map(tuple)


# -- operators ----------------------------------------------------------------


def test_the_seventeen_operators_in_design_order():
    assert OPS == (
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
    assert N_OPS == 17
    assert [OPS[i] for i in LINEAR] == ["lin_xr", "lin_hr", "lin_xz", "lin_hz", "lin_xn", "lin_hn"]
    assert [OPS[i] for i in INPUT_LINEAR] == ["lin_xr", "lin_xz", "lin_xn"]
    assert [OPS[i] for i in HIDDEN_LINEAR] == ["lin_hr", "lin_hz", "lin_hn"]


# -- validate -------------------------------------------------------------------


def test_validate_returns_a_tuple_of_the_given_widths():
    bits = [2, 3, 4, 5, 6, 7, 8, 2, 3, 4, 5, 6, 7, 8, 2, 3, 4]
    assert validate(bits) == tuple(bits)
    assert validate(iter(bits)) == tuple(bits)


@pytest.mark.parametrize("length", [0, 1, 16, 18, 34])
def test_validate_rejects_the_wrong_number_of_genes(length):
    with pytest.raises(GruqError, match="17"):
        validate([8] * length)


@pytest.mark.parametrize("bad", [1, 9, 0, -8, 32])
@pytest.mark.parametrize("position", [0, 3, 16])
def test_validate_rejects_widths_outside_2_to_8(bad, position):
    bits = [8] * N_OPS
    bits[position] = bad
    with pytest.raises(GruqError, match=OPS[position]):
        validate(bits)


@pytest.mark.parametrize("bad", [4.0, 4.5, "4", None, True, False])
def test_validate_rejects_non_integers_and_booleans(bad):
    bits = [8] * N_OPS
    bits[5] = bad
    with pytest.raises(GruqError):
        validate(bits)


def test_validate_errors_are_one_line():
    for bits in ([8] * 3, [8] * 16 + [9], [8] * 16 + ["x"]):
        with pytest.raises(GruqError) as info:
            validate(bits)
        assert "\n" not in str(info.value)


# -- parse_bits ---------------------------------------------------------------


@pytest.mark.parametrize("b", range(2, 9))
def test_one_width_sets_every_operator(b):
    assert parse_bits(str(b)) == (b,) * N_OPS


def test_seventeen_widths_set_each_operator_in_order():
    bits = (2, 3, 4, 5, 6, 7, 8, 2, 3, 4, 5, 6, 7, 8, 2, 3, 4)
    assert parse_bits(",".join(map(str, bits))) == bits
    assert parse_bits(" , ".join(map(str, bits))) == bits


@pytest.mark.parametrize(
    "text",
    [
        "",
        "x",
        "4.5",
        "8,,8",
        "four",
        "4;4",
        "1",
        "9",
        "0",
        "-4",
        ",".join(["8"] * 16),
        ",".join(["8"] * 18),
        ",".join(["8"] * 16 + ["9"]),
        ",".join(["8"] * 16 + ["a"]),
    ],
)
def test_parse_bits_rejects_bad_text_in_one_line(text):
    with pytest.raises(GruqError) as info:
        parse_bits(text)
    assert "\n" not in str(info.value)


# -- homogeneous ----------------------------------------------------------------


@pytest.mark.parametrize("b", range(2, 9))
def test_homogeneous_gives_every_operator_the_same_width(b):
    assert homogeneous(b) == (b,) * 17


@pytest.mark.parametrize("b", [1, 9])
def test_homogeneous_outside_the_range_is_an_error(b):
    with pytest.raises(GruqError):
        homogeneous(b)


# -- size -----------------------------------------------------------------------


def test_smnist_sizes_by_hand():
    # H=64, F=28, C=10. Weights: 3 x 64x28 (input) + 3 x 64x64 (hidden) = 17,664.
    # Biases 6 x 64 x 4 B = 1,536; head 64x10 x 1 B + 10 x 4 B = 680.
    assert size_bytes(homogeneous(8), SMNIST) == 17664 + 1536 + 680 == 19880
    assert size_bytes(homogeneous(2), SMNIST) == 17664 / 4 + 1536 + 680 == 6632
    assert size_bytes(homogeneous(4), SMNIST) == 17664 / 2 + 1536 + 680
    assert fixed_bytes(SMNIST) == 1536 + 680


def test_mixed_genome_size_by_hand():
    shape = ModelShape(features=2, hidden=3, classes=4, steps=5)
    g = (2, 3, 4, 5, 6, 7, 8, 2, 3, 4, 5, 6, 7, 8, 2, 3, 4)
    # input weights 3x2 at 2, 6, 3 bits; hidden 3x3 at 3, 7, 4 bits
    weights = (6 * (2 + 6 + 3) + 9 * (3 + 7 + 4)) / 8  # 24.0
    biases = 6 * 3 * 4  # 72
    head = 3 * 4 * 1 + 4 * 4  # 28
    assert size_bytes(g, shape) == weights + biases + head == 124.0
    assert op_bytes(g, shape) == [
        6 * 2 / 8,
        9 * 3 / 8,
        0,
        0,
        6 * 6 / 8,
        9 * 7 / 8,
        0,
        0,
        6 * 3 / 8,
        9 * 4 / 8,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]


def test_weight_counts():
    for op in INPUT_LINEAR:
        assert weight_count(op, SMNIST) == 64 * 28
    for op in HIDDEN_LINEAR:
        assert weight_count(op, SMNIST) == 64 * 64
    for op in set(range(17)) - set(LINEAR):
        assert weight_count(op, SMNIST) == 0


@given(g=genomes, i=st.sampled_from(LINEAR))
def test_size_grows_with_each_linear_gene(g, i):
    if g[i] == MAX_BITS:
        return
    up = list(g)
    up[i] += 1
    assert size_bytes(up, SMNIST) - size_bytes(g, SMNIST) == weight_count(i, SMNIST) / 8 > 0


@given(g=genomes, i=st.sampled_from(sorted(set(range(17)) - set(LINEAR))), b=st.integers(2, 8))
def test_size_ignores_non_linear_genes(g, i, b):
    other = list(g)
    other[i] = b
    assert size_bytes(other, SMNIST) == size_bytes(g, SMNIST)


@given(g=genomes)
def test_every_size_lies_between_all_2_and_all_8(g):
    assert size_bytes(homogeneous(2), SMNIST) <= size_bytes(g, SMNIST) <= size_bytes(homogeneous(8), SMNIST)


def test_size_cap_is_the_all_2_reduction():
    assert size_cap(SMNIST) == pytest.approx(1 - 6632 / 19880)
    assert 0.6 < size_cap(SMNIST) < 0.67


# -- BOPs -------------------------------------------------------------------------


def test_smnist_all_8_bops_by_hand():
    H, F, C, T = 64, 28, 10, 28
    per_step = (
        3 * H * F * 8 * 8  # x (8 bit) times input weights
        + 3 * H * H * 8 * 8  # h times hidden weights
        + H * 8 * 32  # mul_rn: r times the lin_hn accumulator (32 bit)
        + H * 8 * 8  # mul_zn
        + H * 8 * 8
    )  # mul_zh
    head = H * C * 8 * 8
    assert bops(homogeneous(8), SMNIST) == T * per_step + head == 32382976


def test_mixed_genome_bops_by_hand():
    shape = ModelShape(features=2, hidden=3, classes=4, steps=5)
    g = (2, 3, 4, 5, 6, 7, 8, 2, 3, 4, 5, 6, 7, 8, 2, 3, 4)
    h = 4  # add_h
    per_step = (
        3 * 2 * 8 * (2 + 6 + 3)  # lin_xr, lin_xz, lin_xn against the 8-bit input
        + 3 * 3 * h * (3 + 7 + 4)  # lin_hr, lin_hz, lin_hn against h
        + 3 * 5 * 32  # mul_rn: sig_r (5) x accumulator (32)
        + 3 * 8 * 7  # mul_zn: sub_z (8) x tanh_n (7)
        + 3 * 2 * h
    )  # mul_zh: sig_z (2) x h
    head = 3 * 4 * 8 * h
    assert per_step == 1704
    assert bops(g, shape) == 5 * per_step + head == 8904
    assert isinstance(bops(g, shape), int)


@given(g=genomes)
def test_bops_ignore_the_adds_and_their_own_widths(g):
    # add_r, add_z, mul_rn, add_n, mul_zn and mul_zh outputs are not operands of a multiply
    for i in (2, 6, 10, 11, 14, 15):
        other = list(g)
        other[i] = 2 if g[i] != 2 else 8
        assert bops(other, SMNIST) == bops(g, SMNIST)


@given(g=genomes, i=st.integers(0, 16))
def test_bops_never_decrease_when_a_gene_grows(g, i):
    if g[i] == MAX_BITS:
        return
    up = list(g)
    up[i] += 1
    assert bops(up, SMNIST) >= bops(g, SMNIST)
