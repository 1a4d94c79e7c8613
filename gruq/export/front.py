"""Choosing a member of a stored run's front for export (`--db PATH --run ID --pick K`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gruq.errors import GruqError


def front_member(db: str | Path, run_id: int, pick: int) -> dict[str, Any]:
    """Member `pick` of run `run_id`'s latest front, the front sorted by size_bytes
    ascending (ties: higher accuracy first, then bits).

    Returns task, bits, accuracy, size_bytes, finetuned_accuracy, model (the
    label of the model its numbers belong to) and check (the `gruq evaluate`
    command that re-derives its validation accuracy). The model itself is
    `gruq.scheme_model.load_from_run(db, run_id, bits)`: the final front's
    fine-tuning when the member has a fine-tuned accuracy, else the
    per-candidate fine-tuning, else post-training.
    """
    from gruq import store
    from gruq.paths import file_or_absent

    if not file_or_absent(db, "--db").is_file():  # a pipe or a device is refused unopened
        raise GruqError(f"no gruq store at {db}")
    run = store.run_detail(db, run_id)
    front = sorted(store.result(db, run_id)["front"], key=lambda m: (m["size_bytes"], -m["accuracy"], list(m["bits"])))
    if not front:
        raise GruqError(f"run {run_id} in {db} has no front yet (no finished generation)")
    if not 0 <= pick < len(front):
        raise GruqError(
            f"run {run_id}'s front has {len(front)} member(s); --pick must be 0 to {len(front) - 1} "
            "(sorted by size_bytes ascending)"
        )
    member = front[pick]
    cfg = run.get("config", {})
    return {
        "task": run["task"],
        "checkpoint": cfg.get("checkpoint"),  # the run's float model (None: the task's own)
        "bits": [int(b) for b in member["bits"]],
        "accuracy": member["accuracy"],
        "size_bytes": member["size_bytes"],
        "finetuned_accuracy": member.get("finetuned_accuracy"),
        "model": member["model"],
        "check": member["check"],
        "run_id": run_id,
        "pick": pick,
        "front_size": len(front),
    }
