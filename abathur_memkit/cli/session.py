"""``memkit session list|show``: sessions, their state and their latest events."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import NotFoundError
from ..sessions import STATUSES
from . import add_output_flags, emit_rows, example
from .admin import open_existing
from .memory import preview

__all__ = ["register"]


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("session", help="list and show sessions",
                                  **example("memkit session list agents.db --status active"))
    commands = group.add_subparsers(dest="session_command", metavar="ACTION", required=True)

    p = commands.add_parser("list", help="sessions, newest first (a page at a time)",
                            **example("memkit session list agents.db --status active --limit 3",
                                      "memkit session list agents.db --user u002 --nl"))
    p.add_argument("path", metavar="DB", help="database file or postgresql:// DSN")
    p.add_argument("--project")
    p.add_argument("--app")
    p.add_argument("--user")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--cursor", help="the next_cursor a previous page printed")
    add_output_flags(p)
    p.set_defaults(handler=cmd_list)

    p = commands.add_parser("show", help="one session: status, state and its last events",
                            **example("memkit session show agents.db sess-1e7c82f9e0be --events 3",
                                      "memkit session show agents.db sess-1e7c82f9e0be --nl"))
    p.add_argument("path", metavar="DB", help="database file or postgresql:// DSN")
    p.add_argument("session_id")
    p.add_argument("--events", type=int, default=10,
                   help="how many of the latest events to show (default 10; -1: all)")
    add_output_flags(p)
    p.set_defaults(handler=cmd_show)


async def cmd_list(args: argparse.Namespace) -> int:
    async with open_existing(args.path) as db:
        page = await db.sessions.list_sessions(args.project, args.status, args.user,
                                               args.limit, args.cursor, app_name=args.app)
    more = f"; next page: --cursor {page.next_cursor}" if page.next_cursor else ""
    emit_rows(args, page, ("id", "status", "user_id", "project_id", "created_at",
                           "last_update_time"),
              document={"sessions": list(page), "next_cursor": page.next_cursor},
              footer=f"{len(page)} session(s){more}")
    return 0


async def cmd_show(args: argparse.Namespace) -> int:
    async with open_existing(args.path) as db:
        session = await db.sessions.get_session(args.session_id)
    if session is None:
        raise NotFoundError(f"Session {args.session_id} not found")
    events = session["events"]
    count = len(events)
    shown = events if args.events < 0 else events[max(count - args.events, 0):]
    first_seq = count - len(shown) + 1
    data = {**session, "event_count": count, "events": shown}
    lines = [
        f"session {session['id']}: {session['status']}",
        f"  app {session['app_name']}, user {session['user_id']}, "
        f"project {session['project_id'] or '-'}",
        f"  created {session['created_at']}, last update {session['last_update_time']}"
        + (f", terminated {session['terminated_at']}" if session["terminated_at"] else "")
        + (f", archived {session['archived_at']}" if session["archived_at"] else ""),
        f"  state {json.dumps(session['state'], ensure_ascii=False)}",
        f"  {count} event(s)" + (f", the last {len(shown)}:" if shown else ""),
    ]
    lines += [f"  #{first_seq + i:<5} {preview(event, 90)}" for i, event in enumerate(shown)]
    rows = [{"seq": first_seq + i, "event": event} for i, event in enumerate(shown)]
    emit_rows(args, rows, ("seq", "event"), document=data, text="\n".join(lines))
    return 0
