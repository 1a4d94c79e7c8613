"""NSGA-II on DEAP for integer bit-width genomes.

Idiomatic DEAP, after deap's examples/ga/nsga2.py: `creator` classes at module
level (so pool workers can unpickle individuals), a toolbox holding the
operators and the `map`, `selTournamentDCD` for mating and `selNSGA2` for
survival, a `ParetoFront` hall of fame for the answer.

Gene i is an integer in [low[i], high[i]] (2..8, narrowed by ranges and pins);
uniform crossover and a bounded step mutation keep every genome inside its
bounds. Fitness is (accuracy, cost) with weights (+1, -1). An infeasible
genome gets (-v, ref_cost * (1 + v)) for violation v > 0: dominated by every
feasible genome and ranked among infeasible ones by how far off it is, which
is Deb's constrained domination expressed through the fitness itself.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from deap import base, creator, tools
from deap.tools.emo import assignCrowdingDist  # not re-exported by deap.tools
from threadpoolctl import threadpool_limits

from gruq.genome import MAX_BITS, MIN_BITS, Genome, bops, homogeneous, size_bytes
from gruq.search import guided
from gruq.search.constraints import Constraints
from gruq.search.scoring import chunks, score_chunk
from gruq.store import Scored

creator.create("GruqFitness", base.Fitness, weights=(1.0, -1.0))
creator.create("GruqIndividual", list, fitness=creator.GruqFitness)

Individual = creator.GruqIndividual
MUTATION_STEPS = (-2, -1, 1, 2)
SEED_TRIES = 50  # random draws per slot when looking for a new, size-feasible genome


def make_toolbox(cons: Constraints, map_fn: Callable = map) -> base.Toolbox:
    """The operators of one run, bound to its gene bounds."""
    tb = base.Toolbox()
    tb.register("genes", random_genes, cons.low, cons.high)
    tb.register("individual", tools.initIterate, Individual, tb.genes)
    tb.register("mate", tools.cxUniform, indpb=0.5)
    tb.register("mutate", mut_step, low=cons.low, up=cons.high, indpb=1.0 / max(1, cons.free_genes))
    tb.register("select", tools.selNSGA2)
    tb.register("probes", guided.probes, cons)
    tb.register("settle", guided.settle, cons=cons)
    tb.register("score", score_chunk)
    tb.register("map", map_fn)
    return tb


def random_genes(low: Sequence[int], high: Sequence[int]) -> list[int]:
    return [random.randint(lo, hi) for lo, hi in zip(low, high)]


def mut_step(individual: list[int], low: Sequence[int], up: Sequence[int], indpb: float) -> tuple[list[int]]:
    """Move each free gene, with probability `indpb`, by 1 or 2 bits up or down.

    Bit widths are ordinal: a neighbour width is a better guess than a uniform
    redraw. A step that would leave the bounds goes the other way.
    """
    for i, (lo, hi) in enumerate(zip(low, up)):
        if lo < hi and random.random() < indpb:
            step = random.choice(MUTATION_STEPS)
            b = individual[i] + step
            if not lo <= b <= hi:
                b = individual[i] - step
            individual[i] = min(hi, max(lo, b))
    return (individual,)


def initial_population(toolbox: base.Toolbox, cons: Constraints, n: int, probes: Sequence[Genome] = ()) -> list:
    """The homogeneous genomes 2..8 (clipped into the bounds, within the size limit), then
    `probes` (see `first_population`), then random ones up to `n` genomes in all.

    With fewer slots than baselines, keep an evenly spread subset (both ends
    included). Random genomes are drawn new and within the size limit when a
    few tries allow it.
    """
    seeds: list[Genome] = []
    for b in range(MIN_BITS, MAX_BITS + 1):
        g = cons.clip(homogeneous(b, cons.shape.layers))
        if g not in seeds and cons.size_ok(g):
            seeds.append(g)
    if len(seeds) > n:
        seeds = [seeds[round(i * (len(seeds) - 1) / (n - 1))] for i in range(n)]
    seeds += [g for g in dict.fromkeys(probes) if g not in seeds][: max(0, n - len(seeds))]
    population = [Individual(g) for g in seeds]
    seen = set(seeds)
    while len(population) < n:
        ind = _fresh_individual(toolbox, cons, seen)
        seen.add(tuple(ind))
        population.append(ind)
    return population


def first_population(toolbox: base.Toolbox, cons: Constraints, n: int) -> list:
    """The first generation of a run: the baselines, the first sensitivity probes, then random
    genomes if that makes fewer than `n`; the next generations score the probes left first."""
    return initial_population(toolbox, cons, n, toolbox.probes())


@threadpool_limits.wrap(limits=1, user_api="blas")  # tiny matrices; threads only contend (measured)
def propose(
    toolbox: base.Toolbox,
    cons: Constraints,
    population: list,
    front: Sequence,
    cache: dict[Genome, float],
    k: int,
    cxpb: float,
) -> list:
    """The next generation's offspring: `k` new genomes, the most promising first.

    Three sources (see `gruq.search.guided`): the surrogate's predicted
    front, one-bit moves and size-neutral swaps of the front's members, and
    DEAP offspring of the population (DCD tournament, crossover, mutation),
    all with the genes that cost nothing settled. The candidates of largest
    predicted hypervolume gain take all but one slot in EXPLORE_SHARE; the
    remaining slots go to offspring in DEAP's order, so the search keeps
    exploring where the surrogate is wrong, until EXPLORE_UNTIL genomes are
    scored; from then on one slot in EXPLORE_SHARE_LATE goes to the front
    members' greedy steps (`guided.descents`), after the measured greedy walk
    (`walk`) has taken the generation's first slots. The switch depends on the
    scored genomes only, never on the budget, so a shorter budget run stays
    the start of a longer one.
    Fewer than `k` when the space has no more new genomes.
    """
    first = [g for g in dict.fromkeys(toolbox.probes()) if g not in cache][:k]
    k -= len(first)
    model = guided.Surrogate(cons, cache)
    taken: dict[Genome, float] = dict.fromkeys(first, 1.0)

    def offer(genomes: Sequence[Genome], predicted: Sequence[float]) -> None:
        for g, p in zip(genomes, predicted):
            if g not in cache and g not in taken and cons.size_ok(g):
                taken[g] = float(p)

    members = [tuple(ind) for ind in front]
    moves = guided.neighbours(members, cons) + guided.swaps(members, cons)
    if moves:
        new, old = zip(*moves)
        offer(new, model.moved(list(new), list(old), [cache[m] for m in old]))
    plan = model.plan()
    offer(plan, model.predict(plan))
    children = list(dict.fromkeys(model.settle(ind) for ind in vary(toolbox, population, cxpb)))
    offer(children, model.predict(children))
    if len(cache) < guided.EXPLORE_UNTIL:
        explore = [g for g in children if g in taken and g not in first]
        share = guided.EXPLORE_SHARE
    else:
        explore = [g for g in dict.fromkeys(guided.descents(members, cache, model, cons)) if g not in first]
        share = guided.EXPLORE_SHARE_LATE
    n_explore = min(len(explore), k // share)
    pool = [g for g in taken if g not in first]
    exploit = guided.pick(pool, [taken[g] for g in pool], [ind.fitness.values for ind in front], cons, k - n_explore)
    chosen = first + exploit + [g for g in explore if g not in exploit][:n_explore]
    return [Individual(g) for g in chosen]


def walk(cons: Constraints, cache: dict[Genome, float], score: Callable[[list], list], room: int) -> list:
    """Steps of the measured greedy walk (`guided.greedy_walk`), up to `room` genomes in all (the
    last step cut to fit), each step's genomes scored by `score` (which returns the individuals
    it scored, fewer at the end of a budget) before the next step is chosen from the new
    measurements. The individuals scored, in order.

    Each step waits for the one before, so these are scored in small rounds
    inside the generation. Deterministic: the walk reads only `cache`.
    """
    walked: list = []
    while len(walked) < room:
        step = guided.greedy_walk(cache, guided.Surrogate(cons, cache), cons)[: room - len(walked)]
        kept = score([Individual(g) for g in step]) if step else []
        if not kept:
            break
        walked += kept
    return walked


def _fresh_individual(toolbox: base.Toolbox, cons: Constraints, seen: set[Genome]):
    ind = toolbox.individual()
    for _ in range(SEED_TRIES):
        if tuple(ind) not in seen and cons.size_ok(tuple(ind)):
            break
        ind = toolbox.individual()
    return ind


def assign_crowding(population: list) -> None:
    """Crowding distances within the population's own fronts (what selTournamentDCD reads).

    Recomputed from the population alone, so a resumed run, which restores
    only genomes and fitnesses, mates exactly as the uninterrupted run did.
    """
    for front in tools.sortNondominated(population, len(population)):
        assignCrowdingDist(front)


def select_parents(population: list) -> list:
    """selTournamentDCD for any population size (it wants multiples of 4)."""
    k = len(population)
    rest = k % 4
    chosen = tools.selTournamentDCD(population, k - rest)
    if rest:
        chosen += tools.selTournamentDCD(population, 4)[:rest]
    return chosen


def vary(toolbox: base.Toolbox, population: list, cxpb: float) -> list:
    """Offspring as in DEAP's nsga2 example: DCD tournament, clone, crossover, mutation."""
    assign_crowding(population)
    offspring = [toolbox.clone(ind) for ind in select_parents(population)]
    for ind1, ind2 in zip(offspring[::2], offspring[1::2]):
        if random.random() <= cxpb:
            toolbox.mate(ind1, ind2)
        toolbox.mutate(ind1)
        toolbox.mutate(ind2)
        del ind1.fitness.values, ind2.fitness.values
    if len(offspring) % 2:
        toolbox.mutate(offspring[-1])
        del offspring[-1].fitness.values
    return offspring


def survivors(toolbox: base.Toolbox, population: list, offspring: list, mu: int) -> list:
    """selNSGA2 over parents and offspring, duplicates last: a copy of a genome
    takes a place only when there are not enough distinct genomes."""
    unique, copies, seen = [], [], set()
    for ind in population + offspring:
        (copies if tuple(ind) in seen else unique).append(ind)
        seen.add(tuple(ind))
    candidates = unique + copies[: max(0, mu - len(unique))]
    return toolbox.select(candidates, mu)


def fitness_values(genome: Genome, accuracy: float | None, cons: Constraints) -> tuple[float, float]:
    """(accuracy, cost) if feasible, else the penalised values described in the module doc."""
    v = cons.violation(genome, accuracy)
    if v > 0:
        return (-v, cons.ref_cost * (1.0 + v))
    assert accuracy is not None
    return (accuracy, cons.cost(genome))


def individual(genome: Genome, cache: dict[Genome, float], cons: Constraints):
    """An individual restored from its genome, with its fitness from the cache (resume)."""
    ind = Individual(genome)
    ind.fitness.values = fitness_values(genome, cache.get(genome), cons)
    return ind


def evaluate(
    toolbox: base.Toolbox,
    individuals: list,
    cons: Constraints,
    cache: dict[Genome, float],
    *,
    generation: int,
    chunk_size: int,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[Scored]:
    """Give every individual without a fitness one, scoring each new genome once.

    New genomes within the size limit are scored together, in chunks through
    `toolbox.map`; genomes over the limit are never scored. `cache` gains the
    new accuracies; the new records are returned for the store.
    """
    pending = [ind for ind in individuals if not ind.fitness.valid]
    new = list(dict.fromkeys(g for g in map(tuple, pending) if g not in cache and cons.size_ok(g)))
    batches = chunks(new, chunk_size)
    scored: list[Scored] = []
    for batch, accuracies in zip(batches, toolbox.map(toolbox.score, batches)):
        if should_stop():
            raise StopRequested
        for g, a in zip(batch, accuracies):
            cache[g] = a
            scored.append(_record(g, a, cons, generation))
    if should_stop():
        raise StopRequested
    for ind in pending:
        g = tuple(ind)
        ind.fitness.values = fitness_values(g, cache.get(g), cons)
    return scored


def _record(genome: Genome, accuracy: float, cons: Constraints, generation: int) -> Scored:
    return Scored(
        genome=genome,
        accuracy=accuracy,
        size_bytes=size_bytes(genome, cons.shape),
        bops=bops(genome, cons.shape),
        generation=generation,
        feasible=cons.feasible(genome, accuracy),
    )


def feasible(individuals: list, cons: Constraints) -> list:
    """Individuals whose fitness is their objectives (penalised ones have accuracy < 0)."""
    return [ind for ind in individuals if ind.fitness.values[0] >= 0 and cons.size_ok(tuple(ind))]


class StopRequested(Exception):
    """Raised between chunks when the run has been asked to stop (a signal)."""
