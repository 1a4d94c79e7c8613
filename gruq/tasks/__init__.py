"""The tasks gruq knows: four real data sets shipped in installed packages, and
user tasks from .npz files.

    load("smnist")          a task by name (NAMES), seed 0 = canonical splits
    load("path/to/my.npz")  a user's task (see gruq.tasks.npz)
    summaries()             Task.summary() of the four, in NAMES order

Loaded tasks are cached in-process per (name, seed) (a user file also by its
modification time and size). The cached arrays are shared: do not modify a
task's arrays in place. Nothing is ever downloaded.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gruq.errors import GruqError
from gruq.paths import input_file

if TYPE_CHECKING:
    from gruq.tasks.base import Split, Task

NAMES = ("smnist", "vowels", "har", "ecg")

__all__ = ["NAMES", "Split", "Task", "load", "summaries"]


def __getattr__(name: str) -> Any:
    """Split and Task on first use: importing the task names alone needs no numpy
    (the command line's --help works in an environment without the dependencies)."""
    if name in ("Split", "Task"):
        from gruq.tasks import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@lru_cache(maxsize=16)
def _load_named(name: str, seed: int) -> Task:
    from importlib import import_module

    return import_module(f"gruq.tasks.{name}").load(seed)


@lru_cache(maxsize=8)
def _load_file(path: str, mtime_ns: int, size: int, seed: int) -> Task:
    from gruq.tasks.npz import load_npz

    return load_npz(path, seed)


def _looks_like_path(name: str) -> bool:
    if name.endswith(".npz") or "/" in name or "\\" in name:
        return True
    try:
        return Path(name).expanduser().exists()
    except (OSError, ValueError):  # a name too long to be a file, a NUL byte
        return False


def load(name_or_path: str, seed: int = 0) -> Task:
    """A task by name (one of NAMES) or from a .npz file, with the splits of `seed`."""
    from gruq.tasks.split import check_seed

    seed = check_seed(seed)
    if not isinstance(name_or_path, (str, Path)):
        raise GruqError(f"a task is a name ({', '.join(NAMES)}) or a path to a .npz file, not {name_or_path!r}")
    name = str(name_or_path).strip()
    if name.lower() in NAMES:
        return _load_named(name.lower(), seed)
    if _looks_like_path(name):
        path = input_file(name, "task file").resolve()  # never a folder, pipe or device
        stat = path.stat()
        return _load_file(str(path), stat.st_mtime_ns, stat.st_size, seed)
    raise GruqError(f"unknown task {name!r}; tasks are: {', '.join(NAMES)} (or a path to a .npz file with X and y)")


def cache_clear() -> None:
    """Forget every loaded task."""
    _load_named.cache_clear()
    _load_file.cache_clear()


load.cache_clear = cache_clear  # type: ignore[attr-defined]  # as if load were lru_cached


def summaries() -> list[dict]:
    """Task.summary() of the four built-in tasks, in NAMES order."""
    return [load(name).summary() for name in NAMES]
