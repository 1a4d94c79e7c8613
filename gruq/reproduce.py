"""Reproduce the published claim on the four tasks, with figures anyone can re-derive.

    reproduce("reports/", tasks=NAMES, budget=Budget(), progress=None) -> summary

Per task, with one documented budget (`Budget`) and seed:

1. NSGA-II search (accuracy after post-training quantization on the
   validation split, against model size), recorded in `<out>/search.db`.
2. The final front is fine-tuned: all of it, or, if it holds more than
   `front_size` genomes, the `front_size` best-spread ones (both ends of the
   front, then farthest-point picks in (size / all-8-bit size, accuracy)).
3. The seven homogeneous genomes (all 2-bit ... all 8-bit) get the same
   fine-tuning (`finetune_epochs` epochs, `finetune_samples` training
   sequences per epoch, fine-tuning seed `gruq.train.seed_for(genome, seed)`).
4. Every fine-tuned model is scored on the test split (and on validation, for
   the picks a user could make without seeing test data).

Definitions (summary.json):

- acc8: test accuracy of the all-8-bit genome after the same fine-tuning
  budget as every other genome, so that fine-tuning itself is not counted as
  a gain of mixed precision (the post-training all-8-bit figure, acc8_ptq,
  is in each task's result.json and in the README).
- size8, size_cap: model size of the all-8-bit and all-2-bit genomes (bytes);
  all-2-bit is the smallest size any genome reaches.
- hv_mixed: hypervolume of the fine-tuned front members (test accuracy
  against size / size8, reference point (accuracy 0, size8)); the front is
  the search's, so it holds whatever genomes the search kept, homogeneous
  ones included. hv_homogeneous: the same for the seven homogeneous genomes.
  The union of both is in result.json (hv_union).
- within_0.5pp / within_1pp: the smallest fine-tuned genome (front or
  homogeneous) whose test accuracy is at least acc8 - 0.5 pp (1 pp); ties go
  to the more accurate. Its "check" is the `python -m gruq evaluate` command
  that re-derives its accuracy and size exactly. The choice looks at test
  accuracies, as the claim is stated; result.json also holds the pick made
  on validation accuracies alone, with its test accuracy ("val_picks").

Everything is deterministic for a budget: the search for its seed, fine-tuning
for its per-genome seed, on one torch thread, in whichever worker process.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
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
THRESHOLDS = {"within_0.5pp": 0.005, "within_1pp": 0.01}
EPS = 1e-9  # accuracies are multiples of 1/N: compare thresholds with a hair of slack


@dataclass(frozen=True)
class Budget:
    """Everything that fixes a reproduce run's numbers.

    The defaults were chosen by measurement to finish all four tasks within
    an hour on an idle 2-core machine (see reports/README.md for the times).
    """

    pop: int = 40  # NSGA-II population
    gens: int = 30  # generations, the initial one included
    seed: int = 0  # search seed and fine-tuning seed
    finetune_epochs: int = 6  # epochs of quantization-aware fine-tuning per genome
    finetune_samples: int | None = 2048  # training sequences per epoch, a fresh seeded subset (None: all)
    finetune_select: str | None = "val"  # keep the epoch (0 included) best on validation; None: the last
    front_size: int = 20  # front members fine-tuned at most (best-spread subset of a larger front)
    workers: int = 2  # processes for scoring and fine-tuning; results do not depend on it

    def __post_init__(self) -> None:
        checks = (
            ("pop", self.pop, 4),
            ("gens", self.gens, 1),
            ("finetune_epochs", self.finetune_epochs, 0),
            ("front_size", self.front_size, 2),
            ("workers", self.workers, 1),
            ("seed", self.seed, 0),
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

    def to_dict(self) -> dict[str, Any]:
        """The budget as recorded in summary.json, with the fixed settings spelled out."""
        from gruq.train import FINETUNE_BATCH, FINETUNE_LR

        return {
            **asdict(self),
            "objective": "size",
            "search_split": "val",
            "report_split": "test",
            "finetune_lr": FINETUNE_LR,
            "finetune_batch": FINETUNE_BATCH,
        }

    def batch(self, train_size: int) -> int:
        """The fine-tuning batch a task with `train_size` training sequences gets."""
        from gruq.train import finetune_batch

        n = train_size if self.finetune_samples is None else min(self.finetune_samples, train_size)
        return finetune_batch(n)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Budget:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def check_command(task: str, bits: Sequence[int], budget: Budget) -> str:
    """The `gruq evaluate` command line that re-derives a reported accuracy and size."""
    cmd = (
        f"python -m gruq evaluate --task {task} --bits {','.join(map(str, bits))} --split test "
        f"--finetune-epochs {budget.finetune_epochs} --seed {budget.seed}"
    )
    if budget.finetune_samples is not None and budget.finetune_epochs > 0:
        cmd += f" --finetune-samples {budget.finetune_samples}"
    if budget.finetune_select is not None and budget.finetune_epochs > 0:
        cmd += f" --finetune-select {budget.finetune_select}"
    return cmd + " --json"


# ---------------------------------------------------------------- fine-tuning jobs


def _finetune_job(job: tuple[str, Genome, int, int, int | None, str | None]) -> tuple[Genome, float, float, float]:
    """(genome, validation accuracy, test accuracy, CPU seconds) after fine-tuning:
    exactly what `gruq evaluate --finetune-epochs E --seed S ...` computes, on any process."""
    from gruq.evaluate import accuracies, load, tuned

    task, genome, epochs, seed, samples, select = job
    start = time.process_time()
    data, ckpt = load(task)
    model = tuned(ckpt, genome, data, epochs, seed, samples, select)
    val = accuracies(model, [genome], data.val)[0]
    test = accuracies(model, [genome], data.test)[0]
    return genome, val, test, time.process_time() - start


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


def _pick(c: dict, key: str, size8: float, task: str, budget: Budget) -> dict:
    """A pick as summary.json reports it; post-training ("ptq_*") picks are checked without fine-tuning."""
    check_budget = Budget(**{**asdict(budget), "finetune_epochs": 0}) if key.startswith("ptq") else budget
    return {
        "bits": list(c["bits"]),
        "accuracy": c[key],
        "size_bytes": c["size_bytes"],
        "reduction": 1 - c["size_bytes"] / size8,
        "check": check_command(task, c["bits"], check_budget),
    }


# ---------------------------------------------------------------- one task


def _genome_row(bits: Sequence[int], shape: ModelShape) -> dict:
    g = tuple(int(b) for b in bits)
    return {"bits": list(g), "size_bytes": size_bytes(g, shape), "bops": bops(g, shape)}


def run_task(
    task: str,
    budget: Budget,
    out: Path,
    finetune_map: Callable,
    progress: Progress | None = None,
    search_bar: bool = False,
) -> dict:
    """Search, fine-tune and score one task; returns its full record (result.json)."""
    from gruq.evaluate import accuracies, load
    from gruq.search import run as search_run
    from gruq.search.config import SearchConfig

    notify = progress or (lambda *a: None)
    data, ckpt = load(task)
    shape = data.shape
    size8 = size_bytes(homogeneous(MAX_BITS), shape)
    size2 = size_bytes(homogeneous(MIN_BITS), shape)

    # 1. search on validation, post-training quantization
    started, cpu = time.perf_counter(), _cpu()
    notify(task, "search", 0, budget.gens)
    cfg = SearchConfig(
        task=task,
        pop=budget.pop,
        gens=budget.gens,
        seed=budget.seed,
        objective="size",
        workers=budget.workers,
        chunk_size=4,
    )
    db = out / "search.db"
    result = search_run.start(db, cfg, progress=search_bar)
    notify(task, "search", budget.gens, budget.gens)
    search_seconds, search_cpu = time.perf_counter() - started, _cpu() - cpu
    front = [{**_genome_row(m["bits"], shape), "ptq_val": m["accuracy"]} for m in result["front"]]
    front.sort(key=lambda r: (r["size_bytes"], -r["ptq_val"], r["bits"]))

    # 2. which front members are fine-tuned
    chosen = set(spread_subset([(r["size_bytes"] / size8, r["ptq_val"]) for r in front], budget.front_size))
    for i, r in enumerate(front):
        r["selected"] = i in chosen
    base = [{**_genome_row(homogeneous(b), shape), "label": f"all {b}-bit"} for b in range(MIN_BITS, MAX_BITS + 1)]

    # 3. post-training test accuracy of every genome that is fine-tuned (for the comparison)
    todo: list[Genome] = list(
        dict.fromkeys([tuple(r["bits"]) for r in base] + [tuple(r["bits"]) for r in front if r["selected"]])
    )
    ptq_test = dict(zip(todo, accuracies(ckpt, todo, data.test)))
    ptq_val_base = dict(
        zip([tuple(r["bits"]) for r in base], accuracies(ckpt, [tuple(r["bits"]) for r in base], data.val))
    )

    # 4. fine-tune everything once, score on validation and test
    started_ft = time.perf_counter()
    jobs = [
        (task, g, budget.finetune_epochs, budget.seed, budget.finetune_samples, budget.finetune_select) for g in todo
    ]
    tuned: dict[Genome, tuple[float, float, float]] = {}
    notify(task, "finetune", 0, len(jobs))
    for g, val, test, secs in finetune_map(_finetune_job, jobs):
        tuned[tuple(g)] = (float(val), float(test), float(secs))
        notify(task, "finetune", len(tuned), len(jobs))
    finetune_seconds = time.perf_counter() - started_ft

    for r in base:
        r["ptq_val"] = ptq_val_base[tuple(r["bits"])]
    for r in front + base:
        g = tuple(r["bits"])
        r["ptq_test"] = ptq_test.get(g)
        r["ft_val"], r["ft_test"], r["ft_cpu_seconds"] = tuned.get(g, (None, None, None))

    # 5. figures of merit
    acc8 = base[-1]["ft_test"]
    acc8_val = base[-1]["ft_val"]
    fronted = [r for r in front if r["selected"]]
    candidates = fronted + base
    record: dict[str, Any] = {
        "task": task,
        "shape": asdict(shape),
        "float_test": ckpt.meta.get("test_accuracy"),
        "float_val": ckpt.meta.get("val_accuracy"),
        "acc8": acc8,
        "acc8_ptq": base[-1]["ptq_test"],
        "acc8_val": acc8_val,
        "size8": size8,
        "size_cap": size2,
        "cap_reduction": 1 - size2 / size8,
        "hv_mixed": hypervolume([(r["ft_test"], r["size_bytes"]) for r in fronted], size8),
        "hv_homogeneous": hypervolume([(r["ft_test"], r["size_bytes"]) for r in base], size8),
        "hv_union": hypervolume([(r["ft_test"], r["size_bytes"]) for r in candidates], size8),
        "hv_mixed_ptq": hypervolume([(r["ptq_test"], r["size_bytes"]) for r in fronted], size8),
        "hv_homogeneous_ptq": hypervolume([(r["ptq_test"], r["size_bytes"]) for r in base], size8),
    }
    for name, margin in THRESHOLDS.items():
        record[name] = _pick(smallest_within(candidates, "ft_test", acc8, margin), "ft_test", size8, task, budget)
    record["val_picks"] = {}
    for name, margin in THRESHOLDS.items():
        c = smallest_within(candidates, "ft_val", acc8_val, margin)
        record["val_picks"][name] = {**_pick(c, "ft_test", size8, task, budget), "val_accuracy": c["ft_val"]}
    record["ptq_picks"] = {
        name: _pick(
            smallest_within(candidates, "ptq_test", record["acc8_ptq"], margin), "ptq_test", size8, task, budget
        )
        for name, margin in THRESHOLDS.items()
    }
    record["search"] = {
        "run_id": result["run_id"],
        "db": str(db),
        "evaluations": result["evaluations"],
        "hypervolume_val": result["hypervolume"],
        "front_members": len(front),
        "finetuned_members": len(fronted),
    }
    record["finetune"] = {
        "batch": budget.batch(len(data.train)),
        "train_sequences": len(data.train),
        "sequences_per_epoch": len(data.train)
        if budget.finetune_samples is None
        else min(budget.finetune_samples, len(data.train)),
    }
    record["seconds"] = {
        "search": search_seconds,
        "finetune": finetune_seconds,
        "search_cpu": search_cpu,
        "finetune_cpu": sum(v[2] for v in tuned.values()),
        "finetune_jobs": len(jobs),
    }
    record["front"], record["baselines"] = front, base
    return record


def summary_entry(record: dict) -> dict:
    """A task's entry of summary.json: exactly the keys the issue specifies."""
    keys = ("acc8", "size8", "size_cap", "hv_mixed", "hv_homogeneous", "within_0.5pp", "within_1pp")
    return {k: record[k] for k in keys}


# ---------------------------------------------------------------- files


FRONT_COLUMNS = ("bits", "size_bytes", "bops", "selected", "ptq_val", "ptq_test", "ft_val", "ft_test", "cluster")
BASE_COLUMNS = ("label", "bits", "size_bytes", "bops", "ptq_val", "ptq_test", "ft_val", "ft_test")


def _write_csv(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow(
                [",".join(map(str, r[c])) if c == "bits" else ("" if r.get(c) is None else r.get(c)) for c in columns]
            )


def write_task(out: Path, record: dict) -> None:
    """reports/tasks/<task>/: result.json (everything), front.csv, baselines.csv."""
    d = out / "tasks" / record["task"]
    d.mkdir(parents=True, exist_ok=True)
    (d / "result.json").write_text(json.dumps(record, indent=1) + "\n")
    _write_csv(d / "front.csv", record["front"], FRONT_COLUMNS)
    _write_csv(d / "baselines.csv", record["baselines"], BASE_COLUMNS)


def load_task(out: str | Path, task: str) -> dict:
    """A task's result.json as written by `reproduce`."""
    path = Path(out) / "tasks" / task / "result.json"
    if not path.is_file():
        raise GruqError(f"no reproduce result for {task} in {out}; run: python -m gruq reproduce --out {out}")
    return json.loads(path.read_text())


def load_summary(out: str | Path) -> dict:
    path = Path(out) / SUMMARY
    if not path.is_file():
        raise GruqError(f"no {SUMMARY} in {out}; run: python -m gruq reproduce --out {out}")
    return json.loads(path.read_text())


# ---------------------------------------------------------------- the whole run


def _check_tasks(tasks: Sequence[str]) -> list[str]:
    tasks = list(dict.fromkeys(tasks))
    if not tasks:
        raise GruqError("reproduce needs at least one task")
    for t in tasks:
        if t not in NAMES:
            raise GruqError(f"unknown task {t!r}; reproduce runs the built-in tasks: {', '.join(NAMES)}")
    from gruq.model import checkpoint_path

    missing = [t for t in tasks if not checkpoint_path(t).is_file()]
    if missing:
        raise GruqError(f"no float checkpoint for {', '.join(missing)}; run: python -m gruq train --task {missing[0]}")
    return tasks


def reproduce(
    out_dir: str | Path,
    tasks: Sequence[str] = NAMES,
    budget: Budget | None = None,
    progress: Progress | None = None,
    search_bar: bool = False,
) -> dict:
    """Run the whole reproduction into `out_dir`; return the summary (also summary.json).

    Writes summary.json, tasks/<task>/{result.json, front.csv, baselines.csv},
    figures/<task>_front.png and figures/<task>_bits.png, and README.md.
    """
    from gruq import report

    budget = budget or Budget()
    tasks = _check_tasks(tasks)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GruqError(f"cannot write the report into {out}: {exc.strerror or exc}") from None
    started = time.perf_counter()
    records = {}
    with _pool(budget.workers) as finetune_map:
        for task in tasks:
            task_started = time.perf_counter()
            record = run_task(task, budget, out, finetune_map, progress, search_bar)
            if progress:
                progress(task, "report", 0, 1)
            report.analyse(record)
            report.figures(out, record)
            record["seconds"]["total"] = time.perf_counter() - task_started
            write_task(out, record)
            records[task] = record
            if progress:
                progress(task, "report", 1, 1)
    summary = {
        "tasks": {t: summary_entry(r) for t, r in records.items()},
        "budget": budget.to_dict(),
        "wall_seconds": time.perf_counter() - started,
    }
    (out / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")
    report.write_readme(out, summary, records)
    return summary
