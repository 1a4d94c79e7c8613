"""gruq.qat: the fast training path of the fake-quant cell, population-batched.

Its gradients are the reference path's straight-through gradients (autograd
through `Simulation(..., ste=True)`, float64), its forward codes the engine's,
and a genome's fine-tuned weights are the same, bit for bit, whether it is
trained alone or in any group, at any position. All of it for stacked models
too (the one cell per layer, layer k + 1 on layer k's add_h codes), and
one-layer fine-tuning gives the weights it gave before stacking existed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import MODELS, STACKED, small
from torch import nn

from gruq.errors import GruqError
from gruq.fakequant import Simulation
from gruq.genome import homogeneous
from gruq.model import Checkpoint
from gruq.qat import Population
from gruq.tasks.base import Split
from gruq.train import finetune, finetune_many


def random_genomes(n: int, seed: int, layers: int = 1) -> list[tuple[int, ...]]:
    rng = np.random.default_rng(seed)
    return [tuple(int(b) for b in rng.integers(2, 9, 17 * layers)) for _ in range(n)]


@pytest.fixture(scope="module")
def every(models, stacked):
    """The one-layer and the stacked random models, by name."""
    return {**models, **stacked}


EVERY = list(MODELS) + list(STACKED)


def reference_gradients(model, calib, genome, X, y) -> tuple[float, list[torch.Tensor]]:
    """Loss and parameter gradients of the reference STE path (autograd, float64)."""
    model = _copy(model).train()
    sim = Simulation(model, calib, [genome], ste=True)
    loss = nn.CrossEntropyLoss()((sim.forward(X) * sim.logit_scale())[0], y)
    loss.backward()
    return float(loss.detach()), [p.grad for p in model.parameters()]


def _copy(model):
    import copy

    return copy.deepcopy(model)


@pytest.mark.parametrize("name", EVERY)
def test_gradients_match_the_reference_straight_through_path(every, name) -> None:
    s = every[name]
    L = s.model.layers
    X = torch.as_tensor(s.X[:16])
    y = torch.as_tensor(np.arange(16) % s.model.head.out_features)
    genomes = random_genomes(6, seed=len(name), layers=L) + [homogeneous(2, L), homogeneous(8, L)]
    pop = Population(s.model, s.calib, genomes)
    losses, grad = pop.loss_and_grad(X.expand(len(genomes), *X.shape), y.expand(len(genomes), *y.shape))
    for p, g in enumerate(genomes):
        ref_loss, ref = reference_gradients(s.model, s.calib, g, X, y)
        assert float(losses[p]) == pytest.approx(ref_loss, rel=1e-5)
        for (pname, shape, at), r in zip(pop.layout, ref):
            mine = grad[p, at : at + shape.numel()].view(shape)
            scale = float(r.abs().max()) + 1e-12
            assert float((mine - r).abs().max()) <= 1e-5 * scale, (g, pname)


@pytest.mark.parametrize("name", EVERY)
def test_forward_codes_are_the_exact_paths(every, name) -> None:
    """The logits of the training path are the exact simulation's (so the engine's)."""
    s = every[name]
    X = torch.as_tensor(s.X)
    genomes = random_genomes(5, seed=3, layers=s.model.layers)
    pop = Population(s.model, s.calib, genomes)
    q = pop._quantized()
    _, logits = pop._forward(q, X.expand(len(genomes), *X.shape))
    with torch.no_grad():
        exact = Simulation(s.model, s.calib, genomes).forward(X)
    assert torch.equal(logits[:, : len(X)].to(torch.float64), exact)  # rows past N: padding


def toy(name: str = "F1-H5-C2", n: int = 37) -> tuple[Checkpoint, Split]:
    s = small(**{**MODELS, **STACKED}[name], n=n)
    y = np.arange(n) % s.model.head.out_features
    return Checkpoint(model=s.model, calibration=s.calib, meta={}), Split(X=s.X, y=y)


def same(a: Checkpoint, b: Checkpoint) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", EVERY)
def test_a_genome_trains_to_the_same_weights_alone_or_in_any_group(name) -> None:
    # odd shapes on purpose: H = 5 and a batch of 11 put genome slices off 64-byte boundaries
    ckpt, train = toy(name)
    genomes, seeds = random_genomes(5, seed=11, layers=ckpt.model.layers), [3, 4, 5, 6, 7]
    alone = [finetune(ckpt, g, train, 2, s, batch=11) for g, s in zip(genomes, seeds)]
    together = finetune_many(ckpt, genomes, train, 2, seeds, batch=11)
    reversed_ = finetune_many(ckpt, genomes[::-1], train, 2, seeds[::-1], batch=11)[::-1]
    pairs = finetune_many(ckpt, genomes, train, 2, seeds, batch=11, group=2)
    for i in range(len(genomes)):
        assert same(alone[i], together[i]) and same(alone[i], reversed_[i]) and same(alone[i], pairs[i]), i
    assert not same(alone[0], Checkpoint(model=ckpt.model, calibration=ckpt.calibration, meta={}))


def test_the_same_genome_twice_in_a_group_trains_twice_the_same() -> None:
    ckpt, train = toy("F3-H8-C4")
    g = random_genomes(1, seed=2)[0]
    a, b = finetune_many(ckpt, [g, g], train, 1, [9, 9], batch=16)
    c, d = finetune_many(ckpt, [g, g], train, 1, [9, 10], batch=16)
    assert same(a, b) and same(a, c) and not same(c, d)


def test_best_epoch_selection_works_per_genome() -> None:
    from gruq.evaluate import accuracies

    ckpt, train = toy("F3-H8-C4", n=48)
    held = Split(X=train.X[::-1].copy(), y=train.y[::-1].copy())
    genomes, seeds = [homogeneous(3), homogeneous(5), random_genomes(1, 4)[0]], [1, 2, 3]
    seen: list[list[float]] = []
    tuned = finetune_many(
        ckpt, genomes, train, 3, seeds, batch=16, select=held, progress=lambda e, n, m: seen.append(m["select"])
    )
    for p, (g, t) in enumerate(zip(genomes, tuned)):
        start = accuracies(ckpt, [g], held)[0]
        assert accuracies(t, [g], held)[0] == max([start] + [epoch[p] for epoch in seen])
        assert same(t, finetune(ckpt, g, train, 3, seeds[p], batch=16, select=held))


def test_finetune_many_checks_its_arguments() -> None:
    ckpt, train = toy()
    with pytest.raises(GruqError):
        finetune_many(ckpt, [homogeneous(4)], train, 1, [1, 2])
    with pytest.raises(GruqError):
        finetune_many(ckpt, [(9,) * 17], train, 1, [1])
    assert finetune_many(ckpt, [homogeneous(4)] * 2, train, 0, [1, 2]) == [ckpt, ckpt]


def test_evaluator_fine_tunes_a_chunk_as_each_genome_alone(monkeypatch) -> None:
    """The search's contract: a genome's accuracy does not depend on its chunk."""
    from gruq import evaluate
    from gruq.tasks.base import Task

    ckpt, train = toy("F3-H8-C4", n=40)
    task = Task(name="toy", train=train, val=train, test=train, classes=4, hidden=8, epochs=1)
    monkeypatch.setattr(evaluate, "load", lambda task_name, checkpoint=None: (task, ckpt))
    ev = evaluate.Evaluator("toy", finetune_epochs=1, seed=5, finetune_samples=24)
    genomes = random_genomes(4, seed=8)
    together = ev.accuracy(genomes)
    assert together == [ev.accuracy([g])[0] for g in genomes]
    assert together[::-1] == ev.accuracy(genomes[::-1])


def test_mul_rn_in_float64_when_float32_is_not_exact_and_groups_still_agree() -> None:
    """All-8-bit on 40 hidden units: sig_r x lin_hn exceeds float32's 24 bits, so the group takes
    float64 for mul_rn; the float32 genomes beside it must not notice, and codes stay exact."""
    s = small(features=3, hidden=40, classes=3, steps=4, n=20, seed=4)
    wide, narrow = homogeneous(8), homogeneous(4)
    assert not Population(s.model, s.calib, [wide])._quantized()["cells"][0]["rn_f32"]
    assert Population(s.model, s.calib, [narrow])._quantized()["cells"][0]["rn_f32"]
    X = torch.as_tensor(s.X)
    pop = Population(s.model, s.calib, [narrow, wide])
    _, logits = pop._forward(pop._quantized(), X.expand(2, *X.shape))
    with torch.no_grad():
        exact = Simulation(s.model, s.calib, [narrow, wide]).forward(X)
    assert torch.equal(logits[:, : len(X)].to(torch.float64), exact)
    ckpt = Checkpoint(model=s.model, calibration=s.calib, meta={})
    train = Split(X=s.X, y=np.arange(len(s.X)) % 3)
    together = finetune_many(ckpt, [narrow, wide], train, 1, [1, 2], batch=8)
    assert same(together[0], finetune(ckpt, narrow, train, 1, 1, batch=8))
    assert same(together[1], finetune(ckpt, wide, train, 1, 2, batch=8))


def test_a_model_it_cannot_train_is_refused_not_trained_wrongly() -> None:
    from gruq.model import GRUClassifier

    s = small()
    both_ways = GRUClassifier(3, 8, 4)
    both_ways.gru = nn.GRU(3, 8, batch_first=True, bidirectional=True)
    with pytest.raises(GruqError, match="unidirectional"):
        Population(both_ways, s.calib, [homogeneous(4)])


# A pick of the reports/ committed last round (vowels, seed 0), with the holdout accuracy its `check`
# gave then: 146 of 150, on another machine and before stacked fine-tuning existed. Reported one-layer
# numbers must not move. Fine-tuned weights themselves are bit-identical only on one kind of CPU
# (MKL and ATen pick kernels by instruction set; weights_sha256 recorded there differs here), so the
# pin is the accuracy a user re-derives, not a hash.
REPORTED_PICK = (2, 2, 7, 7, 2, 2, 7, 7, 2, 2, 6, 8, 8, 7, 8, 7, 6)


def test_a_reported_one_layer_fine_tuned_accuracy_is_re_derived_exactly() -> None:
    from gruq.evaluate import accuracies, load
    from gruq.scheme_model import from_options

    ckpt = from_options("vowels", REPORTED_PICK, finetune_epochs=6, seed=0, samples=1024, select="val").build()
    data, _ = load("vowels")
    [accuracy] = accuracies(ckpt, [REPORTED_PICK], data.split("holdout"))
    assert round(accuracy * 150) == 146
