"""A synthetic evaluator for the search tests, and tests that it behaves like one.

Accuracy is a saturating function of the bit widths with per-operator
sensitivities (the n path most sensitive, as measured on real tasks), plus a
tiny genome-dependent jitter so that ties are rare. It is deterministic and
independent of batching, like the real evaluator must be, and instant.

Used in-process by injection (`backend_factory`) and in `python -m gruq`
subprocesses through GRUQ_EVALUATOR="test_search_fake:make" (tests/ on
PYTHONPATH). GRUQ_FAKE_DELAY slows each batch (seconds) so a test can kill a
run mid-way; GRUQ_FAKE_LOG names a file that receives every genome scored.
"""

from __future__ import annotations

import math
import os
import time
import zlib
from collections.abc import Sequence

from gruq.errors import GruqError
from gruq.genome import Genome, ModelShape, homogeneous
from gruq.ops import N_OPS

SHAPE = ModelShape(features=12, hidden=32, classes=9, steps=29)
SENSITIVITY = (
    0.05,
    0.15,
    0.20,
    0.03,  # lin_xr lin_hr add_r sig_r
    0.10,
    0.30,
    0.30,
    0.10,  # lin_xz lin_hz add_z sig_z
    0.50,
    0.45,
    0.45,
    0.60,
    0.05,  # lin_xn lin_hn mul_rn add_n tanh_n
    0.03,
    0.20,
    0.20,
    0.40,  # sub_z mul_zn mul_zh add_h
)


def fake_accuracy(genome: Sequence[int]) -> float:
    loss = sum(s * 2.0 ** -(b - 1) for s, b in zip(SENSITIVITY, genome))
    jitter = (zlib.crc32(bytes(genome)) % 1000) * 1e-6
    return 0.95 * math.exp(-loss) + jitter


class FakeEvaluator:
    """Scores genomes instantly; records what it scored (in its own process)."""

    def __init__(
        self,
        task: str = "fake",
        split: str = "val",
        finetune_epochs: int = 0,
        seed: int = 0,
        delay: float = 0.0,
        log: str | None = None,
        fail_at_call: int | None = None,
    ) -> None:
        if not task.startswith("fake"):
            raise GruqError(f"unknown task {task!r}")
        self.shape = SHAPE
        self.delay = delay
        self.log = log
        self.fail_at_call = fail_at_call  # raise on this call (1-based): a crash mid-run
        self.calls: list[list[Genome]] = []

    @property
    def scored(self) -> list[Genome]:
        return [g for call in self.calls for g in call]

    def accuracy(self, genomes: Sequence[Genome]) -> list[float]:
        self.calls.append([tuple(g) for g in genomes])
        if self.fail_at_call is not None and len(self.calls) == self.fail_at_call:
            raise RuntimeError("synthetic crash")
        if self.delay:
            time.sleep(self.delay)
        if self.log:
            with open(self.log, "a") as f:
                f.writelines(",".join(map(str, g)) + "\n" for g in genomes)
        return [fake_accuracy(g) for g in genomes]

    def finetune_front(self, genomes: Sequence[Genome], epochs: int) -> list[float]:
        return [min(1.0, fake_accuracy(g) + 0.001 * epochs) for g in genomes]


def make(task: str, split: str = "val", finetune_epochs: int = 0, seed: int = 0) -> FakeEvaluator:
    """The GRUQ_EVALUATOR factory (same signature as gruq.evaluate.Evaluator)."""
    return FakeEvaluator(
        task,
        split,
        finetune_epochs,
        seed,
        delay=float(os.environ.get("GRUQ_FAKE_DELAY", 0)),
        log=os.environ.get("GRUQ_FAKE_LOG"),
    )


def test_fake_accuracy_rises_with_bits_and_saturates() -> None:
    accs = [fake_accuracy(homogeneous(b)) for b in range(2, 9)]
    assert accs == sorted(accs)
    assert accs[-1] - accs[-2] < accs[1] - accs[0]
    assert 0 < accs[0] < accs[-1] < 1


def test_fake_is_batch_independent() -> None:
    g = homogeneous(5)
    ev = FakeEvaluator()
    assert ev.accuracy([g]) == ev.accuracy([homogeneous(3), g])[1:] and len(SENSITIVITY) == N_OPS
