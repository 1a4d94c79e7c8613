"""A quick default search per task, and its wall time.

The quick budget: population 16, 6 generations (the first included), post-
training quantization (no fine-tuning), seed 0: at most 96 genomes scored,
usually a few less as offspring repeat earlier genomes. It is what a user
gets from

    python -m gruq search --task T --pop 16 --gens 6 --seed 0 --db PATH --json

and that exact command is what is timed, as its own process, start to end
(interpreter start, imports, loading the data and checkpoint, the search and
the writes to a fresh store in a temporary folder): the wall time a user
waits. Target: under 3 minutes per task. Wall time depends on the machine and
on how loaded it is; the object records the CPU count and load average.

Run as a script: `python bench/quick_run.py [--tasks vowels ecg ...]` prints
one JSON object; a task that cannot run (no checkpoint yet) is reported under
"skipped" with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make `gruq` importable from the checkout
    sys.path.insert(0, str(ROOT))

from gruq.errors import GruqError  # noqa: E402

QUICK = {"pop": 16, "gens": 6, "seed": 0}
TARGET_SECONDS = 180.0
TASKS = ("smnist", "vowels", "har", "ecg")


def command(
    task: str, db: Path, pop: int = QUICK["pop"], gens: int = QUICK["gens"], seed: int = QUICK["seed"]
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gruq",
        "search",
        "--task",
        task,
        "--pop",
        str(pop),
        "--gens",
        str(gens),
        "--seed",
        str(seed),
        "--db",
        str(db),
        "--json",
    ]


def quick_run(
    task: str,
    pop: int = QUICK["pop"],
    gens: int = QUICK["gens"],
    seed: int = QUICK["seed"],
    timeout: float | None = None,
) -> dict[str, Any]:
    """Time one quick search of `task` in its own process.

    Returns seconds, evaluations, the final hypervolume and the front's size.
    Raises GruqError with gruq's own one-line message if the search refuses to
    run (exit status 2: an unknown task, a missing checkpoint).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    with tempfile.TemporaryDirectory(prefix="gruq-quick-") as tmp:
        cmd = command(task, Path(tmp) / "quick.db", pop, gens, seed)
        started = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise GruqError(f"quick run of {task} did not finish within {timeout:g} s") from None
        seconds = time.perf_counter() - started
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        raise GruqError(last.removeprefix("gruq: error: "))
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    hv = out["hypervolume"]
    return {
        "task": task,
        "seconds": seconds,
        "within_target": seconds < TARGET_SECONDS,
        "evaluations": out["evaluations"],
        "hypervolume": hv[-1] if hv else 0.0,
        "front_size": len(out["front"]),
        "command": " ".join(["python"] + cmd[1:-3] + ["--db", "PATH", "--json"]),
    }


def machine() -> dict[str, Any]:
    """What the timings were measured on: CPU count and load average at the time."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cpus": os.cpu_count(), "load_average": load}


def quick_runs(tasks: Sequence[str] = TASKS, progress: bool = True, **kw: Any) -> dict[str, Any]:
    """`quick_run` per task; tasks that cannot run are skipped with the reason."""
    from tqdm import tqdm

    seconds: dict[str, float] = {}
    details: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for task in tqdm(
        list(tasks), desc="quick runs", unit="task", file=sys.stderr, disable=not progress, dynamic_ncols=True
    ):
        try:
            d = quick_run(task, **kw)
        except GruqError as exc:
            skipped[task] = str(exc)
            continue
        seconds[task] = d["seconds"]
        details[task] = d
    return {
        "quick_run_seconds": seconds,
        "quick_run": details,
        "skipped": skipped,
        "budget": {**QUICK, "finetune_epochs": 0, **kw},
        "target_seconds": TARGET_SECONDS,
        "machine": machine(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Wall time of a quick default search per task.")
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    args = p.parse_args(argv)
    print(json.dumps(quick_runs(args.tasks)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
