"""`search` (run, resume) and `runs` (list): the search's command line.

Heavy imports (DEAP, numpy, the evaluator) happen inside the commands, so
`python -m gruq --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gruq.cli import emit
from gruq.cli.args import path
from gruq.errors import GruqError

DEFAULT_DB = "runs/gruq.db"
# Settings of a new run, named as SearchConfig's fields; --resume takes the stored ones instead.
NEW_RUN_SETTINGS = (
    "task",
    "checkpoint",
    "pop",
    "gens",
    "budget",
    "seed",
    "objective",
    "max_size_bytes",
    "max_size_kb",
    "max_size_pct",
    "min_accuracy",
    "finetune_epochs",
    "front_finetune_epochs",
    "finetune_samples",
    "chunk_size",
)
NEW_RUN_OPTIONS = (*NEW_RUN_SETTINGS, "bits_range", "pin")  # flags a resumed run refuses
COMPUTE = ("workers", "scheduler")  # where a run computes: a resume may change them


def register(sub: Any) -> None:
    _register_search(sub)
    _register_runs(sub)
    _register_runner(sub)


def _register_search(sub: Any) -> None:
    p = sub.add_parser(
        "search",
        help="NSGA-II search of per-operator bit widths, recorded in a store",
        description="Search bit widths with NSGA-II; each generation is committed to the store.",
    )
    p.add_argument("--task", help="task name (see `gruq tasks`)")
    p.add_argument("--checkpoint", help="float checkpoint, e.g. from `gruq import` (default: assets/<task>.pt)")
    p.add_argument("--pop", type=int, help="population size, at least 4 (default 32)")
    p.add_argument(
        "--gens",
        type=int,
        help="generations, the initial one included (default 15; with --budget alone: no generation limit)",
    )
    p.add_argument(
        "--budget",
        type=int,
        metavar="N",
        help="stop after exactly N distinct scored genomes (homogeneous and probes included); "
        "with --gens, whichever limit comes first",
    )
    p.add_argument("--seed", type=int, help="random seed; same seed, same front (default 0)")
    p.add_argument("--objective", choices=("size", "bops"), help="cost to minimise beside accuracy (default size)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--max-size-bytes", type=float, metavar="B", help="largest model size allowed, bytes")
    size.add_argument("--max-size-kb", type=float, metavar="KB", help="largest model size allowed, kB (1000 bytes)")
    size.add_argument("--max-size-pct", type=float, metavar="P", help="largest model size, %% of the all-8-bit model")
    p.add_argument("--min-accuracy", type=float, metavar="A", help="lowest validation accuracy allowed, 0..1")
    p.add_argument(
        "--bits-range",
        action="append",
        metavar="OP=LO-HI",
        help="allowed widths of an operator (repeatable); on a stacked model OP alone means every layer's, "
        "l1.OP layer 1's only",
    )
    p.add_argument(
        "--pin",
        action="append",
        metavar="OP=B",
        help="fix an operator's width (repeatable); on a stacked model OP alone (lin_xr=4) pins it in every "
        "layer, l1.OP=B in layer 1 only (it wins over OP=B)",
    )
    p.add_argument("--finetune-epochs", type=int, metavar="E", help="fine-tuning epochs per candidate (default 0)")
    p.add_argument("--front-finetune-epochs", type=int, metavar="E", help="fine-tune the final front (default 0)")
    p.add_argument(
        "--finetune-samples",
        type=int,
        metavar="N",
        help="training sequences per fine-tuning epoch, a fresh seeded subset each epoch (default: all)",
    )
    p.add_argument(
        "--workers", type=int, metavar="W", help="scoring processes (default 1); results do not depend on it"
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDR",
        help="score on Dask: tcp://HOST:PORT (a running `dask scheduler`) or local:N (N worker processes here); "
        "results do not depend on it",
    )
    p.add_argument("--chunk-size", type=int, metavar="N", help="genomes scored per batch (default 16)")
    _add_db(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--resume", type=int, metavar="ID", help="continue stored run ID (after a crash or cancel)")
    which.add_argument("--run-id", type=int, metavar="ID", help="start queued run ID (used by the app's launcher)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=search_command)


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        type=path("file_or_absent"),
        default=DEFAULT_DB,
        metavar="PATH",
        help=f"the run store (default {DEFAULT_DB})",
    )


def _register_runs(sub: Any) -> None:
    p = sub.add_parser("runs", help="list the runs in a store")
    _add_db(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=runs_command)


def _register_runner(sub: Any) -> None:
    p = sub.add_parser(
        "runner",
        help="(started by the app) start queued runs of a store at once, from a warm process",
        description="Wait for queued runs in the store and start each in its own forked process; "
        "exits when the process that started it is gone.",
    )
    _add_db(p)
    p.set_defaults(func=runner_command)


def runner_command(args: argparse.Namespace) -> int:
    from gruq.search import runner

    return runner.serve(args.db)


def search_command(args: argparse.Namespace) -> int:
    from gruq.search import run

    try:
        if args.resume is not None or args.run_id is not None:
            result = _continue(args)
        else:
            result = run.start(args.db, config_from_args(args))
    except run.RunCancelled as exc:
        sys.stderr.write(f"gruq: {exc}\n")
        return 128 + (exc.signum or 2)
    _print_result(result, args.json)
    return 0


def _continue(args: argparse.Namespace) -> dict[str, Any]:
    from gruq.search import run

    given = [name for name in NEW_RUN_OPTIONS if getattr(args, name) is not None]
    flag = "--resume" if args.resume is not None else "--run-id"
    if given:
        names = ", ".join("--" + n.replace("_", "-") for n in given)
        raise GruqError(f"{flag} continues a stored run with its stored settings; drop {names}")
    run_id = args.resume if args.resume is not None else args.run_id
    return run.execute(
        args.db, run_id, launched=args.run_id is not None, workers=args.workers, scheduler=args.scheduler
    )


def config_from_args(args: argparse.Namespace) -> Any:
    """A SearchConfig from the flags given (the others keep SearchConfig's defaults)."""
    from gruq.search.config import SearchConfig, collect, parse_pin, parse_range

    if not args.task:
        raise GruqError("search needs --task (or --resume ID to continue a stored run)")
    settings: dict[str, Any] = {
        name: getattr(args, name) for name in (*NEW_RUN_SETTINGS, *COMPUTE) if getattr(args, name) is not None
    }
    if args.budget is not None and args.gens is None:
        settings["gens"] = None  # the budget alone decides when the run ends
    if "checkpoint" in settings:  # absolute: a run may be resumed from another folder
        settings["checkpoint"] = str(Path(settings["checkpoint"]).resolve())
    settings["bits_ranges"] = collect([parse_range(t) for t in args.bits_range or []], "--bits-range")
    settings["pins"] = collect([parse_pin(t) for t in args.pin or []], "--pin")
    return SearchConfig.from_dict(settings)


def _print_result(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit(result)
        return
    hv = result["hypervolume"]
    print(
        f"run {result['run_id']}: {result['evaluations']} genomes scored, "
        f"hypervolume {hv[-1] if hv else 0:.4f} after {len(hv)} generations"
    )
    print(f"{'accuracy':>9} {'size (B)':>10} {'BOPs':>14}  bits")
    for m in result["front"]:
        print(f"{m['accuracy']:>9.4f} {m['size_bytes']:>10.1f} {m['bops']:>14,}  {','.join(map(str, m['bits']))}")


def runs_command(args: argparse.Namespace) -> int:
    from gruq.store import list_runs

    runs = list_runs(args.db)
    keys = ("run_id", "task", "status", "generations_done", "generations", "seed")
    if args.json:
        emit({"runs": [{k: r[k] for k in keys} for r in runs]})
        return 0
    print(f"{'id':>4} {'task':<12} {'status':<10} {'gens':>9} {'seed':>6}  error")
    for r in runs:
        gens = f"{r['generations_done']}/{r['generations']}"
        print(f"{r['run_id']:>4} {r['task']:<12} {r['status']:<10} {gens:>9} {r['seed']:>6}  {r['error'] or ''}")
    return 0
