"""The command line: one sub-module per group of commands.

Every command module exposes `register(subparsers)`, which adds its parsers and
sets `func` (args -> int exit status). A `GruqError`, a bad argument or a
failed argument check exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from gruq.errors import GruqError


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error instead of usage plus error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"gruq: error: {message}\n")
        raise SystemExit(2)


def emit(obj: dict[str, Any]) -> None:
    """Print one JSON object on stdout: the --json contract. Byte counts (keys ending in
    _bytes) are integers whenever they are whole, as memory.json has them: the library
    computes sizes as floats (a matrix need not fill whole bytes), and 2028.0 reads as
    if a fraction were possible."""
    sys.stdout.write(json.dumps(_whole_bytes(obj)) + "\n")


def _whole_bytes(obj: Any, key: str = "") -> Any:
    if isinstance(obj, dict):
        return {k: _whole_bytes(v, str(k)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_whole_bytes(v, key) for v in obj]
    if key.endswith("_bytes") and isinstance(obj, float) and obj.is_integer():
        return int(obj)
    return obj


def build_parser() -> Parser:
    parser = Parser(prog=_prog(), description="Mixed-precision quantization search for GRUs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in commands():
        module.register(sub)
    return parser


def _prog() -> str:
    """`gruq` when run as the console script, else `python -m gruq`."""
    return "gruq" if os.path.basename(sys.argv[0] or "") == "gruq" else "python -m gruq"


def commands() -> list[Any]:
    """The command modules, imported lazily so `--help` stays fast."""
    import importlib

    names = [
        "gruq.cli.core",
        "gruq.cli.import_model",
        "gruq.cli.search",
        "gruq.cli.export",
        "gruq.cli.reproduce",
        "gruq.cli.bench",
    ]
    found = []
    for name in names:
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return found


SIGNALLED = 128  # an exit status above it: stopped by signal (status - 128), the shell's convention


def run() -> None:
    """The program (`gruq`, `python -m gruq`): `main()`, then exit with its status.

    A command stopped by a signal (a cancelled search) has already stored its
    state and stopped its workers; it exits at once, skipping the
    interpreter's teardown of its modules (1 to 6 s measured at load 7-9,
    after a Dask run), which a Cancel would wait for."""
    status = main()
    if status > SIGNALLED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    raise SystemExit(status)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GruqError as exc:
        sys.stderr.write(f"gruq: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("gruq: interrupted\n")
        return 130
