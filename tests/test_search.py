"""The NSGA-II search engine, run in-process with the synthetic evaluator.

Specification: the first population holds the homogeneous baselines; a run
is deterministic for its seed and independent of the number of workers; no
genome is scored twice; every reported front is non-dominated and meets
every constraint; hypervolume is exact and normalised; a crashed or
cancelled run, resumed, ends exactly as an uninterrupted one.
"""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_search_fake import SHAPE, FakeEvaluator

from gruq.errors import GruqError
from gruq.genome import MAX_BITS, MIN_BITS, ModelShape, bops, homogeneous, size_bytes
from gruq.ops import OPS
from gruq.search import nsga2, run
from gruq.search.backend import Backend
from gruq.search.config import SearchConfig
from gruq.search.constraints import resolve
from gruq.search.hypervolume import hypervolume
from gruq.store import individuals, run_detail

SIZE8 = size_bytes(homogeneous(8), SHAPE)


def search(db: Path, evaluator: FakeEvaluator | None = None, **settings_: Any) -> dict[str, Any]:
    """Run a small search to the end with `evaluator` injected."""
    ev = evaluator or FakeEvaluator()
    cfg = SearchConfig(task="fake", **{"pop": 12, "gens": 5, "seed": 0, **settings_})
    return run.start(db, cfg, backend_factory=lambda c: Backend(ev, ev.finetune_front), progress=False)


def resume(db: Path, run_id: int, evaluator: FakeEvaluator) -> dict[str, Any]:
    backend = Backend(evaluator, evaluator.finetune_front)
    return run.execute(db, run_id, backend_factory=lambda c: backend, progress=False)


def cost(member: dict[str, Any], objective: str) -> float:
    return member["bops"] if objective == "bops" else member["size_bytes"]


def dominates(a: dict[str, Any], b: dict[str, Any], objective: str) -> bool:
    ca, cb = cost(a, objective), cost(b, objective)
    return a["accuracy"] >= b["accuracy"] and ca <= cb and (a["accuracy"] > b["accuracy"] or ca < cb)


# -- the first population -------------------------------------------------------------


def test_the_first_population_holds_every_homogeneous_genome(tmp_path: Path) -> None:
    cons = resolve(SearchConfig(task="fake", pop=12), SHAPE)
    pop = nsga2.initial_population(nsga2.make_toolbox(cons), cons, 12)
    genomes = [tuple(ind) for ind in pop]
    assert all(homogeneous(b) in genomes for b in range(MIN_BITS, MAX_BITS + 1))
    assert len(genomes) == 12 == len(set(genomes))

    search(tmp_path / "s.db", pop=12, gens=1)
    first = {tuple(i["bits"]) for i in individuals(tmp_path / "s.db", 1) if i["generation"] == 0}
    assert {homogeneous(b) for b in range(2, 9)} <= first


def test_baselines_are_clipped_into_ranges_and_pins_and_kept_under_the_size_limit() -> None:
    cfg = SearchConfig(task="fake", pop=10, bits_ranges={"lin_hn": (4, 6)}, pins={"add_h": 8}, max_size_pct=80)
    cons = resolve(cfg, SHAPE)
    genomes = [tuple(ind) for ind in nsga2.initial_population(nsga2.make_toolbox(cons), cons, 10)]
    baselines = [cons.clip(homogeneous(b)) for b in range(2, 9)]
    expected = [g for g in baselines if size_bytes(g, SHAPE) <= 0.8 * SIZE8]
    assert genomes[: len(expected)] == expected and len(expected) < len(baselines)
    assert all(cons.in_bounds(g) for g in genomes)


def test_a_population_smaller_than_the_baselines_keeps_both_ends() -> None:
    cons = resolve(SearchConfig(task="fake", pop=4), SHAPE)
    genomes = [tuple(ind) for ind in nsga2.initial_population(nsga2.make_toolbox(cons), cons, 4)]
    assert genomes[0] == homogeneous(2) and genomes[-1] == homogeneous(8) and len(genomes) == 4


# -- determinism and scoring ----------------------------------------------------------------


def test_the_same_seed_gives_the_same_run(tmp_path: Path) -> None:
    a = search(tmp_path / "a.db", seed=7)
    b = search(tmp_path / "b.db", seed=7)
    assert a == b
    assert search(tmp_path / "c.db", seed=8)["front"] != a["front"]


def test_no_genome_is_ever_scored_twice(tmp_path: Path) -> None:
    ev = FakeEvaluator()
    res = search(tmp_path / "s.db", ev, pop=16, gens=8, chunk_size=5)
    assert len(ev.scored) == len(set(ev.scored)) == res["evaluations"]
    assert {tuple(i["bits"]) for i in individuals(tmp_path / "s.db", res["run_id"])} == set(ev.scored)
    assert all(len(call) <= 5 for call in ev.calls)


def test_a_process_pool_gives_the_same_run_as_one_process(tmp_path: Path) -> None:
    one = search(tmp_path / "one.db", pop=12, gens=4, seed=3, workers=1, chunk_size=4)
    two = search(tmp_path / "two.db", pop=12, gens=4, seed=3, workers=2, chunk_size=4)
    assert one == two


def test_a_population_size_that_is_not_a_multiple_of_four_runs(tmp_path: Path) -> None:
    res = search(tmp_path / "s.db", pop=7, gens=4)
    assert len(res["hypervolume"]) == 4 and res["front"]


# -- fronts and constraints ---------------------------------------------------------------


def test_a_pin_names_one_layer_or_every_layer_of_a_stacked_model() -> None:
    """`lin_xr` is every layer's lin_xr; `l1.lin_xr` layer 1's only, and it wins over `lin_xr`."""
    shape = ModelShape(features=12, hidden=32, classes=9, steps=29, layers=3)
    cfg = SearchConfig(
        task="fake",
        pins={"l1.lin_xr": 6, "lin_xr": 4, "l2.add_h": 8},
        bits_ranges={"lin_hn": (3, 5), "l0.lin_hn": (6, 7)},
    )
    cons = resolve(cfg, shape)
    at = lambda layer, op: 17 * layer + OPS.index(op)  # noqa: E731
    assert [(cons.low[at(k, "lin_xr")], cons.high[at(k, "lin_xr")]) for k in range(3)] == [(4, 4), (6, 6), (4, 4)]
    assert [(cons.low[at(k, "add_h")], cons.high[at(k, "add_h")]) for k in range(3)] == [(2, 8), (2, 8), (8, 8)]
    assert [(cons.low[at(k, "lin_hn")], cons.high[at(k, "lin_hn")]) for k in range(3)] == [(6, 7), (3, 5), (3, 5)]
    assert sum(lo < hi for lo, hi in zip(cons.low, cons.high)) == 17 * 3 - 4


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"pins": {"l2.lin_xr": 4}}, r"--pin l2.lin_xr=4 names layer 2, but this model has 2 GRU layers: "
         r"allowed l0.lin_xr, l1.lin_xr, or lin_xr for every layer"),
        ({"bits_ranges": {"l5.add_h": (4, 8)}}, r"unknown operator 'l5.add_h'; operators are lin_xr, .* add_h "
         r"\(every layer\), or one layer's as l0.lin_xr ... l3.add_h"),
        ({"pins": {"l1.lin_xq": 4}}, "unknown operator 'l1.lin_xq'"),
        ({"pins": {"lin_xr": 4}, "bits_ranges": {"l1.lin_xr": (5, 8)}}, r"--pin lin_xr=4 is outside --bits-range "
         r"l1.lin_xr=5-8"),
    ],
)  # fmt: skip
def test_a_pin_the_stacked_model_cannot_take_is_refused_saying_what_is_allowed(settings_, message) -> None:
    shape = ModelShape(features=12, hidden=32, classes=9, steps=29, layers=2)
    with pytest.raises(GruqError, match=message) as info:
        resolve(SearchConfig(task="fake", **settings_), shape)
    assert "\n" not in str(info.value)


@st.composite
def constraint_sets(draw: st.DrawFn) -> dict[str, Any]:
    ops = draw(st.lists(st.sampled_from(OPS), unique=True, max_size=6))
    ranges: dict[str, tuple[int, int]] = {}
    for op in ops[: len(ops) // 2 + 1] if ops else []:
        lo = draw(st.integers(MIN_BITS, MAX_BITS))
        ranges[op] = (lo, draw(st.integers(lo, MAX_BITS)))
    pins = {}
    for op in ops[len(ops) // 2 + 1 :]:
        lo, hi = ranges.get(op, (MIN_BITS, MAX_BITS))
        pins[op] = draw(st.integers(lo, hi))
    settings_: dict[str, Any] = {
        "bits_ranges": ranges,
        "pins": pins,
        "objective": draw(st.sampled_from(["size", "bops"])),
        "seed": draw(st.integers(0, 99)),
    }
    low = resolve(SearchConfig(task="fake", bits_ranges=ranges, pins=pins), SHAPE).low
    smallest = 100 * size_bytes(low, SHAPE) / SIZE8
    if draw(st.booleans()):
        settings_["max_size_pct"] = smallest + draw(st.floats(0, 1)) * (100 - smallest)
    if draw(st.booleans()):
        settings_["min_accuracy"] = draw(st.floats(0, 0.9))
    return settings_


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(constraint_sets())
def test_every_front_is_non_dominated_and_meets_every_constraint(constraints: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "s.db"
        res = search(db, pop=8, gens=3, **constraints)
        cfg = SearchConfig(task="fake", pop=8, gens=3, **constraints)
        cons = resolve(cfg, SHAPE)
        objective = cfg.objective
        front = res["front"]
        for m in front:
            g = tuple(m["bits"])
            assert cons.in_bounds(g)
            assert all(g[OPS.index(op)] == b for op, b in cfg.pins.items())
            if cons.max_size is not None:
                assert m["size_bytes"] <= cons.max_size + 1e-9
            if cfg.min_accuracy is not None:
                assert m["accuracy"] >= cfg.min_accuracy
            assert m["size_bytes"] == size_bytes(g, SHAPE) and m["bops"] == bops(g, SHAPE)
        assert not any(dominates(a, b, objective) for a in front for b in front)
        # the front is exactly the best of every feasible genome the run scored
        feasible = [i for i in individuals(db, res["run_id"]) if i["feasible"]]
        best = [i for i in feasible if not any(dominates(j, i, objective) for j in feasible)]
        assert sorted(m["bits"] for m in front) == sorted(i["bits"] for i in best)
        assert front == sorted(front, key=lambda m: (cost(m, objective), -m["accuracy"], m["bits"]))
        assert all(0 <= h <= 1 for h in res["hypervolume"])


def test_no_feasible_genome_gives_an_empty_front_not_an_error(tmp_path: Path) -> None:
    res = search(tmp_path / "s.db", min_accuracy=0.99, gens=3)
    assert res["front"] == [] and res["hypervolume"] == [0.0, 0.0, 0.0]
    assert run_detail(tmp_path / "s.db", res["run_id"])["status"] == "finished"


def test_the_final_front_can_be_fine_tuned(tmp_path: Path) -> None:
    res = search(tmp_path / "s.db", gens=2, front_finetune_epochs=3)
    assert res["front"] and all(m["finetuned_accuracy"] >= m["accuracy"] for m in res["front"])


# -- hypervolume ----------------------------------------------------------------------------


def test_hypervolume_is_the_exact_normalised_area() -> None:
    assert hypervolume([], 100) == 0
    assert hypervolume([(0.5, 50)], 100) == pytest.approx(0.25)
    # two steps: [0.2, 0.6) at 0.4, then [0.6, 1] at 0.9
    assert hypervolume([(0.4, 20), (0.9, 60)], 100) == pytest.approx(0.8 * 0.4 + 0.4 * 0.5)
    assert hypervolume([(0.4, 20), (0.9, 60), (0.3, 70)], 100) == pytest.approx(0.52)  # dominated: adds nothing
    assert hypervolume([(0.9, 120), (0.0, 10)], 100) == 0  # outside the reference box
    assert hypervolume([(1.0, 0)], 100) == 1


def test_the_hypervolume_curve_never_falls(tmp_path: Path) -> None:
    hv = search(tmp_path / "s.db", gens=8)["hypervolume"]
    assert len(hv) == 8 and hv == sorted(hv) and 0 < hv[0] <= hv[-1] <= 1


# -- crashes and cancellation -----------------------------------------------------------


def test_a_crashed_run_is_failed_and_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    whole = search(tmp_path / "whole.db", pop=12, gens=6, chunk_size=4)
    crashing = FakeEvaluator(fail_at_call=9)  # mid-way through a generation
    with pytest.raises(RuntimeError, match="synthetic crash"):
        search(tmp_path / "s.db", crashing, pop=12, gens=6, chunk_size=4)
    detail = run_detail(tmp_path / "s.db", 1)
    assert detail["status"] == "failed" and "synthetic crash" in detail["error"]
    assert 0 < detail["generations_done"] < 6

    committed = {tuple(i["bits"]) for i in individuals(tmp_path / "s.db", 1)}
    fresh = FakeEvaluator()
    assert resume(tmp_path / "s.db", 1, fresh) == {**whole, "run_id": 1}
    assert not committed & set(fresh.scored)  # nothing stored is scored again
    assert run_detail(tmp_path / "s.db", 1)["status"] == "finished"


class SignallingEvaluator(FakeEvaluator):
    """Sends itself SIGTERM during one call, as `launch.cancel` would."""

    def __init__(self, at_call: int) -> None:
        super().__init__()
        self.at_call = at_call

    def accuracy(self, genomes):  # type: ignore[no-untyped-def]
        if len(self.calls) + 1 == self.at_call:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().accuracy(genomes)


def test_sigterm_cancels_between_chunks_and_the_run_resumes_identically(tmp_path: Path) -> None:
    whole = search(tmp_path / "whole.db", pop=12, gens=5, chunk_size=4)
    with pytest.raises(run.RunCancelled, match="--resume 1") as stopped:
        search(tmp_path / "s.db", SignallingEvaluator(at_call=6), pop=12, gens=5, chunk_size=4)
    assert stopped.value.signum == signal.SIGTERM
    detail = run_detail(tmp_path / "s.db", 1)
    assert detail["status"] == "cancelled" and "SIGTERM" in detail["error"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    assert resume(tmp_path / "s.db", 1, FakeEvaluator()) == {**whole, "run_id": 1}


def test_resuming_a_finished_run_returns_its_result_without_scoring(tmp_path: Path) -> None:
    res = search(tmp_path / "s.db", gens=3)
    idle = FakeEvaluator()
    assert resume(tmp_path / "s.db", res["run_id"], idle) == res and idle.calls == []


# -- refusals before the run starts --------------------------------------------------------


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"pop": 3}, "--pop must be an integer of at least 4"),
        ({"gens": 0}, "--gens must be an integer of at least 1"),
        ({"objective": "speed"}, "--objective must be one of"),
        ({"min_accuracy": 1.5}, "--min-accuracy is a fraction from 0 to 1"),
        ({"bits_ranges": {"lin_hn": (6, 3)}}, "lin_hn=6-3 is reversed"),
        ({"bits_ranges": {"lin_hn": (1, 9)}}, "outside the widths gruq supports"),
        ({"bits_ranges": {"lin_hh": (2, 4)}}, "unknown operator 'lin_hh'"),
        ({"pins": {"add_h": 9}}, "--pin add_h=9 is outside the widths gruq supports"),
        ({"bits_ranges": {"add_h": (6, 8)}, "pins": {"add_h": 4}}, r"--pin add_h=4 is outside its --bits-range 6-8"),
        ({"max_size_kb": 1, "max_size_pct": 50}, "give one maximum size"),
        ({"max_size_pct": 0}, "--max-size-pct must be a positive number"),
        ({"workers": 0}, "--workers must be at least 1"),
    ],
)
def test_impossible_settings_are_refused_with_the_reason(settings_: dict[str, Any], message: str) -> None:
    with pytest.raises(GruqError, match=message):
        SearchConfig(task="fake", **settings_)


def test_a_size_limit_below_every_allowed_genome_is_refused_naming_the_smallest_size(tmp_path: Path) -> None:
    smallest = size_bytes(homogeneous(2), SHAPE)
    with pytest.raises(GruqError, match=rf"--max-size-kb 1 \(1000 bytes\) is below .* {smallest:g} bytes"):
        search(tmp_path / "s.db", max_size_kb=1)
    pinned = size_bytes((2,) * 9 + (8,) + (2,) * 7, SHAPE)  # lin_hn pinned at 8
    with pytest.raises(GruqError, match=f"{pinned:g} bytes"):
        search(tmp_path / "s.db", pins={"lin_hn": 8}, max_size_bytes=pinned - 1)
    assert not (tmp_path / "s.db").exists()  # refused before anything was stored


def test_a_search_with_every_operator_pinned_is_refused_before_anything_is_stored(tmp_path: Path) -> None:
    with pytest.raises(GruqError, match="every operator is pinned to one width"):
        search(tmp_path / "s.db", pins=dict.fromkeys(OPS, 4))
    search(tmp_path / "s.db", pins=dict.fromkeys(OPS[1:], 4))  # one free operator: a search
    assert (tmp_path / "s.db").exists()


def test_stored_configs_reject_unknown_settings() -> None:
    with pytest.raises(GruqError, match="unknown search setting"):
        SearchConfig.from_dict({"task": "fake", "popsize": 8})
    cfg = SearchConfig(task="fake", bits_ranges={"lin_hn": (3, 5)}, pins={"add_h": 8})
    assert SearchConfig.from_dict(cfg.to_dict()) == cfg
