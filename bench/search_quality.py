"""Search quality at an equal budget: gruq's NSGA-II against random search and Optuna.

Three methods search the same 17-gene space (every gene 2..8) of one task, for
the same budget of distinct scored genomes (400 by default), from 5 seeds:

- gruq: gruq's own NSGA-II, run in-process through `gruq.search.run.start`
  (the public entry the command line uses, with its defaults: population 32,
  crossover 0.9, the homogeneous genomes 2..8 in the first population) and a
  temporary run store.
- random: the homogeneous genomes 2..8 (gruq starts from them too), then
  distinct genomes drawn uniformly, every gene 2..8.
- optuna_nsga2: Optuna's NSGAIISampler (17 integer parameters 2..8, two
  objectives, seeded, population as gruq's), driven by ask/tell one population
  per batch; the homogeneous genomes are enqueued first, as gruq starts from them.

How the budget is matched: every method is charged for the distinct genomes
it asks to have scored, in the order it asks for them, and is judged on the
first `budget` of them. A genome asked for again (an NSGA-II offspring equal
to an earlier genome, an Optuna trial repeating one) costs nothing, as in
gruq, which never scores a genome twice. gruq runs generations of its
population until it has asked for `budget` distinct genomes (usually 13
generations of 32, since a few offspring repeat earlier genomes); its run is
deterministic for its seed and a longer run replays a shorter one exactly, so
this is gruq's front after exactly `budget` scorings. Optuna's trials are
asked in whole populations until the budget is reached likewise.

Measure: the exact 2-D hypervolume of all `budget` genomes (validation
accuracy, model size), normalised, with the reference point (accuracy 0,
size of the all-8-bit model): `gruq.search.hypervolume.hypervolume`, the
function gruq reports per generation. The median over seeds is the figure.

All three methods score through ONE scoring function with one cache: a genome
is computed once, whichever method asks first, so methods that meet the same
genomes get identical scores and the benchmark is cheaper. The cache can be
kept in a JSON file (`--score-cache`) that is reused only for the same task,
checkpoint and scoring code.

Run as a script: `python bench/search_quality.py [--task vowels] [--seeds 5]
[--budget 400]` prints one JSON object; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make `gruq` importable from the checkout
    sys.path.insert(0, str(ROOT))

from gruq.errors import GruqError  # noqa: E402
from gruq.genome import MAX_BITS, MIN_BITS, Genome, homogeneous, size_bytes  # noqa: E402
from gruq.ops import N_OPS, OPS  # noqa: E402
from gruq.search.hypervolume import hypervolume  # noqa: E402

TASK = "vowels"
BUDGET = 400
SEEDS = 5
POP = 32  # gruq's default population (SearchConfig.pop); Optuna gets the same
METHODS = ("gruq", "random", "optuna_nsga2")
MAX_GENS_FACTOR = 4  # gruq stops trying after 4x the generations the budget needs (a stuck population)
OPTUNA_MAX_TRIALS_FACTOR = 10  # likewise for Optuna trials


# -- one scoring function for every method ---------------------------------------------


class SharedScorer:
    """Scores genomes with one evaluator and one cache; counts what it really computed."""

    def __init__(
        self,
        evaluator: Any,
        batch: int = POP,
        cache: dict[Genome, float] | None = None,
        on_compute: Callable[[int], None] | None = None,
    ) -> None:
        self.evaluator = evaluator
        self.shape = evaluator.shape
        self.batch = batch
        self.cache: dict[Genome, float] = dict(cache or {})
        self.loaded = len(self.cache)
        self.computed: list[Genome] = []  # genomes this scorer computed, in order
        self.on_compute = on_compute

    def score(self, genomes: Sequence[Genome]) -> list[float]:
        genomes = [tuple(int(b) for b in g) for g in genomes]
        new = [g for g in dict.fromkeys(genomes) if g not in self.cache]
        for i in range(0, len(new), self.batch):
            chunk = new[i : i + self.batch]
            accuracies = [float(a) for a in self.evaluator.accuracy(chunk)]
            if len(accuracies) != len(chunk):
                raise RuntimeError(f"evaluator returned {len(accuracies)} accuracies for {len(chunk)} genomes")
            self.cache.update(zip(chunk, accuracies))
            self.computed.extend(chunk)
            if self.on_compute:
                self.on_compute(len(chunk))
        return [self.cache[g] for g in genomes]

    def view(self, on_new: Callable[[int], None] | None = None) -> MethodView:
        return MethodView(self, on_new)


class MethodView:
    """What one method sees: an evaluator (gruq.search's interface) that records, in
    order, the distinct genomes the method asked for. That order is its budget."""

    def __init__(self, scorer: SharedScorer, on_new: Callable[[int], None] | None = None) -> None:
        self.scorer = scorer
        self.shape = scorer.shape
        self.asked: list[Genome] = []
        self._seen: set[Genome] = set()
        self._on_new = on_new

    def accuracy(self, genomes: Sequence[Genome]) -> list[float]:
        genomes = [tuple(int(b) for b in g) for g in genomes]
        fresh = [g for g in dict.fromkeys(genomes) if g not in self._seen]
        self._seen.update(fresh)
        self.asked.extend(fresh)
        if fresh and self._on_new:
            self._on_new(len(fresh))
        return self.scorer.score(genomes)

    def first(self, budget: int) -> list[Genome]:
        return self.asked[:budget]


def front_hypervolume(scorer: SharedScorer, genomes: Iterable[Genome]) -> float:
    """Hypervolume of (accuracy, size) of `genomes`, reference (0, size of all-8-bit), in [0, 1]."""
    points = [(scorer.cache[g], size_bytes(g, scorer.shape)) for g in genomes]
    return hypervolume(points, size_bytes(homogeneous(MAX_BITS), scorer.shape))


def baselines() -> list[Genome]:
    return [homogeneous(b) for b in range(MIN_BITS, MAX_BITS + 1)]


# -- the three methods ---------------------------------------------------------------


def run_gruq(view: MethodView, task: str, seed: int, budget: int, pop: int = POP) -> dict[str, Any]:
    """gruq's NSGA-II, as `python -m gruq search` runs it, until `budget` distinct genomes are asked for."""
    from gruq.search import run
    from gruq.search.backend import Backend
    from gruq.search.config import SearchConfig

    gens = math.ceil(budget / pop)
    limit = MAX_GENS_FACTOR * gens
    with tempfile.TemporaryDirectory(prefix="gruq-bench-") as tmp:
        attempt = 0
        while True:
            attempt += 1
            probe = MethodView(view.scorer, view._on_new)  # replays are free: the shared cache has every genome
            cfg = SearchConfig(task=task, pop=pop, gens=gens, seed=seed)
            out = run.start(
                Path(tmp) / f"run{attempt}.db",
                cfg,
                backend_factory=lambda c, probe=probe: Backend(probe),
                progress=False,
            )
            if len(probe.asked) >= budget or gens >= limit:
                break
            short = budget - len(probe.asked)  # the population repeated itself: run longer
            gens = min(limit, gens + max(1, math.ceil(short / pop)))
    view.accuracy(probe.asked)  # charge the view in gruq's order (all cached: no new scoring)
    return {"generations": gens, "evaluations_reported": out["evaluations"]}


def run_random(view: MethodView, seed: int, budget: int, batch: int = POP) -> dict[str, Any]:
    """The homogeneous genomes, then distinct uniform random genomes, `budget` in all."""
    rng = random.Random(seed)
    genomes = list(dict.fromkeys(baselines()))[:budget]
    seen = set(genomes)
    while len(genomes) < budget:
        g = tuple(rng.randint(MIN_BITS, MAX_BITS) for _ in range(N_OPS))
        if g not in seen:
            seen.add(g)
            genomes.append(g)
    for i in range(0, len(genomes), batch):
        view.accuracy(genomes[i : i + batch])
    return {}


def run_optuna(view: MethodView, seed: int, budget: int, pop: int = POP) -> dict[str, Any]:
    """Optuna's NSGAIISampler on the same scoring function, one population per ask/tell batch."""
    import optuna
    from optuna.distributions import IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    size8 = size_bytes(homogeneous(MAX_BITS), view.shape)
    sampler = optuna.samplers.NSGAIISampler(population_size=pop, seed=seed)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for g in baselines():
        study.enqueue_trial(dict(zip(OPS, g)))
    space = {op: IntDistribution(MIN_BITS, MAX_BITS) for op in OPS}
    trials = 0
    while len(view.asked) < budget and trials < OPTUNA_MAX_TRIALS_FACTOR * budget:
        batch = [study.ask(space) for _ in range(pop)]
        genomes = [tuple(int(t.params[op]) for op in OPS) for t in batch]
        accuracies = view.accuracy(genomes)
        for t, g, a in zip(batch, genomes, accuracies):
            study.tell(t, [a, size_bytes(g, view.shape) / size8])
        trials += len(batch)
    return {"trials": trials}


# -- the benchmark -------------------------------------------------------------------


def evaluator_for(task: str) -> Any:
    """The evaluator `gruq search` would use for `task` (GRUQ_EVALUATOR's test hook included)."""
    from gruq.search.backend import default_backend
    from gruq.search.config import SearchConfig

    return default_backend(SearchConfig(task=task)).evaluator


def fingerprint(task: str) -> str:
    """What scores depend on: the evaluator hook, the checkpoint and the scoring code."""
    h = hashlib.sha256()
    h.update(f"{task}|{os.environ.get('GRUQ_EVALUATOR', '')}".encode())
    from gruq.model import checkpoint_path

    paths = [checkpoint_path(task)] + [
        ROOT / "gruq" / n for n in ("fakequant.py", "evaluate.py", "scheme.py", "fixedpoint.py", "model.py", "ops.py")
    ]
    paths += sorted((ROOT / "gruq" / "tasks").glob("*.py"))
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes() if p.is_file() else b"-")
    return h.hexdigest()


def load_cache(path: Path | None, key: str) -> dict[Genome, float]:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if data.get("fingerprint") != key:
        return {}  # another task, checkpoint or scoring code: start afresh
    return {tuple(int(b) for b in k.split(",")): float(v) for k, v in data.get("scores", {}).items()}


def save_cache(path: Path | None, key: str, cache: dict[Genome, float]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"fingerprint": key, "scores": {",".join(map(str, g)): a for g, a in cache.items()}}))
    tmp.replace(path)


def search_quality(
    task: str = TASK,
    seeds: int | Sequence[int] = SEEDS,
    budget: int = BUDGET,
    pop: int = POP,
    evaluator: Any = None,
    score_cache: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Median hypervolume per method at an equal budget, with the per-seed figures.

    `evaluator` defaults to the one `gruq search` uses for `task`. Raises GruqError
    when the task cannot be scored (for example its checkpoint is missing).
    """
    from tqdm import tqdm

    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if budget < len(baselines()):
        raise GruqError(f"--budget must be at least {len(baselines())} (the homogeneous genomes); got {budget}")
    if not seed_list:
        raise GruqError("--seeds must be at least 1")
    if pop < 4:
        raise GruqError(f"the population must be at least 4; got {pop}")
    cache_path = Path(score_cache) if score_cache else None
    key = fingerprint(task) if cache_path else ""
    ev = evaluator if evaluator is not None else evaluator_for(task)
    bar = tqdm(
        total=len(METHODS) * len(seed_list) * budget,
        desc=f"search quality {task}",
        unit="genome",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    scorer = SharedScorer(
        ev,
        batch=pop,
        cache=load_cache(cache_path, key),
        on_compute=lambda n: bar.set_postfix(computed=len(scorer.computed), refresh=False),
    )
    started = time.perf_counter()
    scorer.score(baselines())  # fails early, with the evaluator's own message, if the task cannot be scored
    per_seed: dict[str, list[float]] = {m: [] for m in METHODS}
    details: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
    try:
        for seed in seed_list:
            for method in METHODS:
                counted = [0]

                def tick(n: int, counted: list[int] = counted) -> None:
                    step = min(n, budget - counted[0])
                    counted[0] += step
                    if step > 0:
                        bar.update(step)

                view = scorer.view(on_new=tick)
                bar.set_description(f"{task} seed {seed} {method}")
                if method == "gruq":
                    info = run_gruq(view, task, seed, budget, pop)
                elif method == "random":
                    info = run_random(view, seed, budget, pop)
                else:
                    info = run_optuna(view, seed, budget, pop)
                bar.update(budget - counted[0])  # a method that stalled short of the budget
                genomes = view.first(budget)
                hv = front_hypervolume(scorer, genomes)
                per_seed[method].append(hv)
                details[method].append({"seed": seed, "hypervolume": hv, "evaluations": len(genomes), **info})
                save_cache(cache_path, key, scorer.cache)
    finally:
        bar.close()
    return {
        "task": task,
        "budget": budget,
        "seeds": seed_list,
        "population": pop,
        "hypervolume": {m: statistics.median(v) for m, v in per_seed.items()},
        "hypervolume_per_seed": per_seed,
        "hypervolume_homogeneous": front_hypervolume(scorer, baselines()),
        "evaluations": budget,
        "evaluations_per_run": {m: [d["evaluations"] for d in details[m]] for m in METHODS},
        "gruq_generations": [d["generations"] for d in details["gruq"]],
        "optuna_trials": [d["trials"] for d in details["optuna_nsga2"]],
        "scorings_computed": len(scorer.computed),
        "scorings_from_file": scorer.loaded,
        "reference": {"accuracy": 0.0, "size_bytes": size_bytes(homogeneous(MAX_BITS), scorer.shape)},
        "seconds": time.perf_counter() - started,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Median hypervolume at an equal budget: gruq vs random vs Optuna.")
    p.add_argument("--task", default=TASK)
    p.add_argument("--seeds", type=int, default=SEEDS, help="seeds 0..N-1 (default 5)")
    p.add_argument("--budget", type=int, default=BUDGET, help="distinct scored genomes per method and seed")
    p.add_argument("--pop", type=int, default=POP, help="population of gruq and Optuna (default 32)")
    p.add_argument("--score-cache", metavar="PATH", help="keep scores in this JSON file between runs")
    args = p.parse_args(argv)
    try:
        out = search_quality(args.task, args.seeds, args.budget, args.pop, score_cache=args.score_cache)
    except GruqError as exc:
        sys.stderr.write(f"search_quality: error: {exc}\n")
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
