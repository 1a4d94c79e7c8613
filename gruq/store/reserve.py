"""Room kept free on the store's file system so that a run can always record its end.

Why: when the disk fills up mid-run, the generation's commit fails, and so
would the small write that marks the run 'failed': the run would be left
'running' with a dead process. A running search therefore keeps a small file
of zeros beside its store (`<db>-reserve`); when a write fails, the reserve is
deleted first, which frees the room SQLite needs to record the failure. The
file is removed when the run ends, however it ends (a kill -9 leaves it, and the
next run of that store reuses it).
"""

from __future__ import annotations

import os
from pathlib import Path

SIZE = 256 * 1024  # far more than SQLite needs to commit one status update in WAL mode


class Reserve:
    """A file of SIZE zero bytes beside `db`, released on demand."""

    def __init__(self, db: str | Path) -> None:
        self.path = Path(f"{db}-reserve")
        self.held = False

    def hold(self) -> bool:
        """Write the reserve; False (and nothing left behind) if the disk is already too full."""
        try:
            with open(self.path, "wb") as f:
                f.write(b"\0" * SIZE)
                f.flush()
                os.fsync(f.fileno())  # make the file system allocate the blocks now
        except OSError:
            self.release()
            return False
        self.held = True
        return True

    def release(self) -> bool:
        """Delete the reserve; True if there was one to free."""
        had = self.held or self.path.exists()
        self.held = False
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            return False
        return had

    def __enter__(self) -> Reserve:
        self.hold()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
