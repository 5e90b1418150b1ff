"""The WAL lines of ``memkit doctor PATH``."""

from __future__ import annotations

import os
from typing import Any

from ..engines.sqlite.monitoring import wal_status
from .core import raise_missing

__all__ = ["wal_report"]


def wal_report(path: str) -> tuple[dict[str, Any], str]:
    """The WAL status of ``path`` (opened by no connection) and its text lines."""
    if not os.path.exists(path):
        raise_missing(path)
    status = wal_status(path)
    size = f"{status['wal_bytes'] / 2**20:.1f} MB"
    warn = f" (over {status['warn_bytes'] // 2**20} MB: checkpoint it)" if status["too_big"] else ""
    readers = status["readers"]
    if readers is None:
        held = "unknown (needs /proc/locks)"
    elif readers:
        held = f"a reader holds the WAL (pid {', '.join(map(str, readers))})"
    else:
        held = "none"
    return status, f"wal             {size}{warn}\nwal readers     {held}"
