"""Argument types shared by the commands: each fails with one readable line."""

from __future__ import annotations

import argparse

from gruq.errors import GruqError
from gruq.genome import Genome, parse_bits


def bits(text: str) -> Genome:
    try:
        return parse_bits(text)
    except GruqError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def natural(text: str) -> int:
    """A non-negative integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def positive(text: str) -> int:
    value = natural(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number >= 1, got 0")
    return value


def add_task(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="smnist, vowels, har, ecg, or a path to a .npz")
    parser.add_argument("--checkpoint", help="float checkpoint (default: assets/<task>.pt)")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
