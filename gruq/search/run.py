"""One search run, start to finish, recorded in the store; resumable.

`start` checks a config, records the run and executes it. `execute` runs (or
continues) a stored run: it claims the run row, restores the last committed
generation if there is one, and commits each further generation with its
checkpoint. A run restored at a generation boundary draws the same random
numbers as the uninterrupted run, and a partly done generation is simply
done again, so `--resume` after kill -9 ends with the same front.

SIGTERM and SIGINT stop a run between chunks of scoring ('cancelled'); any
other exception marks it 'failed' with its message. The evaluator is
injected through a backend factory so tests run without a model.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from deap import base, tools
from tqdm import tqdm

from gruq.errors import GruqError
from gruq.genome import Genome
from gruq.search import checkpoint, guided, nsga2
from gruq.search.backend import Backend, default_backend
from gruq.search.config import SearchConfig
from gruq.search.constraints import Constraints, resolve
from gruq.search.dask_map import check_reachable
from gruq.search.hypervolume import hypervolume
from gruq.search.scoring import mapper
from gruq.store import RunStore, pids, result
from gruq.store.reserve import Reserve

BackendFactory = Callable[[SearchConfig], Backend]
RESUMABLE = ("queued", "running", "failed", "cancelled")
STALL = 5  # a budget run without a generation limit stops after this many generations with nothing new to score


class RunCancelled(Exception):
    """The run stopped on request; the store holds its last whole generation."""

    def __init__(self, run_id: int, message: str, signum: int | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.signum = signum


def prepare(cfg: SearchConfig, backend_factory: BackendFactory | None = None) -> tuple[Backend, Constraints]:
    """The evaluator and the resolved constraints, or a GruqError saying why the run cannot start."""
    if cfg.scheduler:
        check_reachable(cfg.scheduler)  # an unreachable scheduler: one line, nothing stored
    backend = (backend_factory or default_backend)(cfg)
    cons = resolve(cfg, backend.evaluator.shape)
    if cfg.front_finetune_epochs and backend.finetune is None:
        raise GruqError("this evaluator cannot fine-tune the final front; drop --front-finetune-epochs")
    return backend, cons


def create(db: str | Path, cfg: SearchConfig, backend_factory: BackendFactory | None = None) -> int:
    """Check `cfg` and record it as a 'queued' run; nothing is stored if the check fails."""
    prepare(cfg, backend_factory)
    return _record(db, cfg)


def start(
    db: str | Path, cfg: SearchConfig, *, backend_factory: BackendFactory | None = None, progress: bool = True
) -> dict[str, Any]:
    """`search --task ...`: check, record, run to the end; returns the result object."""
    prepared = prepare(cfg, backend_factory)
    return execute(db, _record(db, cfg), prepared=prepared, progress=progress)


def _record(db: str | Path, cfg: SearchConfig) -> int:
    with RunStore(db) as store:
        return store.create_run(cfg.task, cfg.to_dict(), cfg.seed, cfg.planned_generations)


def execute(
    db: str | Path,
    run_id: int,
    *,
    launched: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    backend_factory: BackendFactory | None = None,
    prepared: tuple[Backend, Constraints] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run or continue stored run `run_id` to its end and return its result object.

    `launched`: the run was queued by `gruq.search.launch` and must still be
    queued (a cancel may have come first). Otherwise it is a resume: a
    finished run just returns its result; a run whose process is alive is
    refused. `workers` and `scheduler` override where it computes (results do
    not depend on it); the store records the change.
    """
    if not Path(db).is_file():  # a refused command creates nothing: no empty store
        raise GruqError(f"no run {run_id}: there is no gruq store at {db}")
    stop = StopFlag()
    with stop.installed(), RunStore(db) as store, Reserve(db) as reserve:
        row = store.run(run_id)
        if row.status == "finished" and not launched:
            return result(db, run_id)
        _check_startable(row, launched)
        cfg = SearchConfig.from_dict(row.config)
        moved = workers is not None or scheduler is not None
        if moved:
            cfg = cfg.with_compute(workers, scheduler)
        backend, cons = prepared or prepare(cfg, backend_factory)
        _claim(store, run_id, launched)
        if moved:
            store.set_config(run_id, cfg.to_dict())
        try:
            Search(store, run_id, cfg, cons, backend, stop, progress).run()
        except nsga2.StopRequested:
            store.set_status(run_id, "cancelled", error=f"cancelled by {_signal_name(stop.signum)}")
            done = store.generations_done(run_id)
            raise RunCancelled(
                run_id,
                f"run {run_id} cancelled after {done} of {cfg.planned_generations} generations; "
                f"continue it with: python -m gruq search --resume {run_id} --db {db}",
                stop.signum,
            ) from None
        except BaseException as exc:
            _record_failure(store, run_id, exc, reserve)
            raise
        store.set_status(run_id, "finished")
    return result(db, run_id)


def _record_failure(store: RunStore, run_id: int, exc: BaseException, reserve: Reserve) -> None:
    """Mark the run 'failed' with its reason, even on a full disk: if that write fails,
    free the reserve (gruq.store.reserve) and try once more. The caller re-raises `exc`."""
    for attempt in range(2):
        try:
            store.set_status(run_id, "failed", error=_one_line(exc))
            return
        except GruqError:
            if attempt or not reserve.release():
                return


def _claim(store: RunStore, run_id: int, launched: bool) -> None:
    try:
        store.claim(run_id, os.getpid(), ("queued",) if launched else RESUMABLE)
    except GruqError:
        if launched and store.run(run_id).status == "cancelled":  # cancelled while we were loading
            raise RunCancelled(run_id, f"run {run_id} was cancelled before it started") from None
        raise


def _check_startable(row: Any, launched: bool) -> None:
    if launched:
        if row.status == "cancelled":
            raise RunCancelled(row.id, f"run {row.id} was cancelled before it started")
        if row.status != "queued":
            raise GruqError(f"run {row.id} is {row.status}, not queued; use --resume {row.id} to continue it")
        return
    if row.status in ("running", "queued") and row.pid != os.getpid() and pids.alive(row.pid):
        raise GruqError(f"run {row.id} is {row.status} in process {row.pid}; cancel it or wait for it")


@dataclass
class Search:
    """The generational loop of one run, writing each generation to the store."""

    store: RunStore
    run_id: int
    cfg: SearchConfig
    cons: Constraints
    backend: Backend
    stop: StopFlag
    progress: bool
    cache: dict[Genome, float] = field(default_factory=dict)  # genome -> accuracy, every genome scored
    toolbox: base.Toolbox = field(init=False)

    def run(self) -> None:
        from gruq.scheme_model import base_identity

        self.store.set_checkpoint(
            self.run_id, base_identity(self.cfg.task, self.cfg.checkpoint)
        )  # rebuilt models check it
        self.cache = self.store.scored(self.run_id)
        state = self.store.latest_checkpoint(self.run_id)
        stopping = lambda: self.stop.requested  # noqa: E731
        with mapper(self.backend.evaluator, self.cfg.workers, self.cfg.scheduler, stopping) as map_fn:
            self.toolbox = nsga2.make_toolbox(self.cons, map_fn)
            done = 0 if state is None else state["gen"] + 1
            with self._bar(done) as bar:
                if state is None:
                    population, front, logbook = self._first_generation()
                    bar.update(1)
                    self._postfix(bar, logbook)
                else:
                    population, front, logbook = self._restore(state)
                gen = max(done, 1)
                while self._more(gen, logbook):
                    population = self._generation(gen, population, front, logbook)
                    gen += 1
                    bar.update(1)
                    self._postfix(bar, logbook)
        self._finetune_front([tuple(ind) for ind in front])

    def _more(self, gen: int, logbook: tools.Logbook) -> bool:
        """Whether generation `gen` runs: within --gens, within --budget, and (budget only) not stalled.

        Read from the config, the scored genomes and the logbook only, so a
        resumed run stops where the uninterrupted one did."""
        cfg = self.cfg
        if cfg.gens is not None and gen >= cfg.gens:
            return False
        if cfg.budget is not None and len(self.cache) >= cfg.budget:
            return False
        recent = [record["nevals"] for record in logbook[-STALL:]]
        return not (cfg.gens is None and len(recent) == STALL and not any(recent))

    def _within_budget(self, individuals: list) -> list:
        """`individuals` in order, without those whose new genome would exceed the budget.

        Genomes already scored, and genomes over the size limit (never
        scored), cost nothing and stay."""
        if self.cfg.budget is None:
            return individuals
        room = self.cfg.budget - len(self.cache)
        kept, new = [], set()
        for ind in individuals:
            g = tuple(ind)
            if g in self.cache or g in new or not self.cons.size_ok(g):
                kept.append(ind)
            elif len(new) < room:
                new.add(g)
                kept.append(ind)
        return kept

    def _first_generation(self) -> tuple[list, tools.ParetoFront, tools.Logbook]:
        random.seed(self.cfg.seed)
        np.random.seed(self.cfg.seed)
        started = time.perf_counter()
        population = self._within_budget(nsga2.first_population(self.toolbox, self.cons, self.cfg.pop))
        scored = self._evaluate(population, 0)
        front = tools.ParetoFront()
        front.update(nsga2.feasible(population, self.cons))
        population = self.toolbox.select(population, min(self.cfg.pop, len(population)))
        logbook = checkpoint.new_logbook()
        self._commit(0, population, front, logbook, scored, started)
        return population, front, logbook

    def _restore(self, state: dict[str, Any]) -> tuple[list, tools.ParetoFront, tools.Logbook]:
        checkpoint.restore_rngs(state)
        population = [nsga2.individual(g, self.cache, self.cons) for g in checkpoint.genomes(state, "population")]
        front = tools.ParetoFront()
        front.update([nsga2.individual(g, self.cache, self.cons) for g in checkpoint.genomes(state, "front")])
        return population, front, checkpoint.restore_logbook(state)

    def _generation(self, gen: int, population: list, front: tools.ParetoFront, logbook: tools.Logbook) -> list:
        if self.stop.requested:
            raise nsga2.StopRequested
        started = time.perf_counter()
        walked, scored = self._walk(gen)
        k = self.cfg.pop - len(walked)
        offspring = nsga2.propose(self.toolbox, self.cons, population, front, self.cache, k, self.cfg.cxpb)
        offspring = walked + self._within_budget(offspring)
        scored += self._evaluate(offspring, gen)
        population = nsga2.survivors(self.toolbox, population, offspring, self.cfg.pop)
        front.update(nsga2.feasible(offspring, self.cons))
        self._commit(gen, population, front, logbook, scored, started)
        return population

    def _walk(self, gen: int) -> tuple[list, list]:
        """The generation's measured greedy-walk steps (from EXPLORE_UNTIL scorings on), the first of
        its `pop` slots, within the budget: the individuals and their records for the store."""
        scored: list = []
        if len(self.cache) < guided.EXPLORE_UNTIL:
            return [], scored

        def score(individuals: list) -> list:
            kept = self._within_budget(individuals)
            scored.extend(self._evaluate(kept, gen))
            return kept

        return nsga2.walk(self.cons, self.cache, score, self.cfg.pop), scored

    def _evaluate(self, individuals: list, gen: int) -> list:
        with self.stop.interruptible():
            return nsga2.evaluate(
                self.toolbox,
                individuals,
                self.cons,
                self.cache,
                generation=gen,
                chunk_size=self.cfg.chunk_size,
                should_stop=lambda: self.stop.requested,
            )

    def _commit(
        self, gen: int, population: list, front: tools.ParetoFront, logbook: tools.Logbook, scored: list, started: float
    ) -> None:
        hv = hypervolume([ind.fitness.values for ind in front], self.cons.ref_cost)
        logbook.record(gen=gen, nevals=len(scored), evaluations=len(self.cache), front=len(front), hypervolume=hv)
        self.store.commit_generation(
            self.run_id,
            gen,
            hypervolume=hv,
            seconds=time.perf_counter() - started,
            evaluations=len(self.cache),
            scored=scored,
            front=[tuple(ind) for ind in front],
            checkpoint=checkpoint.capture(gen, population, front, logbook, len(self.cache)),
        )

    def _finetune_front(self, front: list[Genome]) -> None:
        epochs = self.cfg.front_finetune_epochs
        if not epochs or not front or self.backend.finetune is None:
            return
        done = self.store.finetuned(self.run_id)
        todo = [g for g in front if g not in done]
        if todo:
            accuracies = self.backend.finetune(todo, epochs)
            for g, (recipe, sha, weights) in getattr(self.backend.finetune, "models", {}).items():
                self.store.record_model(self.run_id, g, recipe, sha, weights)  # the model behind the accuracy
            self.store.set_finetuned(self.run_id, dict(zip(todo, map(float, accuracies))))

    @contextmanager
    def _bar(self, done: int) -> Iterator[tqdm]:
        bar = tqdm(
            total=self.cfg.planned_generations,
            initial=done,
            desc=f"run {self.run_id}",
            unit="gen",
            file=sys.stderr,
            disable=not self.progress,
            dynamic_ncols=True,
        )
        try:
            yield bar
        finally:
            bar.close()

    @staticmethod
    def _postfix(bar: tqdm, logbook: tools.Logbook) -> None:
        last = logbook[-1]
        bar.set_postfix(evals=last["evaluations"], hv=f"{last['hypervolume']:.4f}", front=last["front"])


class StopFlag:
    """Set by SIGTERM or SIGINT; the run checks it between chunks and generations.

    While scoring (`interruptible`) nothing is being written, so a signal stops
    the run at once instead of after the current chunk, which can last minutes
    with fine-tuning in the loop: Cancel takes effect within a second.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._raise = False

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        if self._raise:
            self._raise = False
            raise nsga2.StopRequested

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        if self.requested:
            raise nsga2.StopRequested
        self._raise = True
        try:
            yield
        finally:
            self._raise = False

    @contextmanager
    def installed(self) -> Iterator[StopFlag]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals reach the main thread only; an embedding app cancels by process
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in previous:
            signal.signal(s, self._handle)
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def _signal_name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum else "request"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    return message if isinstance(exc, GruqError) else f"{type(exc).__name__}: {message}".rstrip(": ")
