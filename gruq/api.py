"""gruq from Python: the few calls a notebook or a script needs, with the command line's checks.

    import gruq

    task = gruq.load_task("vowels")                     # or a path to your own .npz
    rows = gruq.score("vowels", [8, 4, "3,8,2,5,6,4,7,2,8,5,3,6,4,2,7,5,6"], split="test")
    run = gruq.run_search("vowels", db="runs/gruq.db", pop=16, gens=4, seed=0)
    files = gruq.export_model("vowels", run["front"][0]["bits"], "out/pick0")

The names avoid gruq's subpackages (gruq.search, gruq.export, gruq.train), which
would shadow them once imported. Why a module of its own: the library's own functions are shaped for the command
line and the app (names of splits, stored configs, progress bars); these wrap
them with plain arguments and plain results (dicts and lists, as `--json`
prints them), and every bad argument raises `gruq.GruqError` with the same
one-line message the command line prints. Heavy modules (torch, DEAP) are
imported on the first call, not by `import gruq`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from gruq.errors import GruqError
from gruq.genome import Genome, parse_bits, validate

__all__ = ["export_model", "front", "genome", "load_task", "run_search", "score", "train_model"]

GenomeLike = int | str | Sequence[int]


def load_task(task: str | Path, seed: int = 0) -> Any:
    """A task (gruq.tasks.Task: train / val / test splits of X (N, T, F) and y) by name,
    or from a .npz file of yours with X (N, T, F) and y (N)."""
    from gruq import tasks

    return tasks.load(str(task), seed)


def genome(bits: GenomeLike) -> Genome:
    """17 bit widths from one width (8), a text ("8,4,...") or a sequence of 17 ints."""
    if isinstance(bits, str):
        return parse_bits(bits)
    if isinstance(bits, int) and not isinstance(bits, bool):
        return parse_bits(str(bits))
    return validate(tuple(bits))


def score(
    task: str | Path,
    genomes: Iterable[GenomeLike],
    split: str = "val",
    checkpoint: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Accuracy (post-training quantization, on `split`), size and BOPs of each genome,
    scored together (one batched simulation): [{bits, accuracy, size_bytes, bops}, ...]."""
    from gruq.evaluate import Evaluator, load
    from gruq.genome import bops, size_bytes

    wanted = [genome(g) for g in genomes]
    if split not in ("train", "val", "test"):
        raise GruqError(f"split must be train, val or test; got {split!r}")
    ckpt = str(checkpoint) if checkpoint else None
    data, _ = load(str(task), ckpt)
    accuracies = Evaluator(str(task), split, checkpoint=ckpt).accuracy(wanted) if wanted else []
    return [
        {"bits": list(g), "accuracy": a, "size_bytes": size_bytes(g, data.shape), "bops": bops(g, data.shape)}
        for g, a in zip(wanted, accuracies)
    ]


def run_search(task: str | Path, db: str | Path = "runs/gruq.db", progress: bool = False, **settings: Any) -> dict:
    """Run an NSGA-II search to its end, recorded in the store `db`; returns the result
    object of `gruq search --json` (run_id, front, hypervolume per generation, ...).
    `settings` are SearchConfig's: pop, gens, seed, objective, max_size_kb,
    min_accuracy, bits_ranges={"add_h": (4, 8)}, pins={"sig_r": 2}, workers, ..."""
    from gruq.paths import file_or_absent
    from gruq.search import run
    from gruq.search.config import SearchConfig

    path = file_or_absent(db, "db")
    return run.start(path, SearchConfig.from_dict({"task": str(task), **settings}), progress=progress)


def front(db: str | Path, run_id: int) -> dict:
    """The result object of a stored run (its latest front, sorted by cost)."""
    from gruq.paths import input_file
    from gruq.store import result

    return result(input_file(db, "db"), run_id)


def export_model(
    task: str | Path,
    bits: GenomeLike,
    out: str | Path,
    checkpoint: str | Path | None = None,
    split: str = "test",
    finetune_epochs: int = 0,
    seed: int = 0,
) -> dict:
    """Export the quantized model (integer model file, C99 kernel, check program, test
    vectors) into the folder `out`; returns the memory report (docs/export-format.md)."""
    from gruq import export as exporting

    return exporting.export(str(task), genome(bits), out, checkpoint, split, finetune_epochs, seed)


def train_model(task: str | Path, epochs: int | None = None, seed: int = 0, out: str | Path | None = None) -> dict:
    """Train the float model of a task (needed once per task before anything else) and
    save it (default: the task's checkpoint in assets/); returns its metadata."""
    from gruq import limits, tasks
    from gruq.model import checkpoint_path, writable
    from gruq.train import train_float

    seed = limits.check_seed(seed)
    if epochs is not None:
        epochs = limits.check_int(epochs, "epochs", 1, limits.MAX_EPOCHS)
    data = tasks.load(str(task))
    path = writable(Path(out) if out is not None else checkpoint_path(str(task)))
    ckpt = train_float(data, epochs or data.epochs, seed)
    ckpt.save_or_keep(path)
    return {**ckpt.meta, "checkpoint": str(path)}
