"""The guided search (sensitivity probes, surrogate, front refinement) and `--budget`.

Specification: the probes lower one cost gene at a time and respect every
constraint; the surrogate fits an additive accuracy exactly and its planned
front is non-dominated under its own predictions; picks go to the largest
predicted hypervolume gain and spread along the front; the measured greedy
walk scores each step before choosing the next, several steps a generation;
offspring are new, in bounds and within the size limit; a budget run scores
exactly N distinct genomes, is a prefix of a longer budget run, stops at
whichever of --gens and --budget comes first, and resumes after a crash (or
kill -9) to the uninterrupted run's front (the walk included).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from test_search import resume, search
from test_search_cli import ROOT, TESTS, in_process, one_error_line, wait_for
from test_search_fake import SHAPE, FakeEvaluator

from gruq.genome import bops, homogeneous, size_bytes
from gruq.ops import INDEX, LINEAR
from gruq.search import guided, nsga2
from gruq.search.backend import ENV_HOOK
from gruq.search.config import SearchConfig
from gruq.search.constraints import resolve
from gruq.store import individuals, list_runs, run_detail

SIZE8 = size_bytes(homogeneous(8), SHAPE)


def constraints(**settings: Any):
    return resolve(SearchConfig(task="fake", **settings), SHAPE)


# -- probes and the cost structure ---------------------------------------------------------


def test_under_size_only_the_weight_genes_cost_and_under_bops_more_do() -> None:
    assert guided.cost_genes(constraints()) == tuple(sorted(LINEAR))
    by_bops = guided.cost_genes(constraints(objective="bops"))
    assert set(LINEAR) < set(by_bops) and INDEX["add_h"] in by_bops and INDEX["add_r"] not in by_bops


def test_probes_lower_one_cost_gene_at_a_time_to_every_lower_width() -> None:
    cons = constraints()
    probes = guided.probes(cons)
    assert len(probes) == len(set(probes)) == 6 * 6
    for g in probes:
        lowered = [i for i, b in enumerate(g) if b != 8]
        assert len(lowered) == 1 and lowered[0] in LINEAR
    assert {g[INDEX["lin_hn"]] for g in probes if g[INDEX["lin_hn"]] != 8} == set(range(2, 8))
    assert [g[INDEX["lin_xr"]] for g in probes[:6]] == [2, 8, 8, 8, 8, 8]  # lowest widths first, gene by gene


def test_probes_respect_pins_ranges_and_the_size_limit() -> None:
    cons = constraints(pins={"lin_hn": 6}, bits_ranges={"lin_hz": (5, 7), "add_h": (3, 6)}, max_size_pct=95)
    probes = guided.probes(cons)
    assert probes and all(cons.in_bounds(g) and cons.size_ok(g) for g in probes)
    assert all(g[INDEX["lin_hn"]] == 6 and g[INDEX["add_h"]] == 6 for g in probes)
    assert {g[INDEX["lin_hz"]] for g in probes} == {5, 6, 7}


# -- the surrogate --------------------------------------------------------------------------


def additive(g) -> float:
    """An accuracy whose logit is additive in the genes: losses compound as accuracy falls."""
    return float(guided.expit(2.5 - sum(0.02 * (8 - b) * (1 + i % 3) for i, b in enumerate(g))))


def lowered(m):
    """The one-bit reductions of a weight gene: the steps of greedy bit reduction under size."""
    return [m[:i] + (m[i] - 1,) + m[i + 1 :] for i in LINEAR if m[i] > 2]


def test_the_surrogate_fits_an_accuracy_additive_in_logit_and_plans_a_non_dominated_front() -> None:
    cons = constraints()
    cache = {g: additive(g) for g in [homogeneous(b) for b in range(2, 9)] + guided.probes(cons)}
    model = guided.Surrogate(cons, cache)
    tests = [(8, 2, 8, 8, 3, 5, 8, 8, 4, 6, 8, 8, 8, 8, 8, 8, 8), homogeneous(5)]
    assert model.predict(tests) == pytest.approx([additive(g) for g in tests], abs=1e-3)
    plan = model.plan()
    assert len(plan) > 10 and all(model.settle(g) == g for g in plan)
    points = sorted((cons.cost(g), -p) for g, p in zip(plan, model.predict(plan)))
    assert all(b[1] < a[1] for a, b in zip(points, points[1:]))  # cheaper is always less accurate


def test_a_move_is_predicted_from_the_measured_accuracy_of_the_genome_it_moves_from() -> None:
    cons = constraints()
    cache = {g: additive(g) for g in [homogeneous(b) for b in range(2, 9)] + guided.probes(cons)}
    model = guided.Surrogate(cons, cache)
    old = homogeneous(6)
    new = old[:4] + (5,) + old[5:]
    measured = additive(old) - 0.05  # the surrogate is off here: the move keeps the offset, on the logit scale
    expected = guided.expit(guided.logit(measured) + guided.logit(additive(new)) - guided.logit(additive(old)))
    assert model.moved([new], [old], [measured]) == pytest.approx([expected], abs=1e-3)


def test_swaps_move_a_bit_from_one_cost_gene_to_another_within_bounds() -> None:
    cons = constraints(bits_ranges={"lin_hn": (7, 8)})
    member = list(homogeneous(8))
    member[INDEX["lin_hz"]], member[INDEX["lin_xr"]] = 4, 6
    member = tuple(member)
    swaps = guided.swaps([member], cons)
    assert swaps and all(m == member for _, m in swaps)
    for g, _ in swaps:
        changed = [i for i in range(len(g)) if g[i] != member[i]]
        assert len(changed) == 2 and set(changed) <= set(LINEAR) and sum(g) == sum(member)
        assert cons.in_bounds(g)
    # only lin_hz and lin_xr can take a bit; every cost gene above its lowest width can give one
    assert {(g[INDEX["lin_hz"]], g[INDEX["lin_xr"]]) for g, _ in swaps} == {(3, 7), (5, 5), (5, 6), (4, 7)}
    assert len(swaps) == 5 + 5  # each of the two takers from each of the five other cost genes


def test_each_front_member_takes_the_one_bit_reduction_predicted_to_lose_least_per_byte() -> None:
    cons = constraints()
    cache = {g: additive(g) for g in [homogeneous(b) for b in range(2, 9)] + guided.probes(cons)}
    model = guided.Surrogate(cons, cache)
    front = [homogeneous(6), homogeneous(4)]
    steps = guided.descents(front, cache, model, cons)
    assert len(steps) == 2 and all(g not in cache and cons.size_ok(g) for g in steps)
    for m in front:
        (step,) = [g for g in steps if sum(a != b for a, b in zip(g, m)) == 1]
        moves = [m[:i] + (m[i] - 1,) + m[i + 1 :] for i in LINEAR]
        moves = [g for g in moves if g not in cache]

        def per_byte(g, m=m):
            return (cache[m] - additive(g)) / (cons.cost(m) - cons.cost(g))

        assert per_byte(step) == pytest.approx(min(map(per_byte, moves)), abs=1e-4)


def test_the_greedy_walk_takes_measured_steps_and_scores_only_those_predicted_to_beat_them() -> None:
    cons = constraints()
    cache = {g: additive(g) for g in [homogeneous(b) for b in range(2, 9)] + lowered(guided.top(cons))}
    model = guided.Surrogate(cons, cache)

    def measured_step(m):
        return min(lowered(m), key=lambda g: (cache[m] - cache[g]) / (cons.cost(m) - cons.cost(g)))

    first = measured_step(guided.top(cons))  # every reduction of the top genome is scored
    walk = guided.greedy_walk(cache, model, cons)
    assert sorted(walk) == sorted(lowered(first))  # none of them scored: all predicted to beat nothing
    cache.update({g: additive(g) for g in walk})
    second = measured_step(first)
    assert sorted(guided.greedy_walk(cache, model, cons)) == sorted(lowered(second))
    free = lowered(second)[0]
    cache[free] = cache[second]  # measured to lose nothing: no prediction beats it, the walk takes it
    assert sorted(guided.greedy_walk(cache, model, cons)) == sorted(lowered(free))


def test_the_walk_takes_several_measured_steps_each_chosen_after_the_one_before_is_scored() -> None:
    cons = constraints()
    cache = {g: additive(g) for g in [homogeneous(b) for b in range(2, 9)]}
    rounds: list[list] = []

    def score(individuals: list) -> list:
        rounds.append([tuple(ind) for ind in individuals])
        cache.update({tuple(ind): additive(tuple(ind)) for ind in individuals})
        return individuals

    walked = nsga2.walk(cons, cache, score, room=15)
    assert [tuple(ind) for ind in walked] == [g for r in rounds for g in r] and len(walked) == 15
    assert len(rounds) >= 3
    m = guided.top(cons)
    for r in rounds:  # each round: the reductions of the best measured genome of the round before
        assert set(r) <= set(lowered(m))
        m = min(r, key=lambda g: ((cache[m] - cache[g]) / (cons.cost(m) - cons.cost(g)), g))


def test_the_walk_stops_where_the_budget_does() -> None:
    cons = constraints()
    cache = {g: additive(g) for g in [homogeneous(b) for b in range(2, 9)]}
    calls = []

    def two_left(individuals: list) -> list:
        calls.append(len(individuals))
        kept = individuals[: max(0, 2 - sum(calls[:-1]))]
        cache.update({tuple(ind): additive(tuple(ind)) for ind in kept})
        return kept

    assert len(nsga2.walk(cons, cache, two_left, room=20)) == 2 and len(calls) <= 2


def test_under_a_size_limit_the_walk_starts_from_the_most_accurate_genome_that_fits() -> None:
    cons = constraints(max_size_pct=60)
    assert not cons.size_ok(guided.top(cons))  # never scored: the walk cannot start there
    cache = {g: additive(g) for g in [homogeneous(b) for b in range(2, 9)] if cons.size_ok(g)}
    start = max(cache, key=cache.get)
    walk = guided.greedy_walk(cache, guided.Surrogate(cons, cache), cons)
    assert walk and set(walk) <= set(lowered(start)) and all(cons.size_ok(g) for g in walk)


def test_the_walk_stops_below_the_accuracy_floor() -> None:
    cache = {g: additive(g) for g in [homogeneous(b) for b in range(2, 9)]}
    floor = constraints(min_accuracy=cache[guided.top(constraints())] + 0.01)
    assert guided.greedy_walk(cache, guided.Surrogate(floor, cache), floor) == []
    below = constraints(min_accuracy=cache[guided.top(constraints())] - 0.01)
    assert guided.greedy_walk(cache, guided.Surrogate(below, cache), below)


def test_settling_puts_free_genes_at_the_width_the_surrogate_finds_most_accurate() -> None:
    cons = constraints()
    peak = homogeneous(8)[:2] + (5,) + homogeneous(8)[3:]  # add_r at 5 bits is best here
    cache = {g: 0.9 + (0.02 if g[2] == 5 else 0.0) for g in [homogeneous(8), peak, homogeneous(2)]}
    settled = guided.Surrogate(cons, cache).settle(homogeneous(3))
    assert settled[2] == 5 and all(settled[i] == 3 for i in LINEAR)


def test_a_free_gene_stays_at_its_highest_width_when_a_lower_one_is_better_by_noise_only() -> None:
    cons = constraints()
    peak = homogeneous(8)[:2] + (5,) + homogeneous(8)[3:]
    cache = {g: 0.9 + (0.001 if g[2] == 5 else 0.0) for g in [homogeneous(8), peak, homogeneous(2)]}
    assert guided.Surrogate(cons, cache).settle(homogeneous(3))[2] == 8


def test_the_first_pick_is_the_largest_gain_and_the_next_fills_another_gap() -> None:
    cons = constraints()
    front = [(0.9, SIZE8), (0.5, 0.5 * SIZE8)]
    cheap_good = homogeneous(5)  # about 0.72 of the size
    candidates = [homogeneous(7), cheap_good, homogeneous(6)]
    predicted = [0.95, 0.89, 0.89]
    picks = guided.pick(candidates, predicted, front, cons, 2)
    assert picks[0] == cheap_good and picks[1] == homogeneous(7)  # homogeneous(6) lies in the gap already taken


# -- offspring --------------------------------------------------------------------------------


def test_offspring_are_new_in_bounds_and_under_the_size_limit() -> None:
    import random

    random.seed(0)
    cons = constraints(bits_ranges={"lin_hn": (4, 8)}, pins={"add_h": 7}, max_size_pct=80)
    tb = nsga2.make_toolbox(cons)
    ev = FakeEvaluator()
    population = nsga2.first_population(tb, cons, 12)
    cache = {tuple(i): a for i, a in zip(population, ev.accuracy([tuple(i) for i in population]))}
    for ind in population:
        ind.fitness.values = nsga2.fitness_values(tuple(ind), cache.get(tuple(ind)), cons)
    front = nsga2.feasible(population, cons)
    children = nsga2.propose(tb, cons, population, front, cache, 12, 0.9)
    genomes = [tuple(c) for c in children]
    assert len(genomes) == 12 == len(set(genomes))
    assert all(g not in cache and cons.in_bounds(g) and cons.size_ok(g) for g in genomes)


# -- --budget ----------------------------------------------------------------------------------


def test_a_budget_run_scores_exactly_the_budget_homogeneous_included(tmp_path: Path) -> None:
    ev = FakeEvaluator()
    res = search(tmp_path / "s.db", ev, pop=12, gens=None, budget=50, chunk_size=5)
    assert len(ev.scored) == len(set(ev.scored)) == res["evaluations"] == 50
    assert {homogeneous(b) for b in range(2, 9)} <= set(ev.scored)


@pytest.fixture
def early_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The measured walk from 30 scorings on, so that short runs take its steps too."""
    monkeypatch.setattr(guided, "EXPLORE_UNTIL", 30)


def test_a_generation_carries_the_walk_several_measured_steps(tmp_path: Path, early_walk: None) -> None:
    ev = FakeEvaluator()
    search(tmp_path / "s.db", ev, pop=12, gens=None, budget=120, chunk_size=64)
    generation = {tuple(ind["bits"]): ind["generation"] for ind in individuals(tmp_path / "s.db", 1)}
    rounds = [c for c in ev.calls if len(c) > 1 and _reductions_of_one_genome(c)]
    per_generation = Counter(generation[c[0]] for c in rounds)
    assert max(per_generation.values()) >= 2  # each step in its own call: scored before the next is chosen


def _reductions_of_one_genome(genomes: list) -> bool:
    """Whether every genome is one weight gene one bit below their common elementwise maximum."""
    m = [max(bits) for bits in zip(*genomes)]
    diffs = [[i for i, (b, t) in enumerate(zip(g, m)) if b != t] for g in genomes]
    return all(len(d) == 1 and d[0] in LINEAR and m[d[0]] - g[d[0]] == 1 for d, g in zip(diffs, genomes))


def test_a_shorter_budget_is_the_start_of_a_longer_one(tmp_path: Path, early_walk: None) -> None:
    short, long = FakeEvaluator(), FakeEvaluator()
    search(tmp_path / "a.db", short, pop=12, gens=None, budget=41)
    search(tmp_path / "b.db", long, pop=12, gens=None, budget=90)
    assert short.scored == long.scored[:41]


def test_budget_and_gens_stop_at_whichever_comes_first(tmp_path: Path) -> None:
    by_gens = search(tmp_path / "a.db", pop=12, gens=3, budget=1000)
    assert len(by_gens["hypervolume"]) == 3 and by_gens["evaluations"] == 36
    by_budget = search(tmp_path / "b.db", pop=12, gens=50, budget=30)
    assert by_budget["evaluations"] == 30 and len(by_budget["hypervolume"]) == 3


def test_a_budget_run_is_deterministic_and_does_not_depend_on_workers(tmp_path: Path, early_walk: None) -> None:
    one = search(tmp_path / "one.db", pop=8, gens=None, budget=40, seed=4, chunk_size=4)
    two = search(tmp_path / "two.db", pop=8, gens=None, budget=40, seed=4, chunk_size=4, workers=2)
    assert one == two


def test_a_crashed_budget_run_resumes_to_the_uninterrupted_front(tmp_path: Path, early_walk: None) -> None:
    whole = search(tmp_path / "whole.db", pop=12, gens=None, budget=70, chunk_size=4)
    with pytest.raises(RuntimeError, match="synthetic crash"):
        # call 12: generation 3's second walk round (calls 10-11 scored its first)
        search(tmp_path / "s.db", FakeEvaluator(fail_at_call=12), pop=12, gens=None, budget=70, chunk_size=4)
    assert 0 < run_detail(tmp_path / "s.db", 1)["generations_done"]
    assert resume(tmp_path / "s.db", 1, FakeEvaluator()) == whole


def test_the_budget_is_stored_with_the_run(tmp_path: Path) -> None:
    search(tmp_path / "s.db", pop=12, gens=None, budget=30)
    config = run_detail(tmp_path / "s.db", 1)["config"]
    assert config["budget"] == 30 and config["gens"] is None


@pytest.mark.parametrize(("budget", "killed_after"), [(60, 2), (300, 18)])  # 300: killed during the walk
def test_search_budget_kill_9_then_resume_gives_the_uninterrupted_result(
    tmp_path: Path, budget: int, killed_after: int
) -> None:
    db = tmp_path / "s.db"
    env = {
        **os.environ,
        ENV_HOOK: "test_search_fake:make",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
        "GRUQ_FAKE_DELAY": "0.1",
    }
    args = ["search", "--task", "fake", "--pop", "12", "--budget", str(budget), "--seed", "2", "--chunk-size", "4"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gruq", *args, "--db", str(db), "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def far_enough() -> bool:
        """What the kill needs: the run past `killed_after` generations and its process still going."""
        assert proc.poll() is None, f"the search exited ({proc.returncode}) before it could be killed"
        runs = list_runs(db) if db.exists() else []
        return bool(runs) and runs[0]["generations_done"] >= killed_after

    # generous: on a loaded machine the child takes long to import gruq; idle, this is about a second
    wait_for(far_enough, timeout=180)
    proc.kill()
    proc.wait()
    assert run_detail(db, 1)["evaluations"] < budget
    env.pop("GRUQ_FAKE_DELAY")
    resumed = subprocess.run(
        [sys.executable, "-m", "gruq", "search", "--resume", "1", "--db", str(db), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    expected = in_process(tmp_path / "ref.db", pop=12, gens=None, budget=budget, seed=2, chunk_size=4)
    assert json.loads(resumed.stdout) == {**expected, "run_id": 1}
    assert expected["evaluations"] == budget


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--budget", "0"], "--budget must be an integer of at least 1"), (["--budget", "x"], "invalid int value")],
)
def test_a_bad_budget_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, args, message) -> None:
    line = one_error_line(capsys, ["search", "--task", "fake", "--db", str(tmp_path / "s.db"), "--json", *args])
    assert message in line


def test_bops_objective_and_constraints_hold_in_a_budget_run(tmp_path: Path) -> None:
    res = search(tmp_path / "s.db", pop=8, gens=None, budget=40, objective="bops", pins={"add_h": 6}, min_accuracy=0.3)
    assert res["evaluations"] == 40 and res["front"]
    for m in res["front"]:
        assert m["bits"][INDEX["add_h"]] == 6 and m["accuracy"] >= 0.3
        assert m["bops"] == bops(m["bits"], SHAPE)


def test_a_budget_below_the_baselines_scores_only_the_budget(tmp_path: Path) -> None:
    ev = FakeEvaluator()
    res = search(tmp_path / "s.db", ev, pop=12, gens=None, budget=3)
    assert res["evaluations"] == len(ev.scored) == 3 and len(res["hypervolume"]) == 1


def test_a_budget_run_with_nothing_left_to_score_stops(tmp_path: Path) -> None:
    from gruq.ops import OPS
    from gruq.search.run import STALL

    res = search(tmp_path / "s.db", pop=4, gens=None, budget=50, pins={op: 4 for op in OPS[:-1]})
    assert res["evaluations"] <= 7 and len(res["hypervolume"]) <= 2 + STALL + 1
