"""Reproduce the published claim on the four tasks, honestly, for several seeds;
or make the same report for a user's own task and imported model (issue 13).

    reproduce("reports/", tasks=NAMES, budget=Budget(), progress=None) -> summary
    reproduce("mine/", ["data.npz"], checkpoint="my.ckpt")   a user's task and imported model

Roles of the data (per task; `gruq.tasks.base.test_halves`):

- train: the float checkpoint's training and every fine-tuning;
- val: the float checkpoint's epoch choice, the search's ranking (post-training
  accuracy), and the fine-tuning's epoch choice (`finetune_select`);
- select: the first stratified half of the test split, never used by anything
  above: the final pick among fine-tuned candidates is made on it, and only here;
- holdout: the other half of the test split: only reported, never used to choose.

Per task and per seed (`Budget.seeds` seeds from `Budget.seed` on; the seed is
the search's seed and every fine-tuning's run seed):

1. NSGA-II searches against size, recorded in `<out>/search.db`, one per
   fitness (`Budget.fitness`; issue 12): post-training accuracy on val ("ptq",
   pop x gens), and val accuracy after one fine-tuning epoch ("finetuned", the
   same time expressed in scorings through the recorded COST_RATIO, so no
   result depends on a clock).
2. Each final front, or its `front_size` best-spread members, and the seven
   homogeneous genomes (all 2-bit ... all 8-bit) get the same fine-tuning
   (`gruq.scheme_model`: `finetune_epochs` epochs of `finetune_samples`
   sequences, seed `gruq.train.seed_for(genome, seed)`, epoch kept on val).
3. pick = the smallest candidate whose select accuracy is within 0.5 pp of the
   fine-tuned all-8-bit model's select accuracy (ties: the more accurate, then
   the lower bits); reported on holdout: its accuracy (n, 95% Wilson
   interval) and its difference to all-8-bit (paired bootstrap interval).
4. hv_mixed / hv_homogeneous: hypervolume of holdout accuracy against
   size / all-8-bit size of the fine-tuned front members / the seven
   homogeneous genomes, reference point (accuracy 0, all-8-bit size).
5. With both fitnesses, the one used (its pick and hv_mixed are reported) is
   the one whose pick is smaller on select (ties: the larger select hypervolume
   of its fine-tuned front, then "ptq"); both are reported ("fitness").

summary.json: {"tasks": {T: {"size8", "size_cap", "seeds": [{"seed", "hv_mixed",
"hv_homogeneous", "pick": {"bits", "selected_on", "select_accuracy", "select_acc8",
"test_accuracy", "test_acc8", "test_delta_pp", "test_ci95", "size_bytes",
"reduction", "check"}, "fitness"}, ...], "reduction_mean", "test_delta_pp_mean", "fitness"}},
"budget", "wall_seconds"} (the issue's keys, and "fitness": each fitness's figures; a user's task
adds "source": its .npz and checkpoint, with their sha256); "test_*" are on the holdout half, test_ci95 is the Wilson
interval of test_accuracy, and "check" is the `gruq evaluate --split holdout`
command that re-derives test_accuracy and size_bytes exactly.

Everything is deterministic for a budget: the search for its seed, fine-tuning
for its per-genome seed, on one torch thread, in whichever worker process.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from gruq.errors import GruqError
from gruq.genome import MAX_BITS, MIN_BITS, Genome, ModelShape, bops, homogeneous, size_bytes
from gruq.tasks import NAMES

# (task, stage, done, total); stage is "search", "finetune" or "report"
Progress = Callable[[str, str, int, int], None]

SUMMARY = "summary.json"
MARGIN = 0.005  # the claim: within 0.5 pp of all-8-bit
SEARCH_SPLIT, SELECT_SPLIT, REPORT_SPLIT = "val", "select", "holdout"
EPS = 1e-9  # accuracies are multiples of 1/N: compare thresholds with a hair of slack

# Fitness of the search (issue 12): post-training accuracy on val ("ptq"), or val accuracy after one
# quantization-aware fine-tuning epoch of `Budget.search_finetune_samples` sequences ("finetuned").
FITNESSES = ("ptq", "finetuned")
FITNESS_CHOICES = (*FITNESSES, "compare")
SEARCH_FINETUNE_SAMPLES = 512
# CPU seconds of one "finetuned" scoring / one "ptq" scoring, per task, at SEARCH_FINETUNE_SAMPLES
# sequences per epoch: recorded once on this machine (reports/README.md says how; `measure_cost_ratio`
# re-measures it), so that a run's budget never depends on a clock.
COST_RATIO = {"smnist": 3.8, "vowels": 12.5, "har": 2.7, "ecg": 4.1}


# A task with no recorded ratio (a user's .npz): one fine-tuning sequence costs about TRAIN_COST scored
# validation sequences. Fit to COST_RATIO: (r - 1) x val / min(512, train) is 5.5 (smnist), 4.8 (vowels),
# 4.9 (har) and 6.1 (ecg); the layer count and hidden size weigh on scoring and training alike.
TRAIN_COST = 5.3


def cost_ratio(task: str, samples: int = SEARCH_FINETUNE_SAMPLES) -> float:
    """The recorded cost ratio of a fine-tuned scoring, scaled to `samples` sequences per epoch:
    scoring costs 1, the epoch's training the rest, in proportion to the sequences it sees.
    A task without a recorded ratio gets `1 + TRAIN_COST x trained / val sequences`, from its
    split sizes alone: a run's budget never depends on a clock."""
    if task in COST_RATIO:
        return 1 + (COST_RATIO[task] - 1) * samples / SEARCH_FINETUNE_SAMPLES
    from gruq import tasks

    data = tasks.load(task)
    return 1 + TRAIN_COST * min(samples, len(data.train)) / len(data.val)


@dataclass(frozen=True)
class Subject:
    """What one task's part of a report is about: a task and its float model.

    The four built-in tasks with their checkpoints in assets/, or one task of the
    user's (`Subject.resolve`): a .npz and the checkpoint `gruq import` made of their model."""

    name: str  # the report's key: summary.json's tasks, tasks/<name>/, figures/<name>_*.png
    task: str  # what gruq.tasks.load takes: a built-in name, or a .npz's absolute path
    checkpoint: str | None = None  # the float checkpoint's absolute path; None: the task's own in assets/

    @property
    def own(self) -> bool:
        """A user's task or model, rather than a built-in task with its shipped checkpoint."""
        return self.checkpoint is not None or self.task not in NAMES

    def source(self) -> dict[str, Any]:
        """summary.json's record of what was run (a user's subject only): files and their sha256."""
        from gruq.scheme_model import base_sha256, file_sha256

        return {
            "task": self.task,
            "checkpoint": self.checkpoint,
            "task_sha256": None if self.task in NAMES else file_sha256(self.task),
            "checkpoint_sha256": base_sha256(self.task, self.checkpoint),
        }

    @classmethod
    def resolve(cls, task: str, checkpoint: str | None = None) -> Subject:
        """A task (built-in name or .npz path) and its float checkpoint, checked as `gruq evaluate`
        checks them (`gruq.evaluate.load`: a missing checkpoint, or one made for other data, is a
        GruqError); paths made absolute, so the report's commands work from any folder."""
        from gruq.evaluate import load

        name = str(task).strip()
        ckpt = os.path.abspath(os.path.expanduser(str(checkpoint))) if checkpoint else None
        data, _ = load(name, ckpt)
        spec = name.lower() if name.lower() in NAMES else os.path.abspath(os.path.expanduser(name))
        return cls(data.name, spec, ckpt)


@dataclass(frozen=True)
class Budget:
    """Everything that fixes a reproduce run's numbers.

    The defaults were chosen on select figures only (reports/README.md, "How the
    default budget was chosen", from `gruq.report.BUDGET_CHOICE`), to finish all
    four tasks for three seeds on this shared 2-core machine well within 90
    minutes: most of the time goes to fine-tuning, which is what buys accuracy.
    """

    pop: int = 32  # NSGA-II population
    gens: int = 20  # generations, the initial one included
    seed: int = 0  # the first seed: search seed and fine-tuning seed
    seeds: int = 3  # seeds seed, seed+1, ...: the whole pipeline runs once per seed
    finetune_epochs: int = 10  # epochs of quantization-aware fine-tuning per genome
    finetune_samples: int | None = 2048  # training sequences per epoch, a fresh seeded subset (None: all)
    finetune_select: str | None = "val"  # keep the epoch (0 included) best on validation; None: the last
    front_size: int = 12  # front members fine-tuned at most, per fitness (best-spread subset of a larger front)
    workers: int = 2  # processes for scoring and fine-tuning; results do not depend on it
    fitness: str = "compare"  # the search's fitness: "ptq", "finetuned" or "compare" (both; the better on select)
    search_finetune_samples: int = SEARCH_FINETUNE_SAMPLES  # sequences of the one epoch per candidate ("finetuned")
    finetuned_pop: int = 16  # population of the fine-tuned-fitness search (its budget is scorings, see below)

    def __post_init__(self) -> None:
        checks = (
            ("pop", self.pop, 4),
            ("gens", self.gens, 1),
            ("finetune_epochs", self.finetune_epochs, 0),
            ("front_size", self.front_size, 2),
            ("workers", self.workers, 1),
            ("seed", self.seed, 0),
            ("seeds", self.seeds, 1),
            ("search_finetune_samples", self.search_finetune_samples, 1),
            ("finetuned_pop", self.finetuned_pop, 4),
        )
        for name, value, low in checks:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise GruqError(f"budget {name} must be an integer of at least {low}; got {value!r}")
        if self.finetune_samples is not None and (
            isinstance(self.finetune_samples, bool)
            or not isinstance(self.finetune_samples, int)
            or self.finetune_samples < 1
        ):
            raise GruqError(
                f"budget finetune_samples must be a positive integer or None; got {self.finetune_samples!r}"
            )
        if self.finetune_select not in (None, "val"):
            raise GruqError(f"budget finetune_select must be 'val' or None; got {self.finetune_select!r}")
        if self.fitness not in FITNESS_CHOICES:
            raise GruqError(f"budget fitness must be one of {', '.join(FITNESS_CHOICES)}; got {self.fitness!r}")

    @property
    def variants(self) -> list[str]:
        """The searches run per task and seed: one fitness, or both to compare."""
        return list(FITNESSES) if self.fitness == "compare" else [self.fitness]

    def finetuned_scorings(self, task: str) -> int:
        """The fine-tuned-fitness search's budget in scorings: the post-training search's
        nominal pop x gens scorings divided by the recorded cost ratio (`cost_ratio`), so
        both searches get the same time without a run's result depending on a clock."""
        return max(self.finetuned_pop, round(self.pop * self.gens / cost_ratio(task, self.search_finetune_samples)))

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seed, self.seed + self.seeds))

    def to_dict(self, tasks: dict[str, str] | None = None) -> dict[str, Any]:
        """The budget as recorded in summary.json, with the fixed settings spelled out;
        `tasks`: report name -> task loaded (default: the four built-in tasks)."""
        from gruq.train import FINETUNE_BATCH, FINETUNE_LR

        tasks = tasks or {t: t for t in NAMES}
        return {
            **asdict(self),
            "finetuned_cost_ratio": {n: cost_ratio(t, self.search_finetune_samples) for n, t in tasks.items()},
            "finetuned_scorings": {n: self.finetuned_scorings(t) for n, t in tasks.items()},
            "objective": "size",
            "search_split": SEARCH_SPLIT,
            "select_split": SELECT_SPLIT,
            "report_split": REPORT_SPLIT,
            "margin_pp": 100 * MARGIN,
            "finetune_lr": FINETUNE_LR,
            "finetune_batch": FINETUNE_BATCH,
        }

    def batch(self, train_size: int) -> int:
        """The fine-tuning batch a task with `train_size` training sequences gets."""
        from gruq.train import finetune_batch

        n = train_size if self.finetune_samples is None else min(self.finetune_samples, train_size)
        return finetune_batch(n)

    def recipe(self, subject: Subject, genome: Sequence[int], seed: int):
        """The model (`gruq.scheme_model.SchemeModel`) every candidate of seed `seed` gets."""
        from gruq.scheme_model import FineTuning, SchemeModel

        ft = (
            FineTuning(self.finetune_epochs, seed, self.finetune_samples, self.finetune_select, where="front")
            if self.finetune_epochs > 0
            else None
        )
        return SchemeModel(subject.task, tuple(genome), subject.checkpoint, None, ft)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Budget:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def measure_cost_ratio(task: str, samples: int = SEARCH_FINETUNE_SAMPLES, genomes: int = 16, seed: int = 0) -> float:
    """CPU seconds of scoring `genomes` random genomes on val after one fine-tuning epoch of `samples`
    sequences / of scoring them post-training, both in chunks of 4 (as the searches score) on one
    thread: how COST_RATIO was recorded. Not called by a run (a run's budget must not depend on a clock)."""
    import random

    import torch

    from gruq.evaluate import Evaluator, load

    load(task)  # loading is not scoring
    rng = random.Random(seed)
    population = [tuple(rng.randint(MIN_BITS, MAX_BITS) for _ in range(17)) for _ in range(genomes)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cost = []
        for epochs in (0, 1):
            ev = Evaluator(task, "val", finetune_epochs=epochs, seed=seed, finetune_samples=samples)
            start = time.process_time()
            for i in range(0, genomes, 4):
                ev.accuracy(population[i : i + 4])
            cost.append(time.process_time() - start)
    finally:
        torch.set_num_threads(threads)
    return cost[1] / cost[0]


def check_command(subject: Subject, bits: Sequence[int], budget: Budget, seed: int | None = None) -> str:
    """The `gruq evaluate` command line that re-derives a reported (holdout) accuracy and size
    (with `--checkpoint` when the subject has its own)."""
    return budget.recipe(subject, bits, budget.seed if seed is None else seed).command(REPORT_SPLIT)


# ---------------------------------------------------------------- fine-tuning jobs


def _finetune_job(job: tuple[Subject, Genome, dict, int]) -> dict:
    """One candidate's model (`Budget.recipe`), built and scored on val, select and holdout:
    exactly what `gruq evaluate` with the same options computes, on any process.
    Right/wrong per sequence is kept for paired intervals."""
    from gruq.scheme_model import weights_sha256

    subject, genome, budget_dict, seed = job
    start = time.process_time()
    recipe = Budget.from_dict(budget_dict).recipe(subject, genome, seed)
    ckpt = recipe.build()
    out = {"bits": list(genome), "weights_sha256": weights_sha256(ckpt)}
    for split in (SEARCH_SPLIT, SELECT_SPLIT, REPORT_SPLIT):
        out[split] = recipe.correct(split, ckpt).tolist()
    out["cpu_seconds"] = time.process_time() - start
    return out


@contextmanager
def _pool(workers: int) -> Iterator[Callable]:
    """An unordered `map` over fine-tuning jobs: in-process, or a spawned pool."""
    if workers <= 1:
        yield map
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        yield pool.imap_unordered


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the search's pool)."""
    import resource

    return sum(
        resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )


# ---------------------------------------------------------------- front selection


def spread_subset(points: Sequence[tuple[float, float]], k: int) -> list[int]:
    """Indices of `k` well-spread points of a front given as (normalised size, accuracy).

    Both ends of the front (smallest, most accurate) first, then repeatedly the
    point farthest from those chosen (ties: the earlier index). Deterministic.
    """
    n = len(points)
    if n <= k:
        return list(range(n))
    first = min(range(n), key=lambda i: (points[i][0], -points[i][1]))
    last = max(range(n), key=lambda i: (points[i][1], -points[i][0]))
    chosen = list(dict.fromkeys([first, last]))
    dist = [min(math.dist(points[i], points[c]) for c in chosen) for i in range(n)]
    while len(chosen) < k:
        best = max((i for i in range(n) if i not in chosen), key=lambda i: (dist[i], -i))
        chosen.append(best)
        dist = [min(d, math.dist(points[i], points[best])) for i, d in enumerate(dist)]
    return sorted(chosen)


# ---------------------------------------------------------------- figures of merit


def hypervolume(points: Sequence[tuple[float, float]], size8: float) -> float:
    """Hypervolume of (accuracy, size) points, size normalised by size8, reference (0, size8)."""
    from gruq.search.hypervolume import hypervolume as hv

    return hv(points, size8)


def smallest_within(candidates: Sequence[dict], key: str, reference: float, margin: float) -> dict:
    """The smallest candidate whose `key` accuracy is at least reference - margin
    (ties: the more accurate, then the lower bits). The all-8-bit genome always qualifies."""
    ok = [c for c in candidates if c[key] is not None and c[key] >= reference - margin - EPS]
    if not ok:
        raise GruqError("no candidate reaches the reference accuracy (the all-8-bit genome should)")
    return min(ok, key=lambda c: (c["size_bytes"], -c[key], c["bits"]))


def make_pick(c: dict, ref: dict, size8: float, subject: Subject, budget: Budget, seed: int) -> dict:
    """summary.json's pick: chosen on select, reported on holdout, with intervals and its check."""
    from gruq.stats import paired_diff, wilson_acc

    n = len(c["correct"][REPORT_SPLIT])
    lo, hi = paired_diff(c["correct"][REPORT_SPLIT], ref["correct"][REPORT_SPLIT])
    return {
        "bits": list(c["bits"]),
        "selected_on": SELECT_SPLIT,
        "select_accuracy": c["ft_select"],
        "select_acc8": ref["ft_select"],
        "test_accuracy": c["ft_test"],
        "test_acc8": ref["ft_test"],
        "test_delta_pp": 100 * (c["ft_test"] - ref["ft_test"]),
        "test_ci95": list(wilson_acc(c["ft_test"], n)),
        "size_bytes": c["size_bytes"],
        "reduction": 1 - c["size_bytes"] / size8,
        "check": check_command(subject, c["bits"], budget, seed),
        # beyond the keys, in result.json only
        "test_delta_ci95_pp": [100 * lo, 100 * hi],
        "weights_sha256": c["weights_sha256"],
    }


PICK_KEYS = (
    "bits",
    "selected_on",
    "select_accuracy",
    "select_acc8",
    "test_accuracy",
    "test_acc8",
    "test_delta_pp",
    "test_ci95",
    "size_bytes",
    "reduction",
    "check",
)


# ---------------------------------------------------------------- one task, one seed


def _genome_row(bits: Sequence[int], shape: ModelShape) -> dict:
    g = tuple(int(b) for b in bits)
    return {"bits": list(g), "size_bytes": size_bytes(g, shape), "bops": bops(g, shape)}


def _mean(xs: Sequence[bool]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _search(
    subject: Subject, budget: Budget, fitness: str, seed: int, db: Path, shape: ModelShape, search_bar: bool
) -> dict:
    """One search of a task and seed with one fitness; its front (sorted by size) and what it cost.

    "ptq": NSGA-II for pop x gens generations, post-training accuracy on val.
    "finetuned": the same search, each candidate scored on val after one fine-tuning
    epoch, for `Budget.finetuned_scorings` distinct scorings (the same time, by the
    recorded cost ratio), population `Budget.finetuned_pop`."""
    from gruq.search import run as search_run
    from gruq.search.config import SearchConfig

    common = {
        "task": subject.task,
        "checkpoint": subject.checkpoint,
        "seed": seed,
        "objective": "size",
        "workers": budget.workers,
        "chunk_size": 4,
    }
    if fitness == "ptq":
        cfg = SearchConfig(pop=budget.pop, gens=budget.gens, **common)
    else:
        cfg = SearchConfig(
            pop=budget.finetuned_pop,
            gens=None,
            budget=budget.finetuned_scorings(subject.task),
            finetune_epochs=1,
            finetune_samples=budget.search_finetune_samples,
            **common,
        )
    started, cpu = time.perf_counter(), _cpu()
    result = search_run.start(db, cfg, progress=search_bar)
    front = [{**_genome_row(m["bits"], shape), "fitness_val": m["accuracy"]} for m in result["front"]]
    front.sort(key=lambda r: (r["size_bytes"], -r["fitness_val"], r["bits"]))
    return {
        "fitness": fitness,
        "front": front,
        "run_id": result["run_id"],
        "evaluations": result["evaluations"],
        "hypervolume_val": result["hypervolume"],
        "seconds": time.perf_counter() - started,
        "cpu_seconds": _cpu() - cpu,
    }


def _better(results: dict[str, dict]) -> str:
    """The fitness whose candidates did better on select: the larger pick reduction, then the
    larger select hypervolume of its fine-tuned front, then the cheaper (post-training) one."""
    order = {f: i for i, f in enumerate(FITNESSES)}
    return max(results, key=lambda f: (results[f]["pick_reduction"], results[f]["hv_select"], -order[f]))


def run_task(
    subject: Subject,
    budget: Budget,
    out: Path,
    finetune_map: Callable,
    progress: Progress | None = None,
    search_bar: bool = False,
    seed: int | None = None,
) -> dict:
    """Search (once per fitness), fine-tune, pick and score one task for one seed; returns its record."""
    from gruq.evaluate import accuracies, load

    seed = budget.seed if seed is None else seed
    notify = progress or (lambda *a: None)
    task = subject.name
    data, ckpt = load(subject.task, subject.checkpoint)
    shape = data.shape
    size8 = size_bytes(homogeneous(MAX_BITS, shape.layers), shape)
    size2 = size_bytes(homogeneous(MIN_BITS, shape.layers), shape)
    sizes = {s: len(data.split(s)) for s in (SEARCH_SPLIT, SELECT_SPLIT, REPORT_SPLIT)}

    # 1. the searches on validation, one per fitness
    searches: dict[str, dict] = {}
    for i, fitness in enumerate(budget.variants):
        notify(task, "search", i, len(budget.variants))
        searches[fitness] = _search(subject, budget, fitness, seed, out / "search.db", shape, search_bar)
    notify(task, "search", len(budget.variants), len(budget.variants))

    # 2. which front members are fine-tuned (chosen on the search's own val scores)
    for s in searches.values():
        front = s["front"]
        chosen = set(spread_subset([(r["size_bytes"] / size8, r["fitness_val"]) for r in front], budget.front_size))
        for i, r in enumerate(front):
            r["selected"] = i in chosen
    base = [
        {**_genome_row(homogeneous(b, shape.layers), shape), "label": f"all {b}-bit"}
        for b in range(MIN_BITS, MAX_BITS + 1)
    ]
    todo: list[Genome] = list(
        dict.fromkeys(
            [tuple(r["bits"]) for r in base]
            + [tuple(r["bits"]) for s in searches.values() for r in s["front"] if r["selected"]]
        )
    )

    # 3. post-training figures, for the comparison
    fronts = [r for s in searches.values() for r in s["front"]]
    every = list(dict.fromkeys([tuple(r["bits"]) for r in fronts + base]))
    ptq_val = dict(zip(every, accuracies(ckpt, every, data.val)))
    ptq_test = dict(zip(todo, accuracies(ckpt, todo, data.split(REPORT_SPLIT))))

    # 4. fine-tune every candidate once (the same recipe), score on val, select, holdout
    started_ft = time.perf_counter()
    jobs = [(subject, g, asdict(budget), seed) for g in todo]
    tuned: dict[Genome, dict] = {}
    notify(task, "finetune", 0, len(jobs))
    for res in finetune_map(_finetune_job, jobs):
        tuned[tuple(res["bits"])] = res
        notify(task, "finetune", len(tuned), len(jobs))
    finetune_seconds = time.perf_counter() - started_ft

    for r in fronts + base:
        g = tuple(r["bits"])
        r["ptq_val"] = ptq_val[g]
        r["ptq_test"] = ptq_test.get(g)
        t = tuned.get(g)
        r["ft_val"] = _mean(t[SEARCH_SPLIT]) if t else None
        r["ft_select"] = _mean(t[SELECT_SPLIT]) if t else None
        r["ft_test"] = _mean(t[REPORT_SPLIT]) if t else None
        r["ft_cpu_seconds"] = t["cpu_seconds"] if t else None
        r["weights_sha256"] = t["weights_sha256"] if t else None

    # 5. per fitness: the pick, on select; figures of merit, on holdout; the better fitness, on select
    def candidate(r: dict) -> dict:
        t = tuned[tuple(r["bits"])]
        return {**r, "correct": {s: t[s] for s in (SELECT_SPLIT, REPORT_SPLIT)}}

    ref = candidate(base[-1])
    results: dict[str, dict] = {}
    for fitness, s in searches.items():
        fronted = [r for r in s["front"] if r["selected"]]
        candidates = [candidate(r) for r in fronted + base]
        pick = make_pick(
            smallest_within(candidates, "ft_select", ref["ft_select"], MARGIN), ref, size8, subject, budget, seed
        )
        peek = smallest_within(candidates, "ft_test", ref["ft_test"], MARGIN)
        results[fitness] = {
            "pick": pick,
            "pick_reduction": pick["reduction"],  # decided on select
            "hv_select": hypervolume([(r["ft_select"], r["size_bytes"]) for r in fronted], size8),
            "hv_mixed": hypervolume([(r["ft_test"], r["size_bytes"]) for r in fronted], size8),
            "hv_mixed_ptq": hypervolume([(r["ptq_test"], r["size_bytes"]) for r in fronted], size8),
            "hv_union": hypervolume([(r["ft_test"], r["size_bytes"]) for r in fronted + base], size8),
            # for comparison only (never a reported claim): the pick test data would have made
            "pick_if_chosen_on_test": {"bits": peek["bits"], "reduction": 1 - peek["size_bytes"] / size8},
            "search": {
                "run_id": s["run_id"],
                "evaluations": s["evaluations"],
                "hypervolume_val": s["hypervolume_val"],
                "front_members": len(s["front"]),
                "finetuned_members": len(fronted),
                "seconds": s["seconds"],
                "cpu_seconds": s["cpu_seconds"],
            },
        }
    used = _better(results)
    best = results[used]
    record: dict[str, Any] = {
        "task": task,
        "seed": seed,
        "shape": asdict(shape),
        "sequences": sizes,
        "float_test": ckpt.meta.get("test_accuracy"),
        "float_val": ckpt.meta.get("val_accuracy"),
        "acc8": ref["ft_test"],
        "acc8_select": ref["ft_select"],
        "acc8_val": ref["ft_val"],
        "acc8_ptq": base[-1]["ptq_test"],
        "size8": size8,
        "size_cap": size2,
        "cap_reduction": 1 - size2 / size8,
        "fitness": {
            "used": used,
            "decided_on": SELECT_SPLIT,
            "rule": "larger pick reduction on select, then larger select hypervolume of the fine-tuned front",
            "variants": results,
        },
        "hv_mixed": best["hv_mixed"],
        "hv_homogeneous": hypervolume([(r["ft_test"], r["size_bytes"]) for r in base], size8),
        "hv_union": best["hv_union"],
        "hv_mixed_ptq": best["hv_mixed_ptq"],
        "hv_homogeneous_ptq": hypervolume([(r["ptq_test"], r["size_bytes"]) for r in base], size8),
        "pick": best["pick"],
        "pick_if_chosen_on_test": best["pick_if_chosen_on_test"],
    }
    record["search"] = {**best["search"], "db": str(out / "search.db"), "fitness": used}
    record["finetune"] = {
        "batch": budget.batch(len(data.train)),
        "train_sequences": len(data.train),
        "sequences_per_epoch": len(data.train)
        if budget.finetune_samples is None
        else min(budget.finetune_samples, len(data.train)),
    }
    record["seconds"] = {
        "search": sum(s["seconds"] for s in searches.values()),
        "finetune": finetune_seconds,
        "search_cpu": sum(s["cpu_seconds"] for s in searches.values()),
        "finetune_cpu": sum(v["cpu_seconds"] for v in tuned.values()),
        "finetune_jobs": len(jobs),
        **{f"search_{f}": s["seconds"] for f, s in searches.items()},
        **{f"search_cpu_{f}": s["cpu_seconds"] for f, s in searches.items()},
    }
    record["front"], record["baselines"] = searches[used]["front"], base
    record["fronts"] = {f: s["front"] for f, s in searches.items()}
    return record


def summary_entry(records: Sequence[dict]) -> dict:
    """A task's entry of summary.json (exactly the issue's keys) from its per-seed records."""
    first = records[0]
    seeds = [
        {
            "seed": r["seed"],
            "hv_mixed": r["hv_mixed"],
            "hv_homogeneous": r["hv_homogeneous"],
            "pick": {k: r["pick"][k] for k in PICK_KEYS},
            "fitness": fitness_entry(r),
        }
        for r in records
    ]
    variants = list(seeds[0]["fitness"]["variants"])
    return {
        "size8": first["size8"],
        "size_cap": first["size_cap"],
        "seeds": seeds,
        "reduction_mean": statistics.fmean(s["pick"]["reduction"] for s in seeds),
        "test_delta_pp_mean": statistics.fmean(s["pick"]["test_delta_pp"] for s in seeds),
        # beyond the keys: each fitness's own figures, as if it had been the only one
        "fitness": {
            f: {
                "reduction_mean": statistics.fmean(s["fitness"]["variants"][f]["reduction"] for s in seeds),
                "test_delta_pp_mean": statistics.fmean(s["fitness"]["variants"][f]["test_delta_pp"] for s in seeds),
                "hv_mixed_mean": statistics.fmean(s["fitness"]["variants"][f]["hv_mixed"] for s in seeds),
                "used_on_seeds": [s["seed"] for s in seeds if s["fitness"]["used"] == f],
            }
            for f in variants
        },
    }


def fitness_entry(record: dict) -> dict:
    """summary.json's per-seed comparison of the searches' fitnesses: which one was used (decided
    on select), and for each its pick, hypervolumes and the time its search took (wall and CPU)."""
    fit = record["fitness"]
    return {
        "used": fit["used"],
        "decided_on": fit["decided_on"],
        "variants": {
            f: {
                "bits": v["pick"]["bits"],
                "reduction": v["pick"]["reduction"],
                "select_accuracy": v["pick"]["select_accuracy"],
                "test_accuracy": v["pick"]["test_accuracy"],
                "test_delta_pp": v["pick"]["test_delta_pp"],
                "check": v["pick"]["check"],
                "hv_select": v["hv_select"],
                "hv_mixed": v["hv_mixed"],
                "evaluations": v["search"]["evaluations"],
                "search_seconds": v["search"]["seconds"],
                "search_cpu_seconds": v["search"]["cpu_seconds"],
            }
            for f, v in fit["variants"].items()
        },
    }


# ---------------------------------------------------------------- files


FRONT_COLUMNS = (
    "bits",
    "size_bytes",
    "bops",
    "selected",
    "fitness_val",
    "ptq_val",
    "ptq_test",
    "ft_val",
    "ft_select",
    "ft_test",
    "cluster",
)
BASE_COLUMNS = ("label", "bits", "size_bytes", "bops", "ptq_val", "ptq_test", "ft_val", "ft_select", "ft_test")


def _write_csv(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow(
                [",".join(map(str, r[c])) if c == "bits" else ("" if r.get(c) is None else r.get(c)) for c in columns]
            )


def write_task(out: Path, task: str, records: Sequence[dict]) -> None:
    """reports/tasks/<task>/: result.json ({"task", "seeds": [record, ...]}), and per seed
    front_seed<S>.csv (the front of the fitness used), front_seed<S>_<fitness>.csv (each fitness's,
    when they were compared), baselines_seed<S>.csv (ptq_test and ft_test: holdout half of test)."""
    d = out / "tasks" / task
    d.mkdir(parents=True, exist_ok=True)
    for old in list(d.glob("front*.csv")) + list(d.glob("baselines*.csv")):
        old.unlink()
    (d / "result.json").write_text(json.dumps({"task": task, "seeds": list(records)}, indent=1) + "\n")
    for r in records:
        _write_csv(d / f"front_seed{r['seed']}.csv", r["front"], FRONT_COLUMNS)
        fronts = r.get("fronts", {})
        for fitness, rows in fronts.items() if len(fronts) > 1 else ():
            _write_csv(d / f"front_seed{r['seed']}_{fitness}.csv", rows, FRONT_COLUMNS)
        _write_csv(d / f"baselines_seed{r['seed']}.csv", r["baselines"], BASE_COLUMNS)


def load_task(out: str | Path, task: str) -> list[dict]:
    """A task's per-seed records, as written by `reproduce`."""
    path = Path(out) / "tasks" / task / "result.json"
    if not path.is_file():
        raise GruqError(f"no reproduce result for {task} in {out}; run: python -m gruq reproduce --out {out}")
    data = _read_json(path, out)
    if "seeds" not in data:
        raise GruqError(f"{path} was written by an older gruq; run: python -m gruq reproduce --out {out}")
    _check(path, out, data, _RESULT)
    return data["seeds"]


def _read_json(path: Path, out: str | Path) -> dict:
    """A report file as a dict, or one line saying it is not one (a truncated or hand-edited
    file reads as a refusal, not as a parser's traceback)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GruqError(
            f"{path} cannot be read as a report ({exc}); run: python -m gruq reproduce --out {out}"
        ) from None
    if not isinstance(data, dict):
        raise GruqError(f"{path} is not a gruq report; run: python -m gruq reproduce --out {out}")
    return data


def load_summary(out: str | Path) -> dict:
    """summary.json of a report, with every key the Reproduce page reads, or one line saying why not."""
    path = Path(out) / SUMMARY
    if not path.is_file():
        raise GruqError(f"no {SUMMARY} in {out}; run: python -m gruq reproduce --out {out}")
    summary = _read_json(path, out)
    tasks = summary.get("tasks")
    if isinstance(tasks, dict) and any(isinstance(t, dict) and "seeds" not in t for t in tasks.values()):
        raise GruqError(f"{path} was written by an older gruq; run: python -m gruq reproduce --out {out}")
    budget = summary.get("budget")
    searched_finetuned = isinstance(budget, dict) and budget.get("fitness", "ptq") != "ptq"
    _check(path, out, summary, {**_SUMMARY, "budget": _BUDGET | _FINETUNED_SEARCH} if searched_finetuned else _SUMMARY)
    return summary


# What the Reproduce page reads of a report, key by key: a hand-edited file that lacks one (or
# holds text where a number belongs) is refused in one line here, not met as a KeyError there.
# A kind is (test, words); in a dict, "key?" may be absent (or null), "[]" describes each item
# of a list and "{}" each value of an object; such a list or object may not be empty (a report
# has tasks, a task seeds, a pick bits).
_Kind = tuple[Callable[[Any], bool], str]
_NUMBER: _Kind = (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number")
_TEXT: _Kind = (lambda v: isinstance(v, str), "text")
_PAIR: _Kind = (lambda v: isinstance(v, list) and len(v) == 2 and all(_NUMBER[0](x) for x in v), "two numbers")
_PICK = {k: _NUMBER for k in ("test_accuracy", "test_acc8", "test_delta_pp", "size_bytes", "reduction")}
_PICK |= {"bits": {"[]": _NUMBER}, "test_ci95": _PAIR, "check": _TEXT}
_SEED = {"seed": _NUMBER, "hv_mixed": _NUMBER, "hv_homogeneous": _NUMBER, "pick": _PICK, "fitness?": {"used?": _TEXT}}
_TASK = {"seeds": {"[]": _SEED}, "reduction_mean": _NUMBER, "test_delta_pp_mean": _NUMBER}
_BUDGET = {k: _NUMBER for k in ("pop", "gens", "finetune_epochs", "seed", "workers", "front_size")}
_FINETUNED_SEARCH = {"search_finetune_samples": _NUMBER, "finetuned_pop": _NUMBER}  # when "fitness" is not "ptq"
_SUMMARY = {
    "budget": _BUDGET,
    "wall_seconds": _NUMBER,
    "tasks": {"{}": _TASK},
    "source?": {"task": _TEXT, "checkpoint?": _TEXT},
}
_RECORD = {
    "seed": _NUMBER,
    "sequences?": {"holdout": _NUMBER},
    "pick?": {"test_delta_ci95_pp?": _PAIR},
    "widths": {"statement": _TEXT},
}
_RESULT = {"seeds": {"[]": _RECORD}}
_ABSENT = object()


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _wrong(value: Any, spec: Any, where: str) -> str | None:
    """Where `value` departs from `spec` ("tasks.ecg.seeds[0].pick is missing"), None if nowhere."""
    if value is _ABSENT:
        return f"{where} is missing"
    if isinstance(spec, tuple):
        return None if spec[0](value) else f"{where} is not {spec[1]}"
    if "[]" in spec:
        if not isinstance(value, list):
            return f"{where} is not a list"
        if not value:
            return f"{where} is empty"
        return next((w for i, v in enumerate(value) if (w := _wrong(v, spec["[]"], f"{where}[{i}]"))), None)
    if not isinstance(value, dict):
        return f"{where} is not an object"
    if "{}" in spec:
        if not value:
            return f"{where} is empty"
        return next((w for k, v in value.items() if (w := _wrong(v, spec["{}"], _at(where, k)))), None)
    for key, kind in spec.items():
        name = key.removesuffix("?")
        v = value.get(name, _ABSENT)
        if key.endswith("?") and (v is _ABSENT or v is None):
            continue
        if w := _wrong(v, kind, _at(where, name)):
            return w
    return None


def _check(path: Path, out: str | Path, data: dict, spec: dict) -> None:
    """Refuse, in one line naming the first wrong key, a report the page cannot read."""
    wrong = _wrong(data, spec, "")
    if wrong:
        raise GruqError(f"{path} is not a gruq report ({wrong}); run: python -m gruq reproduce --out {out}")


# ---------------------------------------------------------------- the whole run


def _subjects(tasks: Sequence[str], checkpoint: str | None = None) -> list[Subject]:
    """What a run reports on: built-in tasks with their shipped checkpoints, or one task of
    the user's (a .npz, a `checkpoint` of their own, or both), alone; checked before any work."""
    tasks = list(dict.fromkeys(tasks))
    if not tasks:
        raise GruqError("reproduce needs at least one task")
    if checkpoint is None and all(t in NAMES for t in tasks):
        from gruq.model import checkpoint_path

        missing = [t for t in tasks if not checkpoint_path(t).is_file()]
        if missing:
            raise GruqError(
                f"no float checkpoint for {', '.join(missing)}; run: python -m gruq train --task {missing[0]}"
            )
        return [Subject(t, t) for t in tasks]
    if len(tasks) > 1:
        raise GruqError(
            f"reproduce runs built-in tasks ({', '.join(NAMES)}) together, but a task file or a checkpoint "
            f"of your own alone; got {', '.join(tasks)}"
        )
    return [Subject.resolve(tasks[0], checkpoint)]


def reproduce(
    out_dir: str | Path,
    tasks: Sequence[str] = NAMES,
    budget: Budget | None = None,
    progress: Progress | None = None,
    search_bar: bool = False,
    checkpoint: str | None = None,
) -> dict:
    """Run the whole reproduction into `out_dir`, every seed; return the summary (also summary.json).

    `tasks`: built-in tasks, or one task of the user's (a .npz path) alone; `checkpoint`:
    that one task's float model (an imported one, say; default: the task's own in assets/).

    Writes summary.json, tasks/<task>/{result.json, front_seed<S>.csv,
    baselines_seed<S>.csv}, figures/<task>_front.png and figures/<task>_bits.png
    (first seed), and README.md (a user's task is named by its file's stem, and
    summary.json's "source" names its files and their sha256). Seeds run one after
    the other, all tasks each; every finished (task, seed) is kept in <out>/.partial/
    until the end, so a run interrupted and started again with the same budget (or
    fewer seeds) and the same files does only what is left.
    """
    from gruq import report

    budget = budget or Budget()
    subjects = _subjects(tasks, checkpoint)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GruqError(f"cannot write the report into {out}: {exc.strerror or exc}") from None
    started = time.perf_counter()
    records: dict[str, list[dict]] = {s.name: [] for s in subjects}
    with _pool(budget.workers) as finetune_map:
        for seed in budget.seed_list:  # seed-major: an interrupted run leaves whole seeds behind
            for subject in subjects:
                record = _done(out, budget, subject, seed)
                if record is None:
                    task_started = time.perf_counter()
                    label = f"{subject.name} seed {seed}" if budget.seeds > 1 else subject.name
                    record = run_task(subject, budget, out, finetune_map, _relabel(progress, label), search_bar, seed)
                    record["seconds"]["total"] = time.perf_counter() - task_started
                    _keep(out, budget, subject, record)
                report.analyse(record)
                records[subject.name].append(record)
    for task in records:
        if progress:
            progress(task, "report", 0, 1)
        report.figures(out, records[task][0])
        write_task(out, task, records[task])
        if progress:
            progress(task, "report", 1, 1)
    summary = {
        "tasks": {t: summary_entry(rs) for t, rs in records.items()},
        "budget": budget.to_dict({s.name: s.task for s in subjects}),
        "wall_seconds": time.perf_counter() - started,
    }
    if any(s.own for s in subjects):
        summary["source"] = subjects[0].source()
    (out / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")
    report.write_readme(out, summary, records)
    import shutil

    shutil.rmtree(out / PARTIAL, ignore_errors=True)
    return summary


PARTIAL = ".partial"  # finished (task, seed) records of an unfinished reproduce, reused when it is run again


def _partial_key(budget: Budget, subject: Subject, seed: int) -> dict:
    """What a (task, seed) record depends on: the budget but for the seed count and workers, and the
    checkpoint; for a user's subject also the paths (its check commands name them) and the data's sha256."""
    from gruq.scheme_model import base_identity

    d = {k: v for k, v in asdict(budget).items() if k not in ("seeds", "workers", "seed")}
    key = {
        **d,
        "task": subject.task,
        "seed": seed,
        "checkpoint_sha256": base_identity(subject.task, subject.checkpoint),
    }
    if subject.own:
        key["source"] = subject.source()
    return key


def _partial_path(out: Path, name: str, seed: int) -> Path:
    return out / PARTIAL / f"{name}_seed{seed}.json"


def _done(out: Path, budget: Budget, subject: Subject, seed: int) -> dict | None:
    """The record of (task, seed) an interrupted earlier run of the same budget finished, if any."""
    path = _partial_path(out, subject.name, seed)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("key") != _partial_key(budget, subject, seed):
        return None
    record = data["record"]
    if "fronts" in record:  # JSON lost that "front" IS the used fitness's front: analyse labels it once
        record["fronts"][record["search"]["fitness"]] = record["front"]
    return record


def _keep(out: Path, budget: Budget, subject: Subject, record: dict) -> None:
    path = _partial_path(out, subject.name, record["seed"])
    path.parent.mkdir(exist_ok=True)
    key = _partial_key(budget, subject, record["seed"])
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"key": key, "record": record}))
    tmp.replace(path)


def _relabel(progress: Progress | None, label: str) -> Progress | None:
    if progress is None:
        return None
    return lambda task, stage, done, total: progress(label, stage, done, total)
