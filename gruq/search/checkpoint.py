"""The state a run continues from, as JSON (never pickle: a store must be safe to open).

Saved at the end of every generation, in the same transaction as the
generation itself: the population in order, the Pareto front so far, both
random generators, the logbook and the evaluation count. Fitnesses are not
saved: they follow from the genomes and the stored accuracies.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
from deap import tools

from gruq.genome import Genome

FORMAT = 1
LOG_HEADER = ["gen", "nevals", "evaluations", "front", "hypervolume"]


def capture(
    gen: int, population: Sequence, front: Sequence, logbook: tools.Logbook, evaluations: int
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "gen": gen,
        "population": [list(map(int, ind)) for ind in population],
        "front": [list(map(int, ind)) for ind in front],
        "evaluations": evaluations,
        "logbook": [dict(record) for record in logbook],
        "random_state": _random_state(),
        "numpy_state": _numpy_state(),
    }


def restore_rngs(state: dict[str, Any]) -> None:
    version, internal, gauss = state["random_state"]
    random.setstate((version, tuple(internal), gauss))
    ns = state["numpy_state"]
    keys = np.array(ns["keys"], dtype=np.uint32)
    np.random.set_state((ns["kind"], keys, ns["pos"], ns["has_gauss"], ns["cached_gaussian"]))


def genomes(state: dict[str, Any], key: str) -> list[Genome]:
    return [tuple(g) for g in state[key]]


def new_logbook() -> tools.Logbook:
    logbook = tools.Logbook()
    logbook.header = list(LOG_HEADER)
    return logbook


def restore_logbook(state: dict[str, Any]) -> tools.Logbook:
    logbook = new_logbook()
    for record in state["logbook"]:
        logbook.record(**record)
    return logbook


def _random_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _numpy_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "kind": kind,
        "keys": keys.tolist(),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }
