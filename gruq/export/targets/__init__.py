"""Export targets: what a build needs around the one C99 kernel.

    host        the default: `cc -std=c99 ... *.c -o check && ./check` (nothing extra)
    cortex-m4   startup, linker script and Makefile for qemu-system-arm's mps2-an386
                board; measured flash, RAM, stack and instructions per step
                (gruq.export.targets.cortex_m4)

A target module offers `write(out_dir) -> list of file names` (added beside the
host files), `measure(out_dir, shape) -> dict` (its costs, into memory.json under
the target's key) and `run_check(out_dir) -> dict` (the check on the target).
"""

from __future__ import annotations

from types import ModuleType

from gruq.errors import GruqError

HOST = "host"
NAMES = (HOST, "cortex-m4")


def module(name: str) -> ModuleType | None:
    """The module of target `name` (None for the host, which needs nothing extra)."""
    if name == HOST:
        return None
    if name == "cortex-m4":
        from gruq.export.targets import cortex_m4

        return cortex_m4
    raise GruqError(f"unknown export target {name!r}; choose one of {', '.join(NAMES)}")
