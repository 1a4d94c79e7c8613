"""Argument types shared by the commands: each fails with one readable line."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from gruq.errors import GruqError
from gruq.genome import Genome, parse_bits

T = TypeVar("T")


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


def layers(text: str) -> int:
    """A stacked GRU's layer count, 1 to MAX_LAYERS."""
    from gruq.ops import MAX_LAYERS

    value = positive(text)
    if value > MAX_LAYERS:
        raise argparse.ArgumentTypeError(f"a model has 1 to {MAX_LAYERS} GRU layers, got {value}")
    return value


def add_task(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--task", required=required, help="smnist, vowels, har, ecg, or a path to a .npz")
    parser.add_argument(
        "--checkpoint", type=path("input_file"), help="float checkpoint (default: the task's, in assets/)"
    )


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def seed(text: str) -> int:
    """A seed: a whole number from 0 to 2^32-1, the same range for every command (gruq.limits)."""
    from gruq import limits

    return _typed(lambda: limits.check_seed(_whole(text), "the seed"))


def bounded(name: str, low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high` (the bounds of gruq.limits)."""
    from gruq import limits

    def parse(text: str) -> int:
        return _typed(lambda: limits.check_int(_whole(text), "the value", low, high))  # argparse names the flag

    parse.__name__ = name
    return parse


def path(check: str) -> Callable[[str], Path]:
    """An argparse type that checks a path with gruq.paths.<check> (input_file,
    file_or_absent, output_file, output_dir): refused before any work, creating nothing."""
    from gruq import paths

    func = getattr(paths, check)

    def parse(text: str) -> Path:
        return _typed(lambda: func(text))

    parse.__name__ = "path"
    return parse


def _whole(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise GruqError(f"expected a whole number, got {text!r}") from None


def _typed(compute: Callable[[], T]) -> T:
    """Run a gruq check inside argparse: its GruqError becomes argparse's one-line error."""
    try:
        return compute()
    except GruqError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
