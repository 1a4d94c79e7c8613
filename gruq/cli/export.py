"""`export`: an integer model, its C99 kernel and check program, and a memory report.

    python -m gruq export --task T --bits B|B0,...,B16 --out DIR [--checkpoint P] [--split S] [--json]
    python -m gruq export --db PATH --run ID --pick K --out DIR [--check] [--json]
    ... [--target cortex-m4]   also a bare-metal Cortex-M4 build (make -C DIR run, under QEMU)
                               and its measured flash, RAM, stack and instructions per step

`--pick K` is member K of the run's latest front sorted by size_bytes
ascending (0 = the smallest); its model is the one the run's numbers belong to
(gruq.scheme_model: fine-tuned weights included, checked by hash or by the
run's accuracy). `--check` also compiles and runs the check program, whose
"accuracy c/N" line must agree with the reported `test_accuracy`.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from gruq.cli import emit
from gruq.cli.args import add_json, bits, bounded, natural, seed
from gruq.errors import GruqError
from gruq.limits import MAX_EPOCHS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="integer model file, C99 kernel, check program and memory report",
        description="Export a quantized model for a microcontroller: DIR gets gruq_model.json, "
        "gruq_model.h, gruq_kernel.[ch], check.c, test vectors and memory.json; "
        "`cc -std=c99 -Wall -Wextra -Werror -O2 DIR/*.c -o check && ./check` "
        "prints N/N identical.",
    )
    p.add_argument("--task", help="smnist, vowels, har, ecg, or a path to a .npz (with --bits)")
    p.add_argument(
        "--bits", type=bits, help="one width for all, or 17 comma-separated per layer (17 x L for L stacked layers)"
    )
    p.add_argument("--checkpoint", help="float checkpoint (default: the task's, in assets/)")
    p.add_argument("--db", metavar="PATH", help="a run store: export a member of a run's front")
    p.add_argument("--run", type=natural, metavar="ID", help="the run (with --db)")
    p.add_argument(
        "--pick", type=natural, metavar="K", help="front member K, the front sorted by size_bytes ascending (with --db)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the exported files")
    p.add_argument(
        "--split",
        choices=("train", "val", "test"),
        default="test",
        help="the split whose sequences become test vectors (default test)",
    )
    p.add_argument(
        "--finetune-epochs",
        type=bounded("--finetune-epochs", 0, MAX_EPOCHS),
        default=0,
        help="fine-tune the weights for the genome first (as evaluate does; with --task)",
    )
    p.add_argument("--seed", type=seed, default=0, help="fine-tuning seed (with --task)")
    p.add_argument(
        "--finetune-samples", type=natural, metavar="N", help="training sequences per fine-tuning epoch (with --task)"
    )
    p.add_argument(
        "--finetune-select", choices=("val",), help="keep the fine-tuning epoch best on validation (with --task)"
    )
    p.add_argument(
        "--target",
        choices=("host", "cortex-m4"),
        default="host",
        help="cortex-m4: also write a startup file, linker script and Makefile for qemu-system-arm's mps2-an386 "
        "board and measure flash, RAM, stack and instructions per step (needs arm-none-eabi-gcc, qemu-system-arm)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="also compile with cc and run the check program (and, with --target cortex-m4, under QEMU)",
    )
    add_json(p)
    p.set_defaults(func=cmd_export)


def _target(args: argparse.Namespace) -> dict[str, Any]:
    """What to export: from --task/--bits, or from --db/--run/--pick."""
    if args.db is not None:
        if args.task is not None or args.bits is not None:
            raise GruqError("give either --db/--run/--pick or --task/--bits, not both")
        if args.run is None or args.pick is None:
            raise GruqError("--db needs --run ID and --pick K")
        from gruq.export.front import front_member
        from gruq.scheme_model import load_from_run

        member = front_member(args.db, args.run, args.pick)
        recipe, built = load_from_run(args.db, args.run, tuple(member["bits"]), checkpoint=args.checkpoint)
        return {
            "task": member["task"],
            "checkpoint": args.checkpoint or member["checkpoint"],
            "bits": member["bits"],
            "finetune_epochs": 0,
            "seed": 0,
            "model": recipe,
            "built": built,
            "front_member": member,
        }
    if args.run is not None or args.pick is not None:
        raise GruqError("--run and --pick need --db PATH")
    if args.task is None or args.bits is None:
        raise GruqError("export needs --task T --bits B (or --db PATH --run ID --pick K)")
    from gruq.scheme_model import from_options

    model = from_options(
        args.task,
        tuple(args.bits),
        args.checkpoint,
        args.finetune_epochs,
        args.seed,
        args.finetune_samples or None,
        args.finetune_select,
    )
    return {
        "task": args.task,
        "checkpoint": args.checkpoint,
        "bits": list(args.bits),
        "finetune_epochs": 0,
        "seed": 0,
        "model": model,
    }


def cmd_export(args: argparse.Namespace) -> int:
    from gruq.export import export, run_check

    target = _target(args)
    record = export(
        target["task"],
        target["bits"],
        args.out,
        target["checkpoint"],
        args.split,
        target["finetune_epochs"],
        target["seed"],
        target=args.target,
        model=target.get("model"),
        built=target.get("built"),
    )
    if "front_member" in target:
        record["front_member"] = target["front_member"]
    ok = True
    if args.check:
        check = run_check(record["out"])
        ok = check["ok"]
        record["check"] = {
            "ok": ok,
            "compiled": check["compiled"],
            "last_line": check.get("last_line", ""),
            **({} if check["compiled"] else {"compiler_output": check["output"][-2000:]}),
        }
        printed = _printed_accuracy(check.get("output", ""))
        if printed is not None:
            record["check"]["accuracy"] = printed
            if "engine_accuracy" in record and printed != record["engine_accuracy"]:
                record["check"]["ok"] = ok = False  # the C program disagrees with the engine
        if args.target == "cortex-m4":
            from gruq.export.targets import cortex_m4

            m4 = cortex_m4.run_check(record["out"])
            ok = ok and m4["ok"]
            record["check_cortex_m4"] = {
                "ok": m4["ok"],
                "compiled": m4["compiled"],
                "last_line": m4.get("last_line", ""),
                **({} if m4["compiled"] else {"compiler_output": m4["output"][-2000:]}),
            }
    if args.json:
        emit(record)
    else:
        _print(record)
    return 0 if ok else 1


def _printed_accuracy(output: str) -> float | None:
    """The check program's "accuracy c/N" line as a fraction (None if absent)."""
    import re

    m = re.search(r"^accuracy (\d+)/(\d+)$", output, re.M)
    return int(m[1]) / int(m[2]) if m and int(m[2]) else None


def _print(r: dict[str, Any]) -> None:
    ops = r["ops_per_step"]
    print(f"{r['task']}: exported the {r['model']} model, {r['sequences']} {r['split']} sequences to {r['out']}")
    if "engine_accuracy" in r:
        lo, hi = r["ci95"]
        print(
            f"  accuracy {100 * r['engine_accuracy']:.2f}% (95% CI {100 * lo:.1f}-{100 * hi:.1f}%, n={r['sequences']})"
        )
    print(
        f"  parameters {r['packed_parameter_bytes']} B packed (size_bytes {r['size_bytes']:g}), "
        f"look-up tables {r['lut_bytes']} B, state {r['state_bytes']} B + scratch {r['scratch_bytes']} B"
    )
    print(
        f"  per step: {ops['multiplies']} multiplies, {ops['adds']} adds, {ops['shifts']} shifts, "
        f"{ops['lookups']} lookups"
    )
    if "cortex_m4" in r:
        m = r["cortex_m4"]
        print(
            f"  cortex-m4: flash {m['flash_bytes']} B, RAM {m['ram_bytes']} B, stack {m['stack_bytes']} B, "
            f"{m['instructions_per_step']:.0f} instructions per step ({m['instructions_per_mac']} per MAC; "
            "QEMU instruction count, not cycles)"
        )
    if "check" in r:
        c = r["check"]
        print(f"  check: {c['last_line'] or 'did not compile'}")
    if "check_cortex_m4" in r:
        c = r["check_cortex_m4"]
        print(f"  check on cortex-m4 (QEMU): {c['last_line'] or 'did not compile'}")
    print(f"  build: cd {shlex.quote(r['out'])} && {r['build']}")
