"""`reproduce`: the published claim on the four tasks, into a report directory; or the same
report for one task and model of the user's (`--task data.npz --checkpoint my.ckpt`).

    python -m gruq reproduce --out reports/ [--seeds K] [--tasks smnist,vowels | --task T --checkpoint P]
        [--pop N --gens G --finetune-epochs E --finetune-samples N --front-size K --seed S --workers W
        --fitness ptq|finetuned|compare --search-finetune-samples N --finetuned-pop N] [--json]

Progress goes to stderr (tqdm); --json prints summary.json's object on stdout.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gruq.cli import emit
from gruq.cli.args import add_task, bounded, natural, path, positive
from gruq.errors import GruqError
from gruq.limits import MAX_GENS, MAX_POP
from gruq.tasks import NAMES


def _tasks(text: str) -> list[str]:
    """--tasks: built-in task names only (a task of one's own goes with --task)."""
    tasks = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown task {unknown[0]!r}; --tasks takes {', '.join(NAMES)} (a .npz of yours: --task FILE)"
        )
    return tasks


def register(sub: Any) -> None:
    from gruq.reproduce import FITNESS_CHOICES, Budget

    d = Budget()
    p = sub.add_parser(
        "reproduce",
        help="search, fine-tune and report all four tasks (the published claim), or one task and model of yours",
        description="Run the reproduction: per task an NSGA-II search, the same fine-tuning for the "
        "front and the homogeneous genomes, test scores, figures and README.md in --out. "
        "--task data.npz --checkpoint my.ckpt makes the same report for your own task and imported model.",
    )
    p.add_argument(
        "--out", type=path("output_dir"), default="reports/", metavar="DIR", help="report directory (default reports/)"
    )
    p.add_argument("--tasks", type=_tasks, metavar="T,T", help="comma-separated built-in tasks (default: all four)")
    add_task(p, required=False)  # as evaluate, verify, search and export take a user's task and checkpoint
    p.add_argument("--pop", type=bounded("--pop", 4, MAX_POP), default=d.pop, help=f"population (default {d.pop})")
    p.add_argument(
        "--gens", type=bounded("--gens", 1, MAX_GENS), default=d.gens, help=f"generations (default {d.gens})"
    )
    p.add_argument(
        "--finetune-epochs",
        type=natural,
        default=d.finetune_epochs,
        metavar="E",
        help=f"fine-tuning epochs per genome (default {d.finetune_epochs})",
    )
    p.add_argument(
        "--finetune-samples",
        type=natural,
        default=d.finetune_samples,
        metavar="N",
        help=f"training sequences per fine-tuning epoch, 0 for all (default {d.finetune_samples})",
    )
    p.add_argument(
        "--finetune-select",
        choices=("val", "last"),
        default=d.finetune_select or "last",
        help=f"keep the fine-tuning epoch best on validation, or the last one (default {d.finetune_select or 'last'})",
    )
    p.add_argument(
        "--front-size",
        type=positive,
        default=d.front_size,
        metavar="K",
        help=f"front genomes fine-tuned at most, best spread (default {d.front_size})",
    )
    p.add_argument(
        "--fitness",
        choices=FITNESS_CHOICES,
        default=d.fitness,
        help="the search's fitness: post-training accuracy (ptq), accuracy after one fine-tuning epoch "
        "(finetuned, the same search time: see --search-finetune-samples), or both, using the better on "
        f"select (compare; default {d.fitness})",
    )
    p.add_argument(
        "--search-finetune-samples",
        type=positive,
        default=d.search_finetune_samples,
        metavar="N",
        help=f"training sequences of the one fine-tuning epoch per candidate of the finetuned search "
        f"(default {d.search_finetune_samples})",
    )
    p.add_argument(
        "--finetuned-pop",
        type=bounded("--finetuned-pop", 4, MAX_POP),
        default=d.finetuned_pop,
        metavar="N",
        help=f"population of the finetuned search (default {d.finetuned_pop})",
    )
    p.add_argument("--seed", type=natural, default=d.seed, help=f"first search and fine-tuning seed (default {d.seed})")
    p.add_argument(
        "--seeds",
        type=positive,
        default=d.seeds,
        metavar="K",
        help=f"run the whole pipeline for K seeds, --seed, --seed+1, ... (default {d.seeds})",
    )
    p.add_argument(
        "--workers",
        type=positive,
        default=d.workers,
        metavar="W",
        help=f"processes (default {d.workers}); results do not depend on it",
    )
    p.add_argument("--json", action="store_true", help="print summary.json's object on stdout")
    p.set_defaults(func=reproduce_command)


def _which(args: argparse.Namespace) -> tuple[list[str], str | None]:
    """The tasks and checkpoint asked for: --tasks (built-in) or --task [--checkpoint], never both."""
    if args.task is not None and args.tasks is not None:
        raise GruqError("give --tasks (built-in tasks) or --task (one task, with its --checkpoint), not both")
    if args.checkpoint is not None and args.task is None:
        raise GruqError("--checkpoint goes with --task (the task that checkpoint was made for)")
    if args.task is not None:
        return [args.task], None if args.checkpoint is None else str(args.checkpoint)
    return args.tasks or list(NAMES), None


def reproduce_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from gruq.report import summary_table
    from gruq.reproduce import Budget, load_task, reproduce

    tasks, checkpoint = _which(args)
    budget = Budget(
        pop=args.pop,
        gens=args.gens,
        seed=args.seed,
        seeds=args.seeds,
        finetune_epochs=args.finetune_epochs,
        finetune_samples=args.finetune_samples or None,
        finetune_select=None if args.finetune_select == "last" else args.finetune_select,
        front_size=args.front_size,
        workers=args.workers,
        fitness=args.fitness,
        search_finetune_samples=args.search_finetune_samples,
        finetuned_pop=args.finetuned_pop,
    )
    bars: dict[tuple[str, str], tqdm] = {}

    def progress(task: str, stage: str, done: int, total: int) -> None:
        if stage == "search":  # the search shows its own bar
            return
        bar = bars.get((task, stage))
        if bar is None:
            bar = bars[(task, stage)] = tqdm(
                total=total,
                desc=f"{task} {stage}",
                file=sys.stderr,
                dynamic_ncols=True,
                unit="model" if stage == "finetune" else "step",
            )
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    try:
        summary = reproduce(args.out, tasks, budget, progress=progress, search_bar=True, checkpoint=checkpoint)
    finally:
        for bar in bars.values():
            bar.close()
    if args.json:
        emit(summary)
    else:
        print(summary_table(summary, {t: load_task(args.out, t) for t in summary["tasks"]}))
        print(f"\n{summary['wall_seconds'] / 60:.1f} min; report: {str(args.out).rstrip('/')}/README.md")
    return 0
