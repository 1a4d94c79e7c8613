"""`bench`: the benchmarks of bench/ (a folder next to gruq/), one JSON object.

    python -m gruq bench [--tasks T ...] [--seeds 5] [--budget 400] [--json]
    python -m gruq bench --search-quality [--tasks T ...] [--seeds 5] [--budgets 200 400] [--json]

With --search-quality only the search-quality comparison runs, on every task
of --tasks, at every budget of --budgets: gruq, random search, Optuna's
NSGAIISampler and multivariate TPESampler, and a greedy AIMET-style bit
reduction, on one scoring function with one cache. Per task: the median and
per-seed validation hypervolume of each method at each budget, the test
hypervolume of each method's front (held out: no method ranked on it), and
how many scorings gruq needs to reach each peer's hypervolume at the largest
budget.

- eval_cost_ratio: bench/eval_cost.py on the ratio task (vowels); with
  --ratio-all-tasks also on every task of --tasks (eval_cost_ratio_per_task).
- hypervolume: bench/search_quality.py, median over seeds at an equal budget of
  distinct scorings, gruq's NSGA-II vs random search vs Optuna's NSGAIISampler,
  on the search task (vowels).
- quick_run_seconds: bench/quick_run.py, wall time of a quick default search.

    python -m gruq bench --qat [--tasks T ...] [--checkpoint PATH] [--json]

- qat_cost_ratio / qat_batched_cost_ratio (per task, and nothing else):
  bench/qat_cost.py, one fine-tuning epoch of one genome / of 16 genomes
  together, over one float nn.GRU training epoch on the same data; with
  --checkpoint, of that model (a stacked one: both epochs train its L layers).

A task that cannot run (its checkpoint is not trained yet) is reported under
"skipped" with the reason. Timings depend on the machine and its load: the
object records both. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from gruq.cli import emit
from gruq.cli.args import path, positive
from gruq.errors import GruqError

DEFAULT_TASK = "vowels"


def register(sub: Any) -> None:
    from gruq.tasks import NAMES

    p = sub.add_parser(
        "bench",
        help="measure scoring cost, search quality and quick-run time",
        description="Run the benchmarks of bench/ and print their figures.",
    )
    p.add_argument(
        "--tasks",
        nargs="+",
        metavar="T",
        default=list(NAMES),
        help=f"tasks of the quick runs and per-task cost ratios (default: {' '.join(NAMES)})",
    )
    p.add_argument("--seeds", type=positive, default=5, help="seeds of the search-quality comparison (default 5)")
    p.add_argument(
        "--budget", type=positive, default=400, help="distinct scored genomes per method and seed (default 400)"
    )
    p.add_argument(
        "--search-task",
        default=DEFAULT_TASK,
        metavar="T",
        help=f"task of the search-quality comparison (default {DEFAULT_TASK})",
    )
    p.add_argument(
        "--ratio-task",
        default=DEFAULT_TASK,
        metavar="T",
        help=f"task of the headline eval_cost_ratio (default {DEFAULT_TASK})",
    )
    p.add_argument(
        "--ratio-all-tasks",
        action="store_true",
        help="also measure eval_cost_ratio on every task of --tasks (slow on the large splits)",
    )
    p.add_argument(
        "--threads",
        type=positive,
        metavar="N",
        help="torch threads while measuring eval_cost_ratio (default: torch's own choice)",
    )
    p.add_argument(
        "--qat",
        action="store_true",
        help="only the fine-tuning cost ratios (qat_cost_ratio, qat_batched_cost_ratio) on every task of --tasks",
    )
    p.add_argument(
        "--search-quality",
        action="store_true",
        help="run only the search-quality comparison, on every task of --tasks and every budget of --budgets",
    )
    p.add_argument(
        "--budgets",
        type=positive,
        nargs="+",
        metavar="N",
        default=[200, 400],
        help="budgets of --search-quality (default 200 400)",
    )
    p.add_argument(
        "--checkpoint",
        type=path("input_file"),
        metavar="PATH",
        help="with --qat: the float model to fine-tune (a stacked or imported one) instead of each task's own",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    # Hidden: for tests and for re-runs.
    p.add_argument("--pop", type=positive, default=32, help=argparse.SUPPRESS)
    p.add_argument("--score-cache", metavar="PATH", help=argparse.SUPPRESS)
    p.add_argument("--ratio-repeats", type=positive, default=5, help=argparse.SUPPRESS)
    p.add_argument("--no-ratio", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-quality", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-quick", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--qat-genomes", type=positive, default=16, help=argparse.SUPPRESS)
    p.add_argument("--qat-samples", type=positive, help=argparse.SUPPRESS)
    p.add_argument("--qat-repeats", type=positive, default=1, help=argparse.SUPPRESS)
    p.set_defaults(func=bench_command)


def bench_module(name: str) -> ModuleType:
    """bench/<name>.py of the checkout gruq is imported from, or a GruqError saying it is missing."""
    import gruq

    root = Path(gruq.__file__).resolve().parent.parent
    path = root / "bench" / f"{name}.py"
    if not path.is_file():
        raise GruqError(f"the benchmarks are missing: no {path} (bench/ sits next to gruq/ in a source checkout)")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = importlib.import_module(f"bench.{name}")
    found = Path(getattr(module, "__file__", "") or "").resolve()
    if found != path:
        raise GruqError(f"bench.{name} was imported from {found}, not {path}: another 'bench' package shadows it")
    return module


def bench_command(args: argparse.Namespace) -> int:
    if args.qat:
        return _qat_command(args)
    if args.search_quality:
        return _search_quality_command(args)
    started = time.perf_counter()
    skipped: dict[str, str] = {}
    out: dict[str, Any] = {
        "eval_cost_ratio": None,
        "eval_cost_ratio_per_task": {},
        "hypervolume": None,
        "hypervolume_per_seed": None,
        "evaluations": args.budget,
        "quick_run_seconds": {},
    }
    modules = {}
    for name, wanted in (
        ("eval_cost", not args.no_ratio),
        ("search_quality", not args.no_quality),
        ("quick_run", not args.no_quick),
    ):
        if wanted:
            modules[name] = bench_module(name)

    if "eval_cost" in modules:
        _ratios(modules["eval_cost"], args, out, skipped)
    if "search_quality" in modules:
        _quality(modules["search_quality"], args, out, skipped)
    if "quick_run" in modules:
        q = modules["quick_run"].quick_runs(args.tasks)
        out["quick_run_seconds"] = q["quick_run_seconds"]
        out["quick_run"] = {"budget": q["budget"], "target_seconds": q["target_seconds"], "runs": q["quick_run"]}
        for task, reason in q["skipped"].items():
            skipped.setdefault(task, reason)
        out["machine"] = q["machine"]
    if "machine" not in out:
        out["machine"] = _machine()
    out["skipped"] = skipped
    out["seconds"] = time.perf_counter() - started
    if args.json:
        emit(out)
    else:
        _print(out)
    return 0


def _ratios(module: ModuleType, args: argparse.Namespace, out: dict[str, Any], skipped: dict[str, str]) -> None:
    """The headline ratio on --ratio-task; with --ratio-all-tasks, one per task of --tasks too.

    Each is bench/eval_cost.py's `eval_cost_ratio(task, repeats=...)`: both timings in one run.
    """
    from tqdm import tqdm

    tasks = [args.ratio_task] + (list(args.tasks) if args.ratio_all_tasks else [])
    per_task: dict[str, float] = {}
    details: dict[str, Any] = {}
    with _torch_threads(args.threads):
        for task in tqdm(
            list(dict.fromkeys(tasks)), desc="eval cost", unit="task", file=sys.stderr, dynamic_ncols=True
        ):
            try:
                result = module.eval_cost_ratio(task, repeats=args.ratio_repeats)
            except GruqError as exc:
                skipped.setdefault(task, str(exc))
                continue
            details[task] = result
            per_task[task] = float(result["eval_cost_ratio"] if isinstance(result, dict) else result)
    out["eval_cost_ratio"] = per_task.get(args.ratio_task)
    out["eval_cost_ratio_task"] = args.ratio_task
    out["eval_cost_ratio_per_task"] = per_task
    out["eval_cost"] = details
    out["eval_cost_threads"] = args.threads


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _qat_command(args: argparse.Namespace) -> int:
    """`bench --qat`: bench/qat_cost.py on every task of --tasks, both ratios measured in one run per task."""
    from tqdm import tqdm

    started = time.perf_counter()
    module = bench_module("qat_cost")
    out: dict[str, Any] = {"qat_cost_ratio": {}, "qat_batched_cost_ratio": {}, "qat_cost": {}}
    skipped: dict[str, str] = {}
    for task in tqdm(list(dict.fromkeys(args.tasks)), desc="qat cost", unit="task", file=sys.stderr):
        try:
            result = module.qat_cost(
                task, args.qat_genomes, args.qat_samples, args.qat_repeats, checkpoint=_str(args.checkpoint)
            )
        except GruqError as exc:
            skipped[task] = str(exc)
            continue
        out["qat_cost"][task] = result
        out["qat_cost_ratio"][task] = result["qat_cost_ratio"]
        out["qat_batched_cost_ratio"][task] = result["qat_batched_cost_ratio"]
    out["machine"], out["skipped"] = _machine(), skipped
    out["seconds"] = time.perf_counter() - started
    if args.json:
        emit(out)
        return 0
    print(f"{'task':8} {'r (1 genome)':>13} {'r16 (' + str(args.qat_genomes) + ' together)':>20}  (CPU time)")
    for task, r in out["qat_cost"].items():
        print(
            f"{task:8} {r['qat_cost_ratio']:13.2f} {r['qat_batched_cost_ratio']:20.2f}  "
            f"({r['qat_cost_ratio_cpu']:.2f}, {r['qat_batched_cost_ratio_cpu']:.2f})"
        )
    for task, reason in skipped.items():
        print(f"skipped {task}: {reason}")
    m = out["machine"]
    print(f"machine: {m.get('cpus')} CPUs, load average {m.get('load_average')}")
    return 0


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run with `threads` torch threads (None: leave torch's choice), restoring the previous number."""
    if threads is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _quality(module: ModuleType, args: argparse.Namespace, out: dict[str, Any], skipped: dict[str, str]) -> None:
    try:
        q = module.search_quality(args.search_task, args.seeds, args.budget, args.pop, score_cache=args.score_cache)
    except GruqError as exc:
        skipped.setdefault(args.search_task, str(exc))
        return
    out["hypervolume"] = q["hypervolume"]
    out["hypervolume_per_seed"] = q["hypervolume_per_seed"]
    out["evaluations"] = q["evaluations"]
    out["search_quality"] = {k: v for k, v in q.items() if k not in ("hypervolume", "hypervolume_per_seed")}


def _search_quality_command(args: argparse.Namespace) -> int:
    """`bench --search-quality`: the comparison on every task; one JSON object (or a table)."""
    started = time.perf_counter()
    before = _machine()
    module = bench_module("search_quality")
    q = module.search_quality_tasks(args.tasks, args.seeds, args.budgets, args.pop, score_cache=args.score_cache)
    out = {
        "command": "python -m gruq bench --search-quality --tasks "
        + " ".join(args.tasks)
        + f" --seeds {args.seeds} --budgets {' '.join(map(str, args.budgets))}",
        "budgets": sorted(set(args.budgets)),
        "seeds": args.seeds,
        "search_quality": q["tasks"],
        "skipped": q["skipped"],
        "machine": {**_machine(), "load_average_at_start": before["load_average"]},
        "seconds": time.perf_counter() - started,
    }
    if args.json:
        emit(out)
    else:
        _print_quality(out)
    return 0


def _print_quality(out: dict[str, Any]) -> None:
    for task, q in out["search_quality"].items():
        for budget, f in q["by_budget"].items():
            print(f"{task}, {budget} scorings, median validation hypervolume over {len(q['seeds'])} seeds:")
            for method, value in f["hypervolume"].items():
                seeds = ", ".join(f"{v:.4f}" for v in f["hypervolume_per_seed"][method])
                print(f"  {method:13} {value:.4f}   ({seeds})")
        for peer, r in q["scorings_to_reach"].items():
            print(f"  gruq reaches {peer}'s {q['budgets'][-1]}-scoring median after {r['median_curve']} scorings")
    for task, reason in out["skipped"].items():
        print(f"skipped {task}: {reason}")
    print(f"{out['seconds']:.0f} s; machine: {out['machine']}")


def _machine() -> dict[str, Any]:
    import os

    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cpus": os.cpu_count(), "load_average": load}


def _print(out: dict[str, Any]) -> None:
    ratio = out["eval_cost_ratio"]
    print(
        f"eval_cost_ratio ({out.get('eval_cost_ratio_task', DEFAULT_TASK)}): "
        f"{'n/a' if ratio is None else f'{ratio:.2f}'}"
    )
    for task, r in out["eval_cost_ratio_per_task"].items():
        print(f"  {task:8} {r:.2f}")
    hv = out["hypervolume"]
    if hv:
        sq = out["search_quality"]
        print(f"median hypervolume, {sq['task']}, {out['evaluations']} scorings, {len(sq['seeds'])} seeds:")
        for method, value in hv.items():
            seeds = ", ".join(f"{v:.4f}" for v in out["hypervolume_per_seed"][method])
            print(f"  {method:13} {value:.4f}   ({seeds})")
    for task, seconds in out["quick_run_seconds"].items():
        print(f"quick run {task:8} {seconds:7.1f} s")
    for task, reason in out["skipped"].items():
        print(f"skipped {task}: {reason}")
    m = out["machine"]
    print(f"machine: {m.get('cpus')} CPUs, load average {m.get('load_average')}")
