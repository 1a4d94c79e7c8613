"""The C kernel's costs on a Cortex-M4 (QEMU) for the four tasks at all-2, all-8
and a mixed genome: the README's table.

Each model is exported with `gruq.export.export(..., target="cortex-m4")` into
a temporary folder; the figures are those of memory.json's "cortex_m4" record:
flash and RAM of gruq_kernel.o (arm-none-eabi-size), stack (GCC's
-fstack-usage and call graph), instructions per step (QEMU -icount shift=0,
the first 10 test sequences), multiply-accumulates per step. With bit-packed
weights, and, for sub-byte genomes, with one byte per weight (unpacked).
Instruction counts do not depend on the machine's load (QEMU's virtual clock
counts instructions), so this benchmark needs no repeats.

Run as a script: `python bench/cortex_m4.py [--task vowels ...]` prints one JSON
object, then (with --table) the markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

MIXED = (3, 8, 2, 5, 6, 4, 7, 2, 8, 5, 3, 6, 4, 2, 7, 5, 6)
GENOMES = {"all-2": (2,) * 17, "all-8": (8,) * 17, "mixed": MIXED}
TASKS = ("smnist", "vowels", "har", "ecg")


def measure(task: str, genome: tuple[int, ...]) -> dict:
    from gruq.export import export

    with tempfile.TemporaryDirectory(prefix="gruq-bench-m4-") as tmp:
        record = export(task, genome, Path(tmp) / "out", target="cortex-m4")
    m4 = record["cortex_m4"]
    keep = ("flash_bytes", "ram_bytes", "stack_bytes", "instructions_per_step", "macs_per_step", "instructions_per_mac")
    out = {k: m4[k] for k in keep}
    out["size_bytes"] = record["size_bytes"]
    if "unpacked" in m4:
        out["unpacked"] = m4["unpacked"]
    return out


def table(results: dict) -> str:
    rows = [
        "| task | genome | flash B | RAM B | stack B | instructions / step | MACs / step | instructions / MAC "
        "| unpacked: flash B, instructions / MAC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, per in results.items():
        for name, m in per.items():
            u = m.get("unpacked")
            rows.append(
                f"| {task} | {name} | {m['flash_bytes']} | {m['ram_bytes']} | {m['stack_bytes']} | "
                f"{m['instructions_per_step']:,.0f} | {m['macs_per_step']:,} | {m['instructions_per_mac']:.2f} | "
                + (f"{u['flash_bytes']}, {u['instructions_per_mac']:.2f} |" if u else "(already bytes) |")
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", action="append", choices=TASKS, help="a task (repeatable; default all four)")
    p.add_argument("--table", action="store_true", help="also print the markdown table")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    results = {task: {name: measure(task, g) for name, g in GENOMES.items()} for task in args.task or TASKS}
    print(json.dumps(results))
    if args.table:
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
