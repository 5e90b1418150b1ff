"""``memkit stats``, ``memkit backup`` and ``memkit restore``: what a database holds,
and consistent copies of it."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import agents, audit, memory, sessions, tasks
from ..database import Database
from ..engines.interface import Connection
from ..errors import DatabaseFileError, MemkitError
from . import add_json_flag, add_output_flags, emit, emit_rows, example, raise_missing

__all__ = ["collect_stats", "open_existing", "open_or_create", "register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "stats", help="rows, sizes and storage of a database",
        description="What a database holds. --json prints everything; --nl, --csv and "
                    "--table print the rows per table.",
        **example("memkit stats agents.db", "memkit stats agents.db --table --fmt github"))
    p.add_argument("path", metavar="DB", help="database file")
    add_output_flags(p)
    p.set_defaults(handler=cmd_stats)

    p = subparsers.add_parser("backup", help="copy a database with SQLite's online backup API",
                              **example("memkit backup agents.db backup.db.gz"))
    p.add_argument("path", metavar="DB", help="database file")
    p.add_argument("dest", help="the copy (a new file; gzip-compressed if it ends in .gz)")
    p.add_argument("--overwrite", action="store_true", help="replace dest if it exists")
    add_json_flag(p)
    p.set_defaults(handler=cmd_backup)

    p = subparsers.add_parser("restore", help="put a backup (plain or .gz) in place as a database",
                              **example("memkit restore backup.db.gz restored.db"))
    p.add_argument("backup", help="a file memkit backup wrote (plain or .gz)")
    p.add_argument("dest", help="the database to create (never a live one)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace dest if it exists (refused while anything has it open)")
    add_json_flag(p)
    p.set_defaults(handler=cmd_restore)


def open_existing(path: str, *, write: bool = False) -> Database:
    """A Database for an up-to-date memkit file that must exist.

    Nothing is created, converted or migrated: reads open it read-only, and
    another application's file is refused before anything touches it.
    """
    if not os.path.exists(path):
        raise_missing(path)
    return Database(path, read_only=not write, migrate=False)


def open_or_create(path: str, **options: Any) -> Database:
    """A new database at ``path``, or the memkit database there (never migrated)."""
    return Database(path, migrate=not os.path.exists(path), **options)


# The counts by group, each read by the service that owns the table.
_GROUPED: dict[str, Callable[[Any], dict[str, int]]] = {
    "sessions by status": sessions.count_by_status,
    "tasks by status": tasks.count_by_status,
    "agents by state": agents.count_by_state,
    "memory rows by type": memory.count_by_type,
    "memory writes by operation": audit.count_by_operation,
}


def _read_stats(conn: Connection) -> dict[str, Any]:
    from ..analysis.storage import btree_sizes, page_totals

    entries = conn.execute(
        "SELECT name, sql LIKE 'CREATE VIRTUAL%' FROM sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name").fetchall()
    virtual = [name for name, is_virtual in entries if is_virtual]
    # Tables of our own: not virtual, not a virtual table's shadow (fts/vec internals).
    tables = [name for name, is_virtual in entries if not is_virtual
              and not any(name.startswith(f"{v}_") for v in virtual)]
    rows = {t: int(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in tables}
    grouped = {name: count(conn) for name, count in _GROUPED.items()}
    btrees = btree_sizes(conn)
    storage: dict[str, dict[str, int]] | None = None
    if btrees is not None:
        storage = {}
        for b in btrees:
            kinds = storage.setdefault(b.kind, {})
            kinds[b.role] = kinds.get(b.role, 0) + b.bytes
    return {"pages": page_totals(conn), "rows": rows, "memory": memory.totals(conn), **grouped,
            "storage_by_kind": storage,
            "schema_version": int(conn.execute("PRAGMA user_version").fetchone()[0])}


async def collect_stats(db: Database) -> dict[str, Any]:
    """What ``memkit stats --json`` prints for an open database."""
    stats = await db.read(_read_stats, snapshot=True)
    path = Path(db.path)
    wal = Path(f"{db.path}-wal")
    stats["file"] = {"path": str(path.resolve()), "bytes": path.stat().st_size,
                     "wal_bytes": wal.stat().st_size if wal.exists() else 0}
    return stats


def _stats_text(stats: dict[str, Any]) -> str:
    file, pages = stats["file"], stats["pages"]
    lines = [
        f"{file['path']}: {file['bytes'] / 1e6:,.2f} MB (+ {file['wal_bytes'] / 1e6:,.2f} MB WAL)"
        f", schema version {stats['schema_version']}",
        f"pages: {pages['page_count']:,} of {pages['page_size']:,} bytes, "
        f"{pages['freelist_count']:,} free",
        "",
        "rows:",
    ]
    lines += [f"  {name:<28} {count:>10,}" for name, count in stats["rows"].items()]
    memory = stats["memory"]
    lines += ["", f"memory: {memory['live_keys']:,} live keys in {memory['namespaces']:,} "
                  f"namespaces; {memory['deleted_rows']:,} deleted rows; "
                  f"highest version {memory['max_version']}"]
    for name in _GROUPED:
        values = ", ".join(f"{k} {v:,}" for k, v in stats[name].items()) or "none"
        lines.append(f"{name}: {values}")
    storage = stats["storage_by_kind"]
    if storage is None:
        lines.append("\nstorage: this SQLite build has no dbstat")
    else:
        lines += ["", f"{'storage (dbstat)':<16} {'data MB':>9} {'index MB':>9} "
                      f"{'search MB':>10} {'other MB':>9}"]
        order = sorted(storage, key=lambda k: -sum(storage[k].values()))
        for kind in order:
            roles = storage[kind]
            lines.append(f"  {kind:<14} {roles.get('data', 0) / 1e6:>9.2f} "
                         f"{roles.get('index', 0) / 1e6:>9.2f} "
                         f"{roles.get('search', 0) / 1e6:>10.2f} "
                         f"{roles.get('other', 0) / 1e6:>9.2f}")
    return "\n".join(lines)


async def cmd_stats(args: argparse.Namespace) -> int:
    async with open_existing(args.path) as db:
        stats = await collect_stats(db)
    rows = [{"table": name, "rows": count} for name, count in stats["rows"].items()]
    emit_rows(args, rows, ("table", "rows"), document=stats, text=_stats_text(stats))
    return 0


async def cmd_backup(args: argparse.Namespace) -> int:
    async with open_existing(args.path) as db:
        # Database.backup lands the copy only after it passed quick_check.
        try:
            target = await db.backup(args.dest, overwrite=args.overwrite)
        except DatabaseFileError as exc:
            # The source opened as a memkit database, so a copy that fails its
            # check (or cannot be written) is a failed check (exit 1), not bad input.
            raise MemkitError(str(exc)) from exc
    report = {"source": os.path.abspath(args.path), "dest": str(target.resolve()),
              "bytes": target.stat().st_size, "quick_check": "ok", "ok": True}
    emit(args, report, f"{args.path} -> {target}: {report['bytes'] / 1e6:,.2f} MB, "
                       "quick_check ok")
    return 0


async def cmd_restore(args: argparse.Namespace) -> int:
    from ..engines.sqlite.files import restore

    target = restore(args.backup, args.dest, overwrite=args.overwrite)
    report = {"backup": os.path.abspath(args.backup), "dest": str(target.resolve()),
              "bytes": target.stat().st_size, "quick_check": "ok", "ok": True}
    emit(args, report, f"{args.backup} -> {target}: {report['bytes'] / 1e6:,.2f} MB, "
                       "quick_check ok")
    return 0
