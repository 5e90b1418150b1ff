"""WAL health, read without writing: the WAL's size and the readers holding it.

A reader in a read transaction pins the WAL: checkpoints cannot copy frames
past its snapshot nor restart the log, so a reader left open grows the WAL
without bound. SQLite says nothing about its readers, but each one holds a
POSIX read lock on one of the five read-mark bytes of the ``-shm`` file
(bytes 123-127), and Linux lists every such lock in ``/proc/locks``. Reading
that list opens nothing: opening and closing the ``-shm`` file itself would
drop this process's own SQLite locks on it. The list shows who holds a
snapshot now, not for how long; a check run twice tells a long-open reader
from a passing one. Elsewhere than Linux the readers are unknown (None).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["WAL_WARN_BYTES", "wal_readers", "wal_status"]

#: The seeds' guidance: the WAL should stay under 100 MB.
WAL_WARN_BYTES = 100 * 1024 * 1024

# The read-mark lock bytes of the -shm file (SQLite's WAL_READ_LOCK(0..4)).
_READ_LOCKS = range(123, 128)
_PROC_LOCKS = Path("/proc/locks")


def wal_readers(path: str, locks: Path = _PROC_LOCKS) -> list[int] | None:
    """Pids of the other processes in a read transaction on ``path`` (None: unknown)."""
    try:
        shm = os.stat(f"{path}-shm")
        table = locks.read_text()
    except FileNotFoundError:
        return [] if locks.exists() else None
    except OSError:
        return None
    device = f"{os.major(shm.st_dev):02x}:{os.minor(shm.st_dev):02x}:{shm.st_ino}"
    pids: set[int] = set()
    for line in table.splitlines():
        fields = line.split()
        if "->" in fields:  # a waiter, listed under the lock it waits for
            fields.remove("->")
        # N: POSIX ADVISORY READ pid dev:inode start end
        if len(fields) < 8 or fields[1] != "POSIX" or fields[3] != "READ":
            continue
        if fields[5] != device or not fields[6].isdigit():
            continue
        if int(fields[6]) in _READ_LOCKS and int(fields[4]) != os.getpid():
            pids.add(int(fields[4]))
    return sorted(pids)


def wal_status(path: str) -> dict[str, Any]:
    """``{wal_bytes, warn_bytes, too_big, readers}`` for the database file ``path``."""
    try:
        size = os.stat(f"{path}-wal").st_size
    except FileNotFoundError:
        size = 0
    return {"wal_bytes": size, "warn_bytes": WAL_WARN_BYTES, "too_big": size > WAL_WARN_BYTES,
            "readers": wal_readers(path)}
