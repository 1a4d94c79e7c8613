"""Finding data files shipped inside installed packages, without importing them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from gruq.errors import GruqError


def package_file(module: str, *parts: str, task: str, install: str) -> Path:
    """Path of a data file inside the installed package `module`.

    Only the import system's finder is asked (importlib.util.find_spec on a
    top-level name does not run the package's code). A missing package or
    file is a GruqError telling the user what to install.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise GruqError(
            f"task {task!r} needs the package {module!r}, which is not installed; install it with: {install}"
        )
    for location in spec.submodule_search_locations:
        path = Path(location, *parts)
        if path.is_file():
            return path
    raise GruqError(
        f"task {task!r}: the installed package {module!r} has no {'/'.join(parts)}; reinstall it with: {install}"
    )
