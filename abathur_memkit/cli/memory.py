"""``memkit memory get|put|list|history|delete|restore``: memories from the shell.

Values are JSON (``'{"mode": "dark"}'``, ``'42'``, ``'"text"'``); ``put --string``
stores the argument as a JSON string instead. Writes are audited like any
other (``--by`` names the writer, default ``cli``). ``--write-policy`` enforces
the write policy for ``--by`` (off by default, as in Python); ``--elevated``
overrides it, as ``elevated=True`` does.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..database import Database
from ..errors import InvalidInputError, NotFoundError
from ..memory import MEMORY_TYPES, MemoryService, describe
from ..namespaces import WritePolicy
from . import add_json_flag, emit
from .admin import open_existing

__all__ = ["preview", "register"]


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("memory", help="read and write memories")
    commands = group.add_subparsers(dest="memory_command", metavar="ACTION", required=True)

    def writes(p: argparse.ArgumentParser) -> None:
        p.add_argument("--by", default="cli", help="the writer recorded (default: cli)")
        p.add_argument("--write-policy", action="store_true",
                       help="enforce the write policy for --by (off by default)")
        p.add_argument("--elevated", action="store_true",
                       help="write where the write policy would refuse --by")

    def command(name: str, help: str, handler: Any, key: bool = True) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = commands.add_parser(name, help=help)
        p.add_argument("path", help="database file")
        if key:
            p.add_argument("namespace", help="scope:id[:more], e.g. user:alice:preferences")
            p.add_argument("key")
        add_json_flag(p)
        p.set_defaults(handler=handler)
        return p

    p = command("get", "the latest live version of a key (or --version N)", cmd_get)
    p.add_argument("--version", type=int, help="that version, live or deleted")

    p = command("put", "create a key, or add a version to it", cmd_put)
    p.add_argument("value", help="a JSON value (or any text with --string)")
    p.add_argument("--string", action="store_true", help="store VALUE as a JSON string")
    p.add_argument("--type", choices=MEMORY_TYPES, dest="memory_type",
                   help="memory type (new keys: default semantic; versions keep theirs)")
    p.add_argument("--metadata", help="a JSON object")
    writes(p)
    p.add_argument("--task", help="task id recorded in the audit row")

    p = command("list", "the latest live version of each key under a prefix", cmd_list,
                key=False)
    p.add_argument("prefix", nargs="?", default="",
                   help="segment-aware namespace prefix (default: everything)")
    p.add_argument("--type", choices=MEMORY_TYPES, dest="memory_type")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--namespaces", action="store_true",
                   help="list the namespaces under the prefix instead")

    command("history", "every version of a key, newest first", cmd_history)

    p = command("delete", "soft-delete a key (history kept)", cmd_delete)
    writes(p)
    p.add_argument("--task", help="task id recorded in the audit row")

    p = command("restore", "undo a soft delete", cmd_restore)
    writes(p)


def preview(value: Any, width: int = 60) -> str:
    """Compact JSON of ``value``, cut to ``width`` characters."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


def _parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(
            f"Invalid {what}: not JSON ({exc.args[0]}); quote text as '\"text\"'"
            + (" or pass --string" if what == "value" else "")) from None
    except RecursionError:
        raise InvalidInputError(f"Invalid {what}: JSON nested too deeply") from None


def _label(entry: dict[str, Any]) -> str:
    deleted = ", deleted" if entry["is_deleted"] else ""
    return (f"{entry['namespace']} {entry['key']} v{entry['version']} "
            f"({entry['memory_type']}{deleted}; by {entry['updated_by'] or '-'} "
            f"at {entry['updated_at']})")


async def cmd_get(args: argparse.Namespace) -> int:
    async with open_existing(args.path) as db:
        entry = await db.memory.get_memory(args.namespace, args.key, args.version)
    if entry is None:
        which = f", version {args.version}" if args.version is not None else ""
        raise NotFoundError(f"Memory not found: {describe(args.namespace, args.key)}{which}")
    emit(args, entry, f"{_label(entry)}\n{json.dumps(entry['value'], indent=2)}")
    return 0


async def cmd_put(args: argparse.Namespace) -> int:
    value = args.value if args.string else _parse_json(args.value, "value")
    metadata = None if args.metadata is None else _parse_json(args.metadata, "metadata")
    async with open_existing(args.path) as db:
        current = await db.memory.get_memory(args.namespace, args.key)
        if current is None:
            entry_id = await _writes(db, args).add_memory(
                args.namespace, args.key, value, args.memory_type or "semantic", args.by,
                task_id=args.task, metadata=metadata, elevated=args.elevated)
            action = "created"
        else:
            await _writes(db, args).update_memory(
                args.namespace, args.key, value, args.by, task_id=args.task,
                memory_type=args.memory_type, metadata=metadata, elevated=args.elevated)
            action = "updated"
        entry = await db.memory.get_memory(args.namespace, args.key)
    assert entry is not None  # just written
    result = {"action": action, **entry}
    emit(args, result, f"{action} {_label(entry)}"
                       + (f" (row {entry_id})" if action == "created" else ""))
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    async with open_existing(args.path) as db:
        if args.namespaces:
            names = await db.memory.list_namespaces(args.prefix)
            emit(args, names, "\n".join(names) or "(no namespaces)")
            return 0
        entries = await db.memory.search_memories(args.prefix, args.memory_type, args.limit)
    lines = [f"{'namespace':<32} {'key':<24} {'v':>3} {'type':<10} {'updated_at':<26} value"]
    lines += [f"{e['namespace']:<32} {e['key']:<24} {e['version']:>3} {e['memory_type']:<10} "
              f"{e['updated_at']:<26} {preview(e['value'], 50)}" for e in entries]
    lines.append(f"{len(entries)} key(s)" + (" (--limit reached)"
                                            if len(entries) == args.limit else ""))
    emit(args, entries, "\n".join(lines))
    return 0


async def cmd_history(args: argparse.Namespace) -> int:
    async with open_existing(args.path) as db:
        versions = await db.memory.get_memory_history(args.namespace, args.key)
    if not versions:
        raise NotFoundError(f"Memory not found: {describe(args.namespace, args.key)}")
    lines = [f"{'v':>3} {'deleted':<7} {'type':<10} {'by':<24} {'updated_at':<26} value"]
    lines += [f"{e['version']:>3} {'yes' if e['is_deleted'] else 'no':<7} "
              f"{e['memory_type']:<10} {e['updated_by'] or '-':<24} {e['updated_at']:<26} "
              f"{preview(e['value'], 50)}" for e in versions]
    emit(args, versions, "\n".join(lines))
    return 0


async def cmd_delete(args: argparse.Namespace) -> int:
    async with open_existing(args.path) as db:
        deleted = await _writes(db, args).delete_memory(
            args.namespace, args.key, task_id=args.task, deleted_by=args.by,
            elevated=args.elevated)
    if not deleted:
        raise NotFoundError(f"Memory not found: {describe(args.namespace, args.key)} "
                            "(nothing live to delete)")
    emit(args, {"deleted": True, "namespace": args.namespace, "key": args.key},
         f"deleted {args.namespace} {args.key} (history kept; `memkit memory restore` "
         "undoes it)")
    return 0


async def cmd_restore(args: argparse.Namespace) -> int:
    async with open_existing(args.path) as db:
        version = await _writes(db, args).restore_memory(
            args.namespace, args.key, restored_by=args.by, elevated=args.elevated)
    emit(args, {"restored": True, "namespace": args.namespace, "key": args.key,
                "version": version},
         f"restored {args.namespace} {args.key} (latest version {version})")
    return 0


def _writes(db: Database, args: argparse.Namespace) -> MemoryService:
    """The memory service a write command uses: with the policy if asked for."""
    return MemoryService(db, policy=WritePolicy(enforce=args.write_policy))
