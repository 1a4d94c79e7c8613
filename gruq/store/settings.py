"""Small settings remembered next to a store (the app's last scheduler address, ...).

A JSON object in `<store>.settings.json`, written atomically (a temporary
file renamed over it), so a reader never sees half a file. A missing or
unreadable file is an empty object: these are conveniences, not data.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def settings_path(db: str | Path) -> Path:
    db = Path(db)
    return db.with_name(f"{db.name}.settings.json")


def load(db: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(settings_path(db).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save(db: str | Path, **values: Any) -> None:
    """Merge `values` into the settings file."""
    path = settings_path(db)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**load(db), **values}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
