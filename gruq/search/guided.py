"""Where NSGA-II's scorings go: sensitivity probes, a surrogate, local refinement.

Plain NSGA-II spends most of a small budget on genomes far from the front.
Three things about this problem let a search do better, and this module
holds them (the generational loop and the DEAP operators stay in
`gruq.search.nsga2`):

- The cost structure. Under the size objective only the six weight genes
  cost anything; the other eleven cost nothing, so on the front they sit
  where accuracy is best: their highest allowed width. The search "settles"
  them there and spends its budget on the genes that trade accuracy for cost
  (which genes cost is computed from the objective, so BOPs and stacked
  layers work the same way).
- Per-operator sensitivities. The first generation scores, beside the
  homogeneous genomes, one-operator-lowered probes: the all-high genome with
  one cost gene at each lower width. They cost one scoring each and count in
  the budget.
- An additive surrogate. The logit of accuracy is fitted, by least squares
  over every genome scored so far, as an intercept plus one term per (gene,
  width): losses compound (two lowered genes cost less than the sum of their
  losses when accuracy is already low), which the logit scale captures and a
  plain additive accuracy does not (it halved the surrogate's error on smnist's
  scored genomes). A
  dynamic programme over the genes gives the surrogate's predicted front;
  one-bit moves of the true front's members, predicted from the member's
  own measured accuracy plus the surrogate's difference, refine it; DEAP
  crossover and mutation offspring keep exploring. Each generation scores
  the candidates with the largest predicted hypervolume gain, chosen one at
  a time as if each pick's prediction were true (so picks spread along the
  front instead of piling into one gap). Besides one-bit moves, front
  members get size-neutral swaps (a bit from one cost gene to another); once
  EXPLORE_UNTIL genomes are scored, each generation first takes steps of a
  measured greedy walk from the all-high genome (`greedy_walk`), each step
  scored before the next is chosen (`gruq.search.nsga2.walk`), until they
  fill the generation or the walk has reached the lowest widths (one step a
  generation left it 6-7 of greedy reduction's 36 steps deep at 400
  scorings on smnist, where greedy's mid-size genomes were better than
  gruq's); the slots it leaves go, one in EXPLORE_SHARE_LATE, to each front
  member's greedy step (`descents`: the one-bit reduction predicted to lose
  least accuracy per byte, greedy bit reduction from every front member).

Everything here is a function of the constraints, the scored genomes (read
in sorted order) and the `random` module's state, so a run stays
deterministic for its seed, independent of the number of workers, and a
resumed run chooses exactly what the uninterrupted one chose.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

from gruq.genome import Genome
from gruq.search.constraints import Constraints

RIDGE = 1e-6  # keeps the least squares well posed before every (gene, width) has been seen
SETTLE_MARGIN = 0.1  # logit units: about 0.5 points of accuracy near 95%
CLIP = 0.005  # accuracies are clipped into [CLIP, 1 - CLIP] before the logit: 0 and 1 stay finite
EXPLORE_SHARE = 4  # one pick in EXPLORE_SHARE goes to NSGA-II offspring, predicted best first
EXPLORE_UNTIL = 200  # ... until this many genomes are scored; then those picks go to the front's greedy steps
EXPLORE_SHARE_LATE = 2  # ... and from then on one pick in EXPLORE_SHARE_LATE


def top(cons: Constraints) -> Genome:
    """Every gene at its highest allowed width: the most accurate genome, the probes' origin."""
    return tuple(cons.high)


@lru_cache(maxsize=64)
def cost_genes(cons: Constraints) -> tuple[int, ...]:
    """Free genes whose width changes the cost (under size: the weight genes)."""
    t = top(cons)
    base = cons.cost(t)
    return tuple(
        i for i, (lo, hi) in enumerate(zip(cons.low, cons.high)) if lo < hi and cons.cost(_with(t, i, lo)) != base
    )


def settle(genome: Sequence[int], cons: Constraints) -> Genome:
    """`genome` with every gene that costs nothing at its highest allowed width."""
    costly = set(cost_genes(cons))
    return tuple(b if i in costly else hi for i, (b, hi) in enumerate(zip(genome, cons.high)))


def probes(cons: Constraints) -> list[Genome]:
    """Each cost gene lowered alone, from the all-high genome, to each lower width (size limit kept).

    Widths in spreading order (lowest, then the one farthest from those taken
    and from the highest, ...), level by level across the genes: a run that
    scores only the first probes still sees every gene over its range, and
    the surrogate interpolates the widths not probed yet.
    """
    t = top(cons)
    genes = cost_genes(cons)
    orders = {i: _spread(cons.low[i], cons.high[i]) for i in genes}
    out = []
    for rank in range(max((len(o) for o in orders.values()), default=0)):
        for i in genes:
            if rank < len(orders[i]):
                g = _with(t, i, orders[i][rank])
                if cons.size_ok(g):
                    out.append(g)
    return out


def _spread(low: int, high: int) -> list[int]:
    """Widths low..high-1, lowest first, then each time the one farthest from those already taken
    (the highest width counts as taken); ties to the lower width."""
    if low >= high:
        return []
    out, todo = [low], list(range(low + 1, high))
    while todo:
        b = max(todo, key=lambda w: (min(abs(w - t) for t in [high, *out]), -w))
        out.append(b)
        todo.remove(b)
    return out


def logit(accuracy: np.ndarray | float) -> np.ndarray:
    a = np.clip(np.asarray(accuracy, dtype=float), CLIP, 1.0 - CLIP)
    return np.log(a / (1.0 - a))


def expit(z: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


class Surrogate:
    """logit(accuracy) ~ intercept + one term per (free gene, width), the highest width's term being 0.

    Fitted by (barely) ridge least squares on every genome scored so far, read
    in sorted order so the fit never depends on the order of scoring. Widths
    no scored genome has are interpolated from their gene's nearest ones.
    """

    def __init__(self, cons: Constraints, cache: dict[Genome, float]) -> None:
        self.cons = cons
        self.genes = tuple(i for i, (lo, hi) in enumerate(zip(cons.low, cons.high)) if lo < hi)
        self.costly = cost_genes(cons)
        self.columns = [(i, b) for i in self.genes for b in range(cons.low[i], cons.high[i])]
        self.index = {c: k + 1 for k, c in enumerate(self.columns)}
        rows = sorted(cache)
        self.weights = np.zeros(len(self.columns) + 1)
        if rows:
            X = self._design(rows)
            y = logit(np.array([cache[g] for g in rows]))
            A = X.T @ X + RIDGE * np.eye(X.shape[1])
            self.weights = np.linalg.solve(A, X.T @ y)
            self._interpolate(X[:, 1:].any(axis=0))

    def _interpolate(self, seen: np.ndarray) -> None:
        """Linear between the two nearest seen widths (the highest width's term is 0);
        below the lowest seen width, that width's term."""
        for i in self.genes:
            widths = range(self.cons.low[i], self.cons.high[i])
            known = {self.cons.high[i]: 0.0}
            known.update({b: self.weights[self.index[(i, b)]] for b in widths if seen[self.index[(i, b)] - 1]})
            xs = sorted(known)
            for b in widths:
                if b not in known:
                    self.weights[self.index[(i, b)]] = float(np.interp(b, xs, [known[x] for x in xs]))

    def _design(self, genomes: Sequence[Genome]) -> np.ndarray:
        G = np.asarray(genomes, dtype=np.int64)
        genes = np.array([i for i, _ in self.columns], dtype=np.int64)
        widths = np.array([b for _, b in self.columns], dtype=np.int64)
        X = np.ones((len(genomes), len(self.columns) + 1))
        X[:, 1:] = G[:, genes] == widths[None, :]
        return X

    def predict(self, genomes: Sequence[Genome]) -> np.ndarray:
        """Predicted accuracies."""
        if not genomes:
            return np.zeros(0)
        return expit(self._design(genomes) @ self.weights)

    def moved(self, new: Sequence[Genome], old: Sequence[Genome], measured: Sequence[float]) -> np.ndarray:
        """Predicted accuracies of `new`, each from its `old` genome's measured accuracy plus the
        surrogate's difference (on the logit scale): local predictions, right where `old` is."""
        if not new:
            return np.zeros(0)
        shift = (self._design(new) - self._design(old)) @ self.weights
        return expit(logit(np.asarray(measured, dtype=float)) + shift)

    def term(self, i: int, b: int) -> float:
        """The fitted change of logit(accuracy) when gene i is at width b instead of its highest."""
        k = self.index.get((i, b))
        return 0.0 if k is None else float(self.weights[k])

    def settle(self, genome: Sequence[int]) -> Genome:
        """`genome` with each gene that costs nothing at its highest width, or at a lower one the
        surrogate finds clearly more accurate (by SETTLE_MARGIN on the logit scale: a lower width
        that is better by noise alone would only add quantization error)."""
        g = list(genome)
        for i in self.genes:
            if i not in self.costly:
                hi = self.cons.high[i]
                best = max(range(hi, self.cons.low[i] - 1, -1), key=lambda b: self.term(i, b))
                g[i] = best if self.term(i, best) > self.term(i, hi) + SETTLE_MARGIN else hi
        return tuple(g)

    def plan(self) -> list[Genome]:
        """The surrogate's predicted front: settled genomes no other predicted genome beats on both objectives.

        A dynamic programme over the cost genes keeps, after each gene, the
        partial assignments not dominated in (additive cost, predicted
        logit of accuracy). Size is additive in the genes; BOPs are approximated by
        each gene's own cost change from the all-high genome.
        """
        t = self.settle(top(self.cons))
        base = self.cons.cost(t)
        states: list[tuple[float, float, Genome]] = [(base, float(self._design([t])[0] @ self.weights), t)]
        for i in self.costly:
            steps = [
                (b, self.cons.cost(_with(t, i, b)) - base, self.term(i, b) - self.term(i, t[i]))
                for b in range(t[i], self.cons.low[i] - 1, -1)
            ]
            grown = [(cost + dc, acc + da, _with(g, i, b)) for cost, acc, g in states for b, dc, da in steps]
            states = _nondominated(grown)  # logit is monotone: dominance is as on accuracy
        return [g for _, _, g in states if self.cons.size_ok(g)]


def neighbours(front: Iterable[Genome], cons: Constraints) -> list[tuple[Genome, Genome]]:
    """(neighbour, member): every one-bit move of a free gene of a front member, within bounds.

    Moves of cost genes trade accuracy for cost; moves of the others look for
    the widths at which a member is most accurate."""
    genes = [i for i, (lo, hi) in enumerate(zip(cons.low, cons.high)) if lo < hi]
    out = []
    for m in front:
        for i in genes:
            for step in (-1, 1):
                b = m[i] + step
                if cons.low[i] <= b <= cons.high[i]:
                    out.append((_with(m, i, b), m))
    return out


def swaps(front: Iterable[Genome], cons: Constraints) -> list[tuple[Genome, Genome]]:
    """(neighbour, member): one cost gene of a front member a bit lower and another a bit higher.

    The cost stays about the same, so these slide a member along the front to
    a more accurate allocation of the same bytes, which one-bit moves alone
    reach only through a dominated genome."""
    genes = cost_genes(cons)
    out = []
    for m in front:
        for i in genes:
            if m[i] <= cons.low[i]:
                continue
            for j in genes:
                if j != i and m[j] < cons.high[j]:
                    out.append((_with(_with(m, i, m[i] - 1), j, m[j] + 1), m))
    return out


def descents(front: Sequence[Genome], cache: dict[Genome, float], model: Surrogate, cons: Constraints) -> list[Genome]:
    """Each front member's greedy step: its one-bit cost reduction predicted to lose least accuracy
    per unit of cost saved (new, within the size limit), members with the cheapest loss first.

    A greedy reduction (AIMET's automatic mixed precision) takes this step from
    one genome and measures it; taking it from every member of the front
    refines the whole front at once, with the surrogate choosing the step."""
    steps: list[tuple[float, Genome]] = []
    for m in sorted(front):
        cost = _cost(cons, m)
        moves = [g for g in _reductions(m, cons) if g not in cache]
        if not moves:
            continue
        predicted = model.moved(moves, [m] * len(moves), [cache[m]] * len(moves))
        ratio = [(cache[m] - p) / (cost - _cost(cons, g)) for g, p in zip(moves, predicted)]
        k = min(range(len(moves)), key=lambda j: (ratio[j], moves[j]))
        steps.append((ratio[k], moves[k]))
    return [g for _, g in sorted(steps, key=lambda s: s[0])]


def greedy_walk(cache: dict[Genome, float], model: Surrogate, cons: Constraints) -> list[Genome]:
    """The next genomes to score on the measured greedy walk from the all-high genome.

    The walk is greedy bit reduction (AIMET's automatic mixed precision) on
    measured accuracies: from each genome it takes the scored one-bit cost
    reduction that lost least accuracy per unit of cost saved. Where an
    unscored reduction is predicted (from the genome's measured accuracy plus
    the surrogate's difference) to lose less than the best scored one, the
    walk stops there and returns those reductions, cheapest predicted loss
    first. The surrogate only spares the scoring of reductions predicted to
    lose more than a measured one, so the walk goes deeper per scoring than
    greedy reduction (which scores every reduction at every step). Why measured
    steps: on smnist (tuning seeds) greedy reduction's mid-size genomes were
    more accurate than those the surrogate's predictions led to. Under a size
    limit the all-high genome may not fit (it is then never scored): the walk
    starts from the most accurate scored genome that fits. It stops at a
    genome below the accuracy floor: every step from there is infeasible too.
    """
    m = _walk_start(cache, cons)
    while m in cache and (cons.min_accuracy is None or cache[m] >= cons.min_accuracy):
        cost = _cost(cons, m)
        moves = _reductions(m, cons)
        scored = [g for g in moves if g in cache]
        new = [g for g in moves if g not in cache]
        best = min(((cache[m] - cache[g]) / (cost - _cost(cons, g)), g) for g in scored) if scored else None
        if new:
            predicted = model.moved(new, [m] * len(new), [cache[m]] * len(new))
            ratios = sorted(((cache[m] - p) / (cost - _cost(cons, g)), g) for g, p in zip(new, predicted))
            better = [g for r, g in ratios if best is None or r < best[0]]
            if better:
                return better
        if best is None:
            return []
        m = best[1]
    return []


def _walk_start(cache: dict[Genome, float], cons: Constraints) -> Genome | None:
    """The all-high genome, or under a size limit it does not fit, the most accurate scored genome
    that fits (the cheaper on a tie); None before any is scored."""
    t = top(cons)
    if cons.size_ok(t):
        return t
    fits = [g for g in cache if cons.size_ok(g)]
    return max(fits, key=lambda g: (cache[g], -_cost(cons, g), g), default=None)


def _reductions(genome: Genome, cons: Constraints) -> list[Genome]:
    """The genome's one-bit reductions of a cost gene that cost less and fit the size limit:
    the steps of greedy bit reduction."""
    cost = _cost(cons, genome)
    steps = (_with(genome, i, genome[i] - 1) for i in cost_genes(cons) if genome[i] > cons.low[i])
    return [g for g in steps if cons.size_ok(g) and _cost(cons, g) < cost]


def pick(
    candidates: Sequence[Genome],
    predicted: Sequence[float],
    front: Sequence[tuple[float, float]],
    cons: Constraints,
    k: int,
) -> list[Genome]:
    """The `k` candidates of largest predicted hypervolume gain, chosen one at a time.

    `front` holds the (accuracy, cost) points of the feasible front. After each
    pick its prediction joins the front, so the next pick is what adds most
    given the first. Candidates predicted dominated rank by how little they
    fall short of the front at their cost. Ties keep the candidates' order.
    """
    if k <= 0 or not candidates:
        return []
    ref = cons.ref_cost
    x = np.array([_cost(cons, g) / ref for g in candidates])
    a = np.clip(np.asarray(predicted, dtype=float), 0.0, 1.0)
    if cons.min_accuracy is not None:
        a = np.where(a >= cons.min_accuracy, a, a - 1.0)  # predicted infeasible: last
    points = [(acc, cost / ref) for acc, cost in front]

    chosen: list[int] = []
    free = np.ones(len(candidates), dtype=bool)
    for _ in range(min(k, len(candidates))):
        score = _gain_or_shortfall(x, a, points)
        score[~free] = -np.inf
        j = int(np.argmax(score))
        chosen.append(j)
        free[j] = False
        points.append((float(a[j]), float(x[j])))
    return [candidates[j] for j in chosen]


def _gain_or_shortfall(x: np.ndarray, a: np.ndarray, points: list[tuple[float, float]]) -> np.ndarray:
    """Hypervolume a point (x, a) would add to the staircase of `points` (normalised cost, accuracy);
    where it adds nothing, minus its shortfall below the staircase at its cost."""
    pts = sorted((c, acc) for acc, c in points if c <= 1.0)
    starts, levels, best = [0.0], [0.0], 0.0
    for c, acc in pts:
        if acc > best:
            best = acc
            starts.append(c)
            levels.append(acc)
    lo = np.array(starts)
    hi = np.append(lo[1:], 1.0)
    lv = np.array(levels)
    overlap = np.clip(np.minimum(hi[None, :], 1.0) - np.maximum(lo[None, :], x[:, None]), 0.0, None)
    gain = (np.clip(a[:, None] - lv[None, :], 0.0, None) * overlap).sum(axis=1)
    at = lv[np.searchsorted(lo, x, side="right") - 1]
    return np.where(gain > 0, gain, a - at)


@lru_cache(maxsize=1 << 16)
def _cost(cons: Constraints, genome: Genome) -> float:
    return cons.cost(genome)


def _nondominated(states: list[tuple[float, float, Genome]]) -> list[tuple[float, float, Genome]]:
    """States sorted by cost, keeping each only if it is more accurate than every cheaper one."""
    out, best = [], -np.inf
    for s in sorted(states, key=lambda s: (s[0], -s[1], s[2])):
        if s[1] > best + 1e-12:
            out.append(s)
            best = s[1]
    return out


def _with(genome: Sequence[int], i: int, b: int) -> Genome:
    g = list(genome)
    g[i] = b
    return tuple(g)
