"""gruq.train: float training and quantization-aware fine-tuning, deterministic for a seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import small

from gruq.errors import GruqError
from gruq.genome import homogeneous
from gruq.model import Checkpoint
from gruq.tasks.base import Split, Task
from gruq.train import finetune, float_accuracy, seed_for, train_float


def toy_task(n_train: int = 60, steps: int = 5, features: int = 3, classes: int = 3) -> Task:
    """A learnable synthetic task: the class shifts the mean of every feature."""
    gen = np.random.default_rng(0)

    def split(n):
        y = gen.integers(0, classes, n)
        X = gen.standard_normal((n, steps, features)).astype(np.float32) * 0.5
        X += (y[:, None, None] - 1).astype(np.float32)
        return Split(X=X, y=y.astype(np.int64))

    return Task(name="toy", train=split(n_train), val=split(30), test=split(30), classes=classes, hidden=8, epochs=2)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- float training -------------------------------------------------------------


def test_train_float_is_deterministic_for_a_seed():
    task = toy_task()
    a = train_float(task, epochs=2, seed=3)
    b = train_float(task, epochs=2, seed=3)
    assert same_weights(a.model, b.model)
    assert a.calibration == b.calibration
    assert a.meta["val_accuracy"] == b.meta["val_accuracy"]


def test_train_float_depends_on_the_seed():
    task = toy_task()
    assert not same_weights(train_float(task, epochs=1, seed=0).model, train_float(task, epochs=1, seed=1).model)


def test_train_float_records_what_it_did():
    task = toy_task()
    seen = []
    ckpt = train_float(task, epochs=2, seed=0, progress=lambda e, n, m: seen.append((e, n, set(m))))
    assert seen == [(1, 2, {"val"}), (2, 2, {"val"})]
    assert ckpt.meta["task"] == "toy" and ckpt.meta["epochs"] == 2 and ckpt.meta["seed"] == 0
    assert ckpt.meta["val_accuracy"] == float_accuracy(ckpt.model, task.val)
    assert ckpt.meta["test_accuracy"] == float_accuracy(ckpt.model, task.test)
    assert not ckpt.model.training
    assert ckpt.model.gru.input_size == 3 and ckpt.model.hidden == 8 and ckpt.model.head.out_features == 3


def test_train_float_defaults_to_the_task_epochs():
    task = toy_task()
    assert train_float(task, seed=0).meta["epochs"] == task.epochs


def test_train_float_learns_an_easy_task():
    task = toy_task(n_train=90)
    ckpt = train_float(task, epochs=4, seed=0, lr=1e-2, batch=16)
    assert ckpt.meta["val_accuracy"] >= 0.8


# -- fine-tuning -------------------------------------------------------------------


def toy_checkpoint() -> tuple[Checkpoint, Split]:
    s = small(features=3, hidden=8, classes=4, steps=5, n=48, seed=5)
    y = np.arange(len(s.X)) % 4
    return Checkpoint(model=s.model, calibration=s.calib, meta={"task": "toy"}), Split(X=s.X, y=y)


def test_finetune_is_deterministic_for_a_seed():
    ckpt, train = toy_checkpoint()
    a = finetune(ckpt, homogeneous(4), train, epochs=2, seed=7, batch=16)
    b = finetune(ckpt, homogeneous(4), train, epochs=2, seed=7, batch=16)
    assert same_weights(a.model, b.model)


def test_finetune_changes_a_copy_of_the_weights():
    ckpt, train = toy_checkpoint()
    before = {k: v.clone() for k, v in ckpt.model.state_dict().items()}
    tuned = finetune(ckpt, homogeneous(3), train, epochs=1, seed=0, batch=16)
    assert tuned.model is not ckpt.model
    assert not same_weights(tuned.model, ckpt.model)
    assert all(torch.equal(before[k], v) for k, v in ckpt.model.state_dict().items()), "the input checkpoint changed"
    assert tuned.calibration == ckpt.calibration  # activation ranges stay the float model's
    assert tuned.meta["finetuned"] == list(homogeneous(3))
    assert tuned.meta["task"] == "toy"
    assert not tuned.model.training


def test_finetune_depends_on_the_seed():
    ckpt, train = toy_checkpoint()
    a = finetune(ckpt, homogeneous(4), train, epochs=1, seed=0, batch=16)
    b = finetune(ckpt, homogeneous(4), train, epochs=1, seed=1, batch=16)
    assert not same_weights(a.model, b.model)


def test_finetune_for_zero_epochs_returns_the_checkpoint_itself():
    ckpt, train = toy_checkpoint()
    assert finetune(ckpt, homogeneous(2), train, epochs=0) is ckpt


def test_finetune_checks_the_genome_even_for_zero_epochs():
    ckpt, train = toy_checkpoint()
    with pytest.raises(GruqError):
        finetune(ckpt, (8,) * 16, train, epochs=0)
    with pytest.raises(GruqError):
        finetune(ckpt, (9,) * 17, train, epochs=1)


def test_finetune_reports_a_finite_loss_per_epoch():
    ckpt, train = toy_checkpoint()
    seen = []
    finetune(ckpt, homogeneous(2), train, epochs=2, seed=0, batch=16, progress=lambda e, n, m: seen.append((e, n, m)))
    assert [(e, n) for e, n, _ in seen] == [(1, 2), (2, 2)]
    assert all(np.isfinite(m["loss"]) for _, _, m in seen)


def test_seed_for_is_a_pure_function_of_genome_and_seed():
    g, h = homogeneous(4), homogeneous(5)
    assert seed_for(g, 0) == seed_for(g, 0)
    assert seed_for(g, 0) != seed_for(h, 0)
    assert seed_for(g, 0) != seed_for(g, 1)
    assert isinstance(seed_for(g, 0), int) and seed_for(g, 0) >= 0


def test_finetune_does_not_depend_on_the_callers_thread_count():
    # the search fine-tunes in worker processes with other thread settings
    ckpt, train = toy_checkpoint()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = finetune(ckpt, homogeneous(5), train, epochs=1, seed=2, batch=16)
        torch.set_num_threads(2)
        b = finetune(ckpt, homogeneous(5), train, epochs=1, seed=2, batch=16)
    finally:
        torch.set_num_threads(before)
    assert same_weights(a.model, b.model)
    assert torch.get_num_threads() == before


# -- fine-tuning options: samples per epoch, best epoch on a held-out split, default batch ----------------


def test_finetune_samples_at_least_the_split_size_changes_nothing():
    ckpt, train = toy_checkpoint()
    a = finetune(ckpt, homogeneous(4), train, epochs=2, seed=3, batch=16)
    b = finetune(ckpt, homogeneous(4), train, epochs=2, seed=3, batch=16, samples=len(train))
    c = finetune(ckpt, homogeneous(4), train, epochs=2, seed=3, batch=16, samples=10 * len(train))
    assert same_weights(a.model, b.model) and same_weights(a.model, c.model)


def test_finetune_samples_trains_on_a_seeded_subset_per_epoch():
    ckpt, train = toy_checkpoint()
    seen = []
    a = finetune(
        ckpt,
        homogeneous(4),
        train,
        epochs=2,
        seed=3,
        batch=16,
        samples=20,
        progress=lambda e, n, m: seen.append(m["loss"]),
    )
    b = finetune(ckpt, homogeneous(4), train, epochs=2, seed=3, batch=16, samples=20)
    full = finetune(ckpt, homogeneous(4), train, epochs=2, seed=3, batch=16)
    assert same_weights(a.model, b.model) and not same_weights(a.model, full.model)
    assert len(seen) == 2 and all(np.isfinite(seen))
    with pytest.raises(GruqError):
        finetune(ckpt, homogeneous(4), train, epochs=1, samples=0)


def test_finetune_select_keeps_the_best_epoch_on_the_held_out_split():
    from gruq.evaluate import accuracies

    ckpt, train = toy_checkpoint()
    held = Split(X=train.X[::-1].copy(), y=train.y[::-1].copy())
    seen = []
    best = finetune(
        ckpt,
        homogeneous(3),
        train,
        epochs=3,
        seed=1,
        batch=16,
        select=held,
        progress=lambda e, n, m: seen.append(m["select"]),
    )
    start = accuracies(ckpt, [homogeneous(3)], held)[0]
    assert accuracies(best, [homogeneous(3)], held)[0] == max([start] + seen)
    again = finetune(ckpt, homogeneous(3), train, epochs=3, seed=1, batch=16, select=held)
    assert same_weights(best.model, again.model)


def test_default_finetune_batch_gives_small_sets_eight_steps():
    from gruq.train import FINETUNE_BATCH, finetune_batch

    assert finetune_batch(240) == 30 and finetune_batch(100) == 16
    assert finetune_batch(2048) == finetune_batch(6000) == FINETUNE_BATCH
