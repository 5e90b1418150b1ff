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
from . import add_json_flag, add_output_flags, emit, emit_rows, example
from .admin import open_existing

__all__ = ["preview", "register"]


def register(subparsers: Any) -> None:
    group = subparsers.add_parser(
        "memory", help="read and write memories: get, put, list, history, delete, restore",
        **example("memkit memory list agents.db user:alice --table --fmt github"))
    commands = group.add_subparsers(dest="memory_command", metavar="ACTION", required=True)

    def writes(p: argparse.ArgumentParser) -> None:
        p.add_argument("--by", default="cli", help="the writer recorded (default: cli)")
        p.add_argument("--write-policy", action="store_true",
                       help="enforce the write policy for --by (off by default)")
        p.add_argument("--elevated", action="store_true",
                       help="write where the write policy would refuse --by")

    # Output flags go last, after each command's own options.
    outputs: list[tuple[argparse.ArgumentParser, Any]] = []

    def command(name: str, help: str, handler: Any, *examples: str, key: bool = True,
                rows: bool = False) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = commands.add_parser(name, help=help, **example(*examples))
        p.add_argument("path", metavar="DB", help="database file or postgresql:// DSN")
        if key:
            p.add_argument("namespace", help="scope:id[:more], e.g. user:alice:preferences")
            p.add_argument("key")
        outputs.append((p, add_output_flags if rows else add_json_flag))
        p.set_defaults(handler=handler)
        return p

    p = command("get", "the latest live version of a key (or --version N)", cmd_get,
                "memkit memory get agents.db user:alice:preferences theme --version 1",
                rows=True)
    p.add_argument("--version", type=int, help="that version, live or deleted")

    p = command("put", "create a key, or add a version to it", cmd_put,
                "memkit memory put agents.db user:alice:preferences theme '{\"mode\": \"dark\"}'",
                "memkit memory put agents.db user:alice:notes todo 'buy milk' --string")
    p.add_argument("value", help="a JSON value (or any text with --string)")
    p.add_argument("--string", action="store_true", help="store VALUE as a JSON string")
    p.add_argument("--type", choices=MEMORY_TYPES, dest="memory_type",
                   help="memory type (new keys: default semantic; versions keep theirs)")
    p.add_argument("--metadata", help="a JSON object")
    writes(p)
    p.add_argument("--task", help="task id recorded in the audit row")

    p = command("list", "the latest live version of each key under a prefix", cmd_list,
                "memkit memory list agents.db user:alice --type semantic --limit 20",
                "memkit memory list agents.db user: --namespaces --nl", key=False, rows=True)
    p.add_argument("prefix", nargs="?", default="", metavar="PREFIX",
                   help="segment-aware namespace prefix (default: everything)")
    p.add_argument("--type", choices=MEMORY_TYPES, dest="memory_type",
                   help="only keys of this memory type")
    p.add_argument("--limit", type=int, default=50, help="at most this many keys (default 50)")
    p.add_argument("--namespaces", action="store_true",
                   help="list the namespaces under the prefix instead")

    command("history", "every version of a key, newest first", cmd_history,
            "memkit memory history agents.db user:alice:preferences theme --csv", rows=True)

    p = command("delete", "soft-delete a key (history kept)", cmd_delete,
                "memkit memory delete agents.db user:alice:preferences theme --by agent:a1")
    writes(p)
    p.add_argument("--task", help="task id recorded in the audit row")

    p = command("restore", "undo a soft delete", cmd_restore,
                "memkit memory restore agents.db user:alice:preferences theme")
    writes(p)
    for p, add_flags in outputs:
        add_flags(p)


# What a table shows of one version of a key.
_VERSION_COLUMNS = ("version", "is_deleted", "memory_type", "updated_by", "updated_at", "value")


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
    emit_rows(args, [entry], ("namespace", "key", *_VERSION_COLUMNS), document=entry,
              text=f"{_label(entry)}\n{json.dumps(entry['value'], indent=2)}")
    return 0


async def cmd_put(args: argparse.Namespace) -> int:
    value = args.value if args.string else _parse_json(args.value, "value")
    metadata = None if args.metadata is None else _parse_json(args.metadata, "metadata")
    async with open_existing(args.path, write=True) as db:
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
            emit_rows(args, [{"namespace": n} for n in names], ("namespace",), document=names,
                      footer=f"{len(names)} namespace(s)")
            return 0
        entries = await db.memory.search_memories(args.prefix, args.memory_type, args.limit)
    limited = " (--limit reached)" if len(entries) == args.limit else ""
    emit_rows(args, entries, ("namespace", "key", "version", "memory_type", "updated_at",
                              "value"), footer=f"{len(entries)} key(s){limited}")
    return 0


async def cmd_history(args: argparse.Namespace) -> int:
    async with open_existing(args.path) as db:
        versions = await db.memory.get_memory_history(args.namespace, args.key)
    if not versions:
        raise NotFoundError(f"Memory not found: {describe(args.namespace, args.key)}")
    emit_rows(args, versions, _VERSION_COLUMNS)
    return 0


async def cmd_delete(args: argparse.Namespace) -> int:
    async with open_existing(args.path, write=True) as db:
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
    async with open_existing(args.path, write=True) as db:
        version = await _writes(db, args).restore_memory(
            args.namespace, args.key, restored_by=args.by, elevated=args.elevated)
    emit(args, {"restored": True, "namespace": args.namespace, "key": args.key,
                "version": version},
         f"restored {args.namespace} {args.key} (latest version {version})")
    return 0


def _writes(db: Database, args: argparse.Namespace) -> MemoryService:
    """The memory service a write command uses: with the policy if asked for."""
    return MemoryService(db, policy=WritePolicy(enforce=args.write_policy))
