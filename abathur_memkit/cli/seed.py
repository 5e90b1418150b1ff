"""``memkit seed``: write the seed's initial memories into a database."""

from __future__ import annotations

import argparse
from typing import Any

from ..database import Database
from ..seed import INITIAL_MEMORIES, seed_initial_memories
from . import add_json_flag, emit, example
from .admin import open_existing

__all__ = ["register", "seed_report"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "seed", help="add the seed's initial memories (idempotent)",
        description="Add the initial memories every Abathur database starts with; keys "
                    "already there are left as they are.",
        **example("memkit seed agents.db"))
    p.add_argument("path", metavar="DB",
                   help="database file (memkit init DB --seed creates and seeds)")
    add_json_flag(p)
    p.set_defaults(handler=cmd_seed)


async def seed_report(db: Database) -> dict[str, Any]:
    """Seed ``db``; what was added and what was there already."""
    added = await seed_initial_memories(db)
    return {"added": len(added), "ids": added, "present": len(INITIAL_MEMORIES) - len(added)}


def seed_text(path: str, report: dict[str, Any]) -> str:
    return (f"{path}: added {report['added']} initial memories "
            f"({report['present']} already present)")


async def cmd_seed(args: argparse.Namespace) -> int:
    async with open_existing(args.path, write=True) as db:
        report = await seed_report(db)
    emit(args, {"path": args.path, **report}, seed_text(args.path, report))
    return 0
