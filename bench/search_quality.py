"""Search quality at equal budgets: gruq's search against random search, Optuna and a greedy reduction.

Five methods search the same 17-gene space (every gene 2..8) of one task, for
the same budgets of distinct scored genomes (200 and 400 by default), from
several seeds:

- gruq: gruq's own search, run in-process through `gruq.search.run.start`
  (the public entry the command line uses) as `search --budget B` with its
  defaults (population 32, crossover 0.9) and a temporary run store.
- random: the homogeneous genomes 2..8 (gruq starts from them too), then
  distinct genomes drawn uniformly, every gene 2..8.
- optuna_nsga2: Optuna's NSGAIISampler (17 integer parameters 2..8, two
  objectives, seeded, population as gruq's), driven by ask/tell one population
  per batch; the homogeneous genomes are enqueued first, as gruq starts from them.
- optuna_tpe: Optuna's TPESampler, multivariate, on both objectives, one
  trial at a time (its strongest use), the homogeneous genomes enqueued first.
- greedy: bit reduction in the style of AIMET's automatic mixed precision:
  from all-8-bit, repeatedly take the one-bit reduction of an operator that
  loses least accuracy per byte saved (deterministic, no seed).

How the budget is matched: every method is charged for the distinct genomes
it asks to have scored, in the order it asks for them, and is judged on the
first `budget` of them. A genome asked for again costs nothing, as in gruq,
which never scores a genome twice. gruq stops by itself after exactly
`budget` scorings.

Measure: the exact 2-D hypervolume of all `budget` genomes (validation
accuracy, model size), normalised, with the reference point (accuracy 0,
size of the all-8-bit model): `gruq.search.hypervolume.hypervolume`, the
function gruq reports per generation. The median over seeds is the figure.
Validation accuracy is what every method ranks on, so this figure is the
search's own objective; with `held_out`, each method's validation front is
also re-scored on the test split, which no method saw, and that hypervolume
is reported beside it.

All methods score through ONE scoring function with one cache: a genome
is computed once, whichever method asks first, so methods that meet the same
genomes get identical scores and the benchmark is cheaper. The cache can be
kept in a JSON file (`--score-cache`) that is reused only for the same task,
checkpoint and scoring code.

Run as a script: `python bench/search_quality.py [--task vowels] [--seeds 5]
[--budget 200 400] [--held-out]` prints one JSON object; progress goes to
stderr. `python -m gruq bench --search-quality` runs it on several tasks.
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
METHODS = ("gruq", "random", "optuna_nsga2", "optuna_tpe", "greedy")
PEERS = METHODS[1:]
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
    """gruq's search, as `python -m gruq search --budget N` runs it (its defaults otherwise)."""
    from gruq.search import run
    from gruq.search.backend import Backend
    from gruq.search.config import SearchConfig

    with tempfile.TemporaryDirectory(prefix="gruq-bench-") as tmp:
        cfg = SearchConfig(task=task, pop=pop, gens=None, budget=budget, seed=seed)
        out = run.start(Path(tmp) / "run.db", cfg, backend_factory=lambda c: Backend(view), progress=False)
    return {"generations": len(out["hypervolume"]), "evaluations_reported": out["evaluations"]}


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


def _optuna_study(view: MethodView, sampler: Any) -> tuple[Any, dict[str, Any], float]:
    """A two-objective Optuna study with the baselines queued first, its search space and
    the all-8-bit size that normalises the second objective."""
    import optuna
    from optuna.distributions import IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for g in baselines():
        study.enqueue_trial(dict(zip(OPS, g)))
    space = {op: IntDistribution(MIN_BITS, MAX_BITS) for op in OPS}
    return study, space, size_bytes(homogeneous(MAX_BITS), view.shape)


def run_optuna(view: MethodView, seed: int, budget: int, pop: int = POP) -> dict[str, Any]:
    """Optuna's NSGAIISampler on the same scoring function, one population per ask/tell batch."""
    import optuna

    study, space, size8 = _optuna_study(view, optuna.samplers.NSGAIISampler(population_size=pop, seed=seed))
    trials = 0
    while len(view.asked) < budget and trials < OPTUNA_MAX_TRIALS_FACTOR * budget:
        batch = [study.ask(space) for _ in range(pop)]
        genomes = [tuple(int(t.params[op]) for op in OPS) for t in batch]
        accuracies = view.accuracy(genomes)
        for t, g, a in zip(batch, genomes, accuracies):
            study.tell(t, [a, size_bytes(g, view.shape) / size8])
        trials += len(batch)
    return {"trials": trials}


def run_tpe(view: MethodView, seed: int, budget: int) -> dict[str, Any]:
    """Optuna's multivariate TPESampler on both objectives, one trial at a time (TPE's strongest use)."""
    import optuna

    study, space, size8 = _optuna_study(view, optuna.samplers.TPESampler(multivariate=True, seed=seed))
    trials = 0
    while len(view.asked) < budget and trials < OPTUNA_MAX_TRIALS_FACTOR * budget:
        t = study.ask(space)
        g = tuple(int(t.params[op]) for op in OPS)
        (a,) = view.accuracy([g])
        study.tell(t, [a, size_bytes(g, view.shape) / size8])
        trials += 1
    return {"trials": trials}


def run_greedy(view: MethodView, budget: int) -> dict[str, Any]:
    """Greedy bit reduction in the style of AIMET's automatic mixed precision.

    From all-8-bit, score every one-bit reduction of an operator that saves
    bytes (the six weight operators) and take the one that loses least
    accuracy per byte saved; repeat until every weight operator is at 2 bits
    or the budget is spent. The homogeneous genomes are scored first, as for
    every method. Deterministic: no seed.
    """
    view.accuracy(baselines())
    current = homogeneous(MAX_BITS)
    steps = 0
    while len(view.asked) < budget:
        base_size = size_bytes(current, view.shape)
        moves = [_lower(current, i) for i in range(N_OPS) if current[i] > MIN_BITS]
        moves = [g for g in moves if size_bytes(g, view.shape) < base_size]
        if not moves:
            break
        room = budget - len(view.asked)
        fresh = [g for g in moves if g not in view._seen]
        if len(fresh) > room:  # the budget ends inside this step: score what fits, stop
            view.accuracy(fresh[:room])
            break
        (a0,), accuracies = view.accuracy([current]), view.accuracy(moves)
        per_byte = [(a0 - a) / (base_size - size_bytes(g, view.shape)) for g, a in zip(moves, accuracies)]
        current = moves[min(range(len(moves)), key=lambda k: (per_byte[k], moves[k]))]
        steps += 1
    return {"steps": steps}


def _lower(genome: Genome, i: int) -> Genome:
    g = list(genome)
    g[i] -= 1
    return tuple(g)


# -- the benchmark -------------------------------------------------------------------


def evaluator_for(task: str, split: str = "val") -> Any:
    """The evaluator `gruq search` would use for `task` (GRUQ_EVALUATOR's test hook included), on `split`."""
    from gruq.search.backend import ENV_HOOK, _import

    spec = os.environ.get(ENV_HOOK)
    if spec:
        return _import(spec)(task, split=split)
    from gruq.evaluate import Evaluator

    return Evaluator(task, split=split)


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
    budget: int | Sequence[int] = BUDGET,
    pop: int = POP,
    evaluator: Any = None,
    score_cache: str | Path | None = None,
    progress: bool = True,
    test_evaluator: Any = None,
    held_out: bool = False,
    methods: Sequence[str] = METHODS,
) -> dict[str, Any]:
    """Median hypervolume per method at equal budgets, with the per-seed figures.

    `budget`: one budget or several. Every method but gruq runs once per seed
    at the largest budget and is judged at each budget on the first genomes
    it asked for; gruq runs `search --budget B` for each budget B (the same
    run cut short: its choices do not depend on the budget). The top-level
    "hypervolume" keys are those of the largest budget.

    `held_out` (or a `test_evaluator`): also re-score each method's front
    (non-dominated on validation) on the test split, which no method ranked
    on, and report that hypervolume too: the validation figure is the
    search's own objective, optimistically biased for every method alike.

    `evaluator` defaults to the one `gruq search` uses for `task`. Raises GruqError
    when the task cannot be scored (for example its checkpoint is missing).
    """
    from tqdm import tqdm

    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    budgets = sorted({int(budget)} if isinstance(budget, int) else {int(b) for b in budget})
    if not budgets or budgets[0] < len(baselines()):
        raise GruqError(f"--budget must be at least {len(baselines())} (the homogeneous genomes); got {budgets}")
    if not seed_list:
        raise GruqError("--seeds must be at least 1")
    if pop < 4:
        raise GruqError(f"the population must be at least 4; got {pop}")
    top_budget = budgets[-1]
    cache_path = Path(score_cache) if score_cache else None
    key = fingerprint(task) if cache_path else ""
    ev = evaluator if evaluator is not None else evaluator_for(task)
    bar = tqdm(
        total=(len(METHODS) - 1 + len(budgets)) * len(seed_list) * top_budget,
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
    tester = None
    test_path = cache_path.with_suffix(".test.json") if cache_path else None
    if held_out or test_evaluator is not None:
        tev = test_evaluator if test_evaluator is not None else evaluator_for(task, "test")
        tester = SharedScorer(tev, batch=pop, cache=load_cache(test_path, key))
    started = time.perf_counter()
    scorer.score(baselines())  # fails early, with the evaluator's own message, if the task cannot be scored
    asked: dict[str, dict[int, list[list[Genome]]]] = {m: {b: [] for b in budgets} for m in METHODS}
    details: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
    try:
        for seed in seed_list:
            for method in methods:
                for b in budgets if method == "gruq" else [top_budget]:
                    view = scorer.view(on_new=_ticker(bar, b))
                    bar.set_description(f"{task} seed {seed} {method} {b}")
                    info = _run(method, view, task, seed, b, pop)
                    bar.update(b - min(b, len(view.asked)))  # a method that stalled short of the budget
                    for cut in budgets if method != "gruq" else [b]:
                        asked[method][cut].append(view.first(cut))
                    details[method].append({"seed": seed, "budget": b, "evaluations": len(view.first(b)), **info})
                save_cache(cache_path, key, scorer.cache)
    finally:
        bar.close()
    if set(methods) != set(METHODS):  # some methods only: their hypervolumes, nothing compared
        out = {
            "task": task,
            "budgets": budgets,
            "seeds": seed_list,
            "by_budget": {str(b): _figures(scorer, {m: asked[m][b] for m in methods}) for b in budgets},
            "scorings_computed": len(scorer.computed),
        }
        _with_held_out(out, scorer, tester, test_path, key, {m: asked[m] for m in methods}, budgets)
        return out
    by_budget = {b: _figures(scorer, {m: asked[m][b] for m in METHODS}) for b in budgets}
    out: dict[str, Any] = {
        "task": task,
        "budgets": budgets,
        "seeds": seed_list,
        "population": pop,
        "measure": "validation hypervolume of the genomes each method asked for (what every method optimised)",
        "by_budget": {str(b): f for b, f in by_budget.items()},
        "scorings_to_reach": _scorings_to_reach(scorer, asked["gruq"][top_budget], by_budget[top_budget], top_budget),
        "hypervolume": by_budget[top_budget]["hypervolume"],
        "hypervolume_per_seed": by_budget[top_budget]["hypervolume_per_seed"],
        "hypervolume_homogeneous": front_hypervolume(scorer, baselines()),
        "evaluations": top_budget,
        "evaluations_per_run": {m: [len(a) for a in asked[m][top_budget]] for m in METHODS},
        "runs": details,
        "scorings_computed": len(scorer.computed),
        "scorings_from_file": scorer.loaded,
        "reference": {"accuracy": 0.0, "size_bytes": size_bytes(homogeneous(MAX_BITS), scorer.shape)},
    }
    _with_held_out(out, scorer, tester, test_path, key, asked, budgets)
    out["seconds"] = time.perf_counter() - started
    return out


def _with_held_out(
    out: dict[str, Any],
    scorer: SharedScorer,
    tester: SharedScorer | None,
    test_path: Path | None,
    key: str,
    asked: dict[str, dict[int, list[list[Genome]]]],
    budgets: Sequence[int],
) -> None:
    """Add to `out` the test hypervolume of each method's validation front, when a tester is given."""
    if tester is not None:
        out["held_out"] = {
            "split": "test",
            "measure": "test hypervolume of each method's validation front (the genomes it would report)",
            "by_budget": {str(b): _held_out(scorer, tester, {m: a[b] for m, a in asked.items()}) for b in budgets},
        }
        save_cache(test_path, key, tester.cache)


def _run(method: str, view: MethodView, task: str, seed: int, budget: int, pop: int) -> dict[str, Any]:
    if method == "gruq":
        return run_gruq(view, task, seed, budget, pop)
    if method == "random":
        return run_random(view, seed, budget, pop)
    if method == "optuna_nsga2":
        return run_optuna(view, seed, budget, pop)
    if method == "optuna_tpe":
        return run_tpe(view, seed, budget)
    return run_greedy(view, budget)


def _ticker(bar: Any, budget: int) -> Callable[[int], None]:
    counted = [0]

    def tick(n: int) -> None:
        step = min(n, budget - counted[0])
        counted[0] += step
        if step > 0:
            bar.update(step)

    return tick


def _figures(scorer: SharedScorer, runs: dict[str, list[list[Genome]]]) -> dict[str, Any]:
    per_seed = {m: [front_hypervolume(scorer, genomes) for genomes in r] for m, r in runs.items()}
    return {
        "hypervolume": {m: statistics.median(v) for m, v in per_seed.items()},
        "hypervolume_per_seed": per_seed,
    }


def validation_front(scorer: SharedScorer, genomes: Iterable[Genome]) -> list[Genome]:
    """The genomes no other of `genomes` beats on validation accuracy and size: what a method reports."""
    pts = sorted({g: (size_bytes(g, scorer.shape), -scorer.cache[g]) for g in genomes}.items(), key=lambda kv: kv[1])
    out, best = [], -math.inf
    for g, (_, neg_acc) in pts:
        if -neg_acc > best:
            out.append(g)
            best = -neg_acc
    return out


def _held_out(scorer: SharedScorer, tester: SharedScorer, runs: dict[str, list[list[Genome]]]) -> dict[str, Any]:
    per_seed: dict[str, list[float]] = {}
    for m, r in runs.items():
        per_seed[m] = []
        for genomes in r:
            front = validation_front(scorer, genomes)
            tester.score(front)
            per_seed[m].append(front_hypervolume(tester, front))
    return {"hypervolume": {m: statistics.median(v) for m, v in per_seed.items()}, "hypervolume_per_seed": per_seed}


def _scorings_to_reach(
    scorer: SharedScorer, gruq_runs: list[list[Genome]], top: dict[str, Any], budget: int
) -> dict[str, Any]:
    """How many scorings gruq needs to reach each peer's median hypervolume at the largest budget.

    Per seed, the first n at which gruq's first n genomes reach it (None: not within
    the budget); "median_curve": the first n at which gruq's median over seeds does."""
    curves = [[front_hypervolume(scorer, genomes[:n]) for n in range(1, len(genomes) + 1)] for genomes in gruq_runs]
    longest = max(len(c) for c in curves)
    median = [statistics.median(c[min(n, len(c) - 1)] for c in curves) for n in range(longest)]
    out = {}
    for peer in PEERS:
        target = top["hypervolume"][peer]
        out[peer] = {
            "target": target,
            "median_curve": _first_reach(median, target),
            "per_seed": [_first_reach(c, target) for c in curves],
        }
    return out


def _first_reach(curve: Sequence[float], target: float) -> int | None:
    return next((n + 1 for n, v in enumerate(curve) if v >= target - 1e-12), None)


def search_quality_tasks(
    tasks: Sequence[str],
    seeds: int | Sequence[int],
    budgets: Sequence[int],
    pop: int = POP,
    score_cache: str | Path | None = None,
    held_out: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """`bench --search-quality`: `search_quality` on each task; a task that cannot run is skipped with its reason.

    `score_cache`: a folder; each task keeps its scores in <folder>/<task>.json."""
    results, skipped = {}, {}
    for task in tasks:
        path = Path(score_cache) / f"{task}.json" if score_cache else None
        try:
            results[task] = search_quality(
                task, seeds, budgets, pop, score_cache=path, progress=progress, held_out=held_out
            )
        except GruqError as exc:
            skipped[task] = str(exc)
    return {"tasks": results, "skipped": skipped}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Median hypervolume at an equal budget: gruq vs random vs Optuna.")
    p.add_argument("--task", default=TASK)
    p.add_argument("--seeds", type=int, default=SEEDS, help="seeds 0..N-1 (default 5)")
    p.add_argument(
        "--budget", type=int, nargs="+", default=[BUDGET], help="distinct scored genomes per method and seed"
    )
    p.add_argument("--seed-list", type=int, nargs="+", help="these seeds instead of 0..N-1 (tune on other seeds)")
    p.add_argument("--held-out", action="store_true", help="also the test hypervolume of each method's front")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="fill the cache: these only")
    p.add_argument("--pop", type=int, default=POP, help="population of gruq and Optuna (default 32)")
    p.add_argument("--score-cache", metavar="PATH", help="keep scores in this JSON file between runs")
    args = p.parse_args(argv)
    try:
        seeds = args.seed_list or args.seeds
        out = search_quality(
            args.task,
            seeds,
            args.budget,
            args.pop,
            score_cache=args.score_cache,
            held_out=args.held_out,
            methods=args.methods,
        )
    except GruqError as exc:
        sys.stderr.write(f"search_quality: error: {exc}\n")
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
