"""Is the process that a run row names still a live gruq process? (Same host only.)

A stored pid can outlive its process and be reused by another one, so before
anyone signals it we also check, where /proc allows, that it runs gruq.
"""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int | None) -> bool:
    """True if `pid` is a running gruq process; a zombie (killed, not yet reaped) is dead."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True  # no /proc here: trust kill(0)
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
    except (OSError, IndexError):
        return False  # vanished while we looked
    return state not in ("Z", "X") and b"gruq" in cmdline
