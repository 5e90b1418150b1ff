"""``memkit archive``: move old rows into an archive database file."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from ..archive import archive
from . import add_json_flag, emit, example, positive_int, refuse_dsn
from .admin import open_existing

__all__ = ["default_archive_path", "older_than", "register"]

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([hdw]?)$")
_DAYS = {"h": 1 / 24, "d": 1.0, "w": 7.0, "": 1.0}


def older_than(text: str) -> float:
    """argparse type: an age as ``90d``, ``12h``, ``2w`` or a number of days."""
    match = _AGE.match(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"expected an age like 90d, 12h or 2w, got {text!r}")
    return float(match.group(1)) * _DAYS[match.group(2)]


def default_archive_path(path: str) -> str:
    """``agents.db`` -> ``agents.archive.db``, beside it."""
    main = Path(path)
    return str(main.with_name(f"{main.stem}.archive{main.suffix or '.db'}"))


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "archive", help="move old audit rows, memory versions and session events to a file",
        description="Move audit rows, superseded memory versions and the events of terminated "
                    "sessions older than --older-than into an archive database, in batches "
                    "(each copied and counted before it is deleted).",
        **example("memkit archive agents.db --older-than 90d"))
    p.add_argument("path", metavar="DB", help="database file")
    p.add_argument("--older-than", type=older_than, required=True, metavar="AGE",
                   help="e.g. 90d (days), 12h, 2w")
    p.add_argument("--to", dest="archive", help="archive file (default: NAME.archive.db)")
    p.add_argument("--batch-size", type=positive_int, default=1000)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(p)
    p.set_defaults(handler=cmd_archive)


async def cmd_archive(args: argparse.Namespace) -> int:
    refuse_dsn(args.path, "archive", "it moves rows into a SQLite file attached to the "
               "database; on PostgreSQL, partition or move old rows with SQL")
    target = args.archive or default_archive_path(args.path)
    progress = not args.no_progress and not args.json and sys.stderr.isatty()
    async with open_existing(args.path, write=True) as db:
        result = await archive(db, target, args.older_than, batch_size=args.batch_size,
                               progress=progress)
    moved = ", ".join(f"{n:,} {table}" for table, n in result.moved.items())
    emit(args, result.to_dict(),
         f"{args.path}: moved {moved} (older than {result.cutoff}) to {target}; "
         f"{result.sessions_archived} session(s) now archived")
    return 0
