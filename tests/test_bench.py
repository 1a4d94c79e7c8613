"""The benchmarks' harness (bench/), on the synthetic evaluator: shapes, not timings.

The search-quality comparison must give each method the same budget of
distinct genomes, score every genome once across methods, and be
reproducible; `python -m gruq bench --json` must keep its contract and skip,
not crash on, a task it cannot run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_search_fake import FakeEvaluator

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from bench import qat_floor, quick_run  # noqa: E402
from bench import search_quality as sq  # noqa: E402
from gruq.genome import homogeneous  # noqa: E402

BUDGET = 40
POP = 8


class CountingEvaluator(FakeEvaluator):
    """The fake evaluator, counting how often each genome is computed."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[tuple[int, ...], int] = {}

    def accuracy(self, genomes):
        for g in genomes:
            self.counts[tuple(g)] = self.counts.get(tuple(g), 0) + 1
        return super().accuracy(genomes)


@pytest.fixture(scope="module")
def quality() -> tuple[dict, CountingEvaluator]:
    ev = CountingEvaluator()
    out = sq.search_quality("fake", seeds=2, budget=BUDGET, pop=POP, evaluator=ev, progress=False)
    return out, ev


def test_one_hypervolume_per_method_in_the_unit_interval(quality) -> None:
    out, _ = quality
    assert set(out["hypervolume"]) == {"gruq", "random", "optuna_nsga2", "optuna_tpe", "greedy"}
    for method, values in out["hypervolume_per_seed"].items():
        assert len(values) == 2
        assert all(0.0 <= v <= 1.0 for v in values)
        assert out["hypervolume"][method] == pytest.approx(sorted(values)[0] / 2 + sorted(values)[1] / 2)
    # every method starts from the homogeneous genomes, so none can fall below them
    assert all(v >= out["hypervolume_homogeneous"] - 1e-12 for v in out["hypervolume"].values())


def test_every_method_gets_exactly_the_budget(quality) -> None:
    out, _ = quality
    assert out["evaluations"] == BUDGET
    assert out["evaluations_per_run"] == {m: [BUDGET, BUDGET] for m in sq.METHODS}


def test_the_shared_cache_scores_each_genome_once(quality) -> None:
    out, ev = quality
    assert ev.counts and max(ev.counts.values()) == 1
    assert len(ev.counts) == out["scorings_computed"]
    assert all(ev.counts.get(homogeneous(b)) == 1 for b in range(2, 9))


class OtherSplit(FakeEvaluator):
    """Another split: accuracies that differ from the fake validation ones, genome by genome."""

    def accuracy(self, genomes):
        return [a * (0.9 + 0.01 * (sum(g) % 7)) for a, g in zip(super().accuracy(genomes), genomes)]


def test_a_run_of_some_methods_reports_the_test_figures_a_full_run_does() -> None:
    def run(methods):
        return sq.search_quality(
            "fake",
            seeds=1,
            budget=BUDGET,
            pop=POP,
            evaluator=FakeEvaluator(),
            progress=False,
            test_evaluator=OtherSplit(),
            methods=methods,
        )["held_out"]["by_budget"][str(BUDGET)]["hypervolume_per_seed"]

    some, full = run(["gruq", "greedy"]), run(list(sq.METHODS))
    assert some == {m: full[m] for m in ("gruq", "greedy")}
    validation = sq.search_quality(
        "fake", seeds=1, budget=BUDGET, pop=POP, evaluator=FakeEvaluator(), progress=False, methods=["gruq"]
    )["by_budget"][str(BUDGET)]
    assert some["gruq"] != validation["hypervolume_per_seed"]["gruq"]  # scored on the other split


def test_the_hypervolume_is_the_one_gruq_reports() -> None:
    from gruq.search.hypervolume import hypervolume

    scorer = sq.SharedScorer(FakeEvaluator())
    genomes = [homogeneous(b) for b in (2, 4, 8)]
    scorer.score(genomes)
    size8 = sq.size_bytes(homogeneous(8), scorer.shape)
    expected = hypervolume([(scorer.cache[g], sq.size_bytes(g, scorer.shape)) for g in genomes], size8)
    assert sq.front_hypervolume(scorer, genomes) == expected


def test_gruqs_figure_is_the_hypervolume_gruq_reports_after_as_many_scorings(tmp_path: Path) -> None:
    from gruq.search import run
    from gruq.search.backend import Backend
    from gruq.search.config import SearchConfig

    scorer = sq.SharedScorer(FakeEvaluator(), batch=POP)
    view = scorer.view()
    out = run.start(
        tmp_path / "r.db",
        SearchConfig(task="fake", pop=POP, gens=4, seed=2),
        backend_factory=lambda c: Backend(view),
        progress=False,
    )
    assert len(view.asked) == out["evaluations"]
    assert sq.front_hypervolume(scorer, view.first(out["evaluations"])) == pytest.approx(out["hypervolume"][-1])


def test_optuna_is_deterministic_for_a_seed() -> None:
    def asked(seed: int) -> list:
        view = sq.SharedScorer(FakeEvaluator(), batch=POP).view()
        sq.run_optuna(view, seed, BUDGET, POP)
        return view.first(BUDGET)

    first = asked(3)
    assert first == asked(3) and len(first) == BUDGET
    assert first[:7] == [homogeneous(b) for b in range(2, 9)]  # the enqueued baselines come first
    assert first != asked(4)


def test_gruq_and_random_are_deterministic_for_a_seed() -> None:
    def asked(method: str, seed: int) -> list:
        view = sq.SharedScorer(FakeEvaluator(), batch=POP).view()
        if method == "gruq":
            sq.run_gruq(view, "fake", seed, BUDGET, POP)
        else:
            sq.run_random(view, seed, BUDGET, POP)
        return view.first(BUDGET)

    for method in ("gruq", "random"):
        assert asked(method, 1) == asked(method, 1)
        assert len(set(asked(method, 1))) == BUDGET


def test_the_score_cache_file_is_reused_only_for_the_same_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "scores.json"
    cache = {homogeneous(4): 0.5}
    sq.save_cache(path, "key", cache)
    assert sq.load_cache(path, "key") == cache
    assert sq.load_cache(path, "other") == {}


# -- the command line ------------------------------------------------------------------


def gruq(*args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "GRUQ_EVALUATOR": "test_search_fake:make",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
    }
    return subprocess.run(
        [sys.executable, "-m", "gruq", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )


def test_bench_json_shape_with_a_tiny_budget() -> None:
    proc = gruq(
        "bench",
        "--json",
        "--tasks",
        "fake",
        "--search-task",
        "fake",
        "--ratio-task",
        "fake",
        "--seeds",
        "2",
        "--budget",
        "24",
        "--pop",
        "8",
        "--no-ratio",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {"eval_cost_ratio", "hypervolume", "evaluations", "quick_run_seconds"} <= set(out)
    assert set(out["hypervolume"]) == set(sq.METHODS)
    assert all(0 <= v <= 1 for v in out["hypervolume"].values())
    assert all(len(v) == 2 for v in out["hypervolume_per_seed"].values())
    assert out["evaluations"] == 24
    assert set(out["quick_run_seconds"]) == {"fake"} and out["quick_run_seconds"]["fake"] > 0
    assert out["skipped"] == {}


def test_bench_skips_a_task_it_cannot_run() -> None:
    proc = gruq(
        "bench", "--json", "--tasks", "nosuch", "--search-task", "nosuch", "--seeds", "1", "--budget", "8", "--no-ratio"
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["hypervolume"] is None and out["quick_run_seconds"] == {}
    assert "unknown task" in out["skipped"]["nosuch"]


def test_bench_reports_eval_cost_ratios_per_task(monkeypatch, capsys) -> None:
    """In-process, with a stand-in for bench/eval_cost.py (the real one times real tasks)."""
    import types

    from gruq.cli import bench as bench_cli
    from gruq.cli import main
    from gruq.errors import GruqError

    def ratio(task: str, repeats: int = 5) -> dict:
        if task == "nosuch":
            raise GruqError("unknown task 'nosuch'")
        return {"task": task, "eval_cost_ratio": {"vowels": 1.5, "ecg": 2.5}[task], "repeats": repeats}

    real = bench_cli.bench_module
    monkeypatch.setattr(
        bench_cli,
        "bench_module",
        lambda name: types.SimpleNamespace(eval_cost_ratio=ratio) if name == "eval_cost" else real(name),
    )
    assert (
        main(
            [
                "bench",
                "--json",
                "--tasks",
                "ecg",
                "nosuch",
                "--ratio-all-tasks",
                "--no-quality",
                "--no-quick",
                "--ratio-repeats",
                "1",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["eval_cost_ratio"] == 1.5 and out["eval_cost_ratio_per_task"] == {"vowels": 1.5, "ecg": 2.5}
    assert "nosuch" in out["skipped"] and out["hypervolume"] is None


def test_bench_says_clearly_when_the_bench_folder_is_missing(monkeypatch, tmp_path: Path) -> None:
    import gruq
    from gruq.cli import bench as bench_cli
    from gruq.errors import GruqError

    monkeypatch.setattr(gruq, "__file__", str(tmp_path / "gruq" / "__init__.py"))
    with pytest.raises(GruqError, match="bench"):
        bench_cli.bench_module("search_quality")


def test_bench_refuses_a_bad_budget_in_one_line() -> None:
    proc = gruq("bench", "--budget", "0", "--json")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "budget" in proc.stderr


def test_the_quick_budget_is_documented_and_small() -> None:
    assert quick_run.QUICK["pop"] * quick_run.QUICK["gens"] <= 100


def test_bench_qat_json_shape_with_a_tiny_budget() -> None:
    """`bench --qat`: both fine-tuning cost ratios per task, measured in one run; an unknown task is skipped."""
    proc = gruq("bench", "--qat", "--json", "--tasks", "vowels", "nosuch", "--qat-samples", "32", "--qat-genomes", "2")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out["qat_cost_ratio"]) == set(out["qat_batched_cost_ratio"]) == {"vowels"}
    assert out["qat_cost_ratio"]["vowels"] > 0 and out["qat_batched_cost_ratio"]["vowels"] > 0
    detail = out["qat_cost"]["vowels"]
    assert (detail["genomes"], detail["sequences"], detail["threads"]) == (2, 32, 1)
    assert detail["qat_cost_ratio"] == pytest.approx(detail["qat_epoch_seconds"] / detail["float_epoch_seconds"])
    assert "unknown task" in out["skipped"]["nosuch"]
    assert "hypervolume" not in out  # --qat measures only the fine-tuning cost


def test_bench_qat_measures_a_stacked_checkpoint_on_its_own_layers() -> None:
    """`bench --qat --checkpoint`: the float and the fine-tuning epochs both train that (two-layer) model."""
    from bench import qat_cost

    out = qat_cost.qat_cost("vowels", 2, 32, checkpoint=str(ROOT / "assets" / "vowels_2layer.pt"))
    assert (out["layers"], out["genomes"], out["sequences"]) == (2, 2, 32)
    assert out["qat_cost_ratio"] > 0 and out["qat_batched_cost_ratio"] > 0
    assert [len(g) for g in qat_cost.random_genomes(2, 0, layers=2)] == [34, 34]


def test_a_genome_s_qat_step_does_at_least_the_float_step_s_matrix_work() -> None:
    """The floor's premise: per sequence step, a genome's fine-tuning products cost no less than
    float training's, for every task's shape (so 16 genomes cost at least 16 float epochs of flops)."""
    for features, hidden in ((28, 64), (12, 32), (6, 64), (1, 32)):
        f = qat_floor.step_flops(features, hidden)
        assert f["qat_genome"] >= f["float"] > 0


def test_the_float_step_splits_into_a_forward_of_one_third_to_one_half() -> None:
    """Forward [x|h] @ W; backward the weight gradients (as many flops) plus dh through W_hh:
    the forward share is (F+H) / (2F+3H), a third with no inputs, below a half always."""
    # smnist (F = 28, H = 64), by hand: forward 2 x 192 x 92, backward that plus 2 x 192 x 64;
    # 95,232 flops a sequence step in all, the "95 k" of the README's floor table
    assert qat_floor.flop_split(28, 64) == {"forward": 35_328, "backward": 35_328 + 24_576}
    assert qat_floor.step_flops(28, 64)["float"] == 95_232
    for features, hidden in ((28, 64), (12, 32), (6, 64), (1, 32), (0, 8)):
        s = qat_floor.flop_split(features, hidden)
        share = s["forward"] / (s["forward"] + s["backward"])
        assert share == pytest.approx((features + hidden) / (2 * features + 3 * hidden))
        assert 1 / 3 <= share < 1 / 2
    assert qat_floor.flop_split(0, 8)["forward"] * 3 == qat_floor.step_flops(0, 8)["float"]


def test_the_floor_is_16_genomes_products_at_their_rates_in_float_epochs() -> None:
    """2e9 forward flops at 4 G ops/s and 3e9 backward at 2: 2 s a genome, 32 s for 16, 8 float epochs of 4 s."""
    assert qat_floor.floor_r16(2e9, 3e9, 4.0, 2.0, 4.0) == pytest.approx(8.0)
    assert qat_floor.floor_r16(2e9, 3e9, 4.0, 2.0, 4.0, genomes=1) == pytest.approx(0.5)
    assert qat_floor.floor_r16(2e9, 3e9, 2.0, 2.0, 4.0) == pytest.approx(16 * 5e9 / 2e9 / 4.0)


def test_a_product_the_kernel_refuses_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(a, b):
        raise RuntimeError("_int_mm: shape not supported\nmore detail")

    monkeypatch.setattr(qat_floor.torch, "_int_mm", refuse)
    assert qat_floor.product_gops("int8", 8, 8, 8, runs=1) == "refused: _int_mm: shape not supported"
    assert qat_floor.product_gops("float32", 8, 8, 8, runs=1) > 0


def test_qat_floor_reports_the_ratios_it_derives() -> None:
    """bench/qat_floor.py on a tiny vowels budget: every ratio is the quotient of the figures it reports."""
    out = qat_floor.qat_floor("vowels", samples=32)
    f_cpu, peak = out["float_epoch_cpu"], out["peak_gflops"]
    seq_steps = out["sequences"] * out["steps"]
    flops = out["flops_per_sequence_step"]["float"] * seq_steps
    fwd, bwd = (out["float_flops_per_sequence_step"][p] * seq_steps for p in ("forward", "backward"))
    assert out["floor_r16_at_peak"] == pytest.approx(16 * flops / (peak * 1e9) / f_cpu)
    assert out["matmul_only_r16"] == pytest.approx(out["matmul_only_cpu"] / f_cpu)
    assert out["r16_cpu"] == pytest.approx(out["batched_epoch_cpu"] / f_cpu)
    assert peak == out["product_gops"]["float32"]["peak"] > 0 and len(out["load_average"]) == 3
    assert set(out["product_gops"]) == {"float32", "bfloat16", "float16", "int8"}
    assert all(set(r) == set(out["product_shapes"]) for r in out["product_gops"].values())
    int8 = max(r for r in out["product_gops"]["int8"].values() if isinstance(r, float))
    assert out["floor_r16_int8_forward"] == pytest.approx(16 * (fwd / int8 + bwd / peak) / 1e9 / f_cpu)
    assert out["peak_fraction_for_r16_4"] == pytest.approx(out["floor_r16_at_peak"] / 4)
    assert out["float_epoch_peak_fraction"] == pytest.approx(out["float_gflops"] / peak)


def test_search_quality_mode_reports_every_task_budget_method_and_held_out_figure() -> None:
    proc = gruq(
        "bench", "--search-quality", "--json", "--tasks", "fake", "--seeds", "2", "--budgets", "16", "32", "--pop", "8"
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    q = out["search_quality"]["fake"]
    assert q["budgets"] == [16, 32] and out["skipped"] == {}
    for budget in ("16", "32"):
        for key in ("by_budget",) + (("held_out",) if "held_out" in q else ()):
            figures = q[key]["by_budget"][budget] if key == "held_out" else q[key][budget]
            assert set(figures["hypervolume"]) == set(sq.METHODS)
            assert all(len(v) == 2 and all(0 <= x <= 1 for x in v) for v in figures["hypervolume_per_seed"].values())
    assert q["held_out"]["split"] == "test"
    assert set(q["scorings_to_reach"]) == set(sq.PEERS)
    for r in q["scorings_to_reach"].values():
        assert r["median_curve"] is None or 1 <= r["median_curve"] <= 32


def test_greedy_takes_the_cheapest_loss_per_byte_and_tpe_is_deterministic() -> None:
    view = sq.SharedScorer(FakeEvaluator()).view()
    sq.run_greedy(view, 30)
    asked = view.first(30)
    assert asked[:7] == [homogeneous(b) for b in range(2, 9)] and len(asked) == 30
    step = [g for g in asked[7:13]]  # the six one-bit reductions of all-8-bit's weight operators
    assert all(sum(b != 8 for b in g) == 1 for g in step)

    def tpe(seed: int) -> list:
        v = sq.SharedScorer(FakeEvaluator()).view()
        sq.run_tpe(v, seed, 20)
        return v.first(20)

    assert tpe(1) == tpe(1) and len(tpe(1)) == 20


def test_scorings_to_reach_is_the_first_prefix_at_the_target() -> None:
    scorer = sq.SharedScorer(FakeEvaluator())
    genomes = [homogeneous(b) for b in (8, 2, 5, 4)]
    scorer.score(genomes)
    top = {"hypervolume": {p: sq.front_hypervolume(scorer, genomes[:3]) for p in sq.PEERS}}
    reach = sq._scorings_to_reach(scorer, [genomes, genomes], top, 4)
    assert all(r["median_curve"] == 3 and r["per_seed"] == [3, 3] for r in reach.values())
