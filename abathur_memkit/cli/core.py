"""``memkit init``, ``memkit migrate``, ``memkit validate`` and ``memkit doctor``."""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import urllib.error
import urllib.request
from typing import Any

from ..database import Database, is_dsn
from ..engines.sqlite.driver import EXTENSIONS, load_extension, select_driver
from ..engines.sqlite.monitoring import wal_status
from ..transfer import describe_target
from . import (
    add_json_flag,
    add_output_flags,
    emit,
    emit_rows,
    example,
    raise_missing,
    refuse_dsn,
)

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("init", help="create a database (or bring a memkit one up to date)",
                              **example("memkit init agents.db",
                                        "memkit init postgresql://memkit@db.internal/agents"))
    p.add_argument("path", metavar="DB", help="database file or postgresql:// DSN")
    p.add_argument("--seed", action="store_true", help="also add the initial memories")
    add_json_flag(p)
    p.set_defaults(handler=cmd_init)

    p = subparsers.add_parser("migrate", help="upgrade an older memkit or Abathur database",
                              **example("memkit migrate old.db"))
    p.add_argument("path", metavar="DB", help="database file or postgresql:// DSN")
    add_json_flag(p)
    p.set_defaults(handler=cmd_migrate)

    p = subparsers.add_parser("validate", help="run the seeds' health checks (exit 1 if one fails)",
                              **example("memkit validate agents.db",
                                        "memkit validate agents.db --csv > checks.csv",
                                        "memkit validate postgresql://memkit@db.internal/agents"))
    p.add_argument("path", metavar="DB", help="database file or postgresql:// DSN")
    add_output_flags(p)
    p.set_defaults(handler=cmd_validate)

    p = subparsers.add_parser("doctor", help="SQLite driver, extensions, Ollama",
                              **example("memkit doctor --json", "memkit doctor agents.db"))
    p.add_argument("path", nargs="?", metavar="DB",
                   help="also a database file's WAL size and readers")
    add_json_flag(p)
    p.set_defaults(handler=cmd_doctor)


async def cmd_init(args: argparse.Namespace) -> int:
    if not is_dsn(args.path) and os.path.exists(args.path):
        # An existing file: only a memkit database (or an empty file) is taken.
        _refuse_unless(args.path, ("current", "outdated", "empty"))
    return await _migrate(args)


async def cmd_migrate(args: argparse.Namespace) -> int:
    if not is_dsn(args.path):
        if not os.path.exists(args.path):
            raise_missing(args.path)
        _refuse_unless(args.path, ("current", "outdated", "legacy"))
    return await _migrate(args)


def _refuse_unless(path: str, kinds: tuple[str, ...]) -> None:
    from ..engines.sqlite.files import describe, inspect
    from ..errors import DatabaseFileError

    kind, version, tables = inspect(path)
    if kind not in kinds:
        raise DatabaseFileError(describe(path, kind, version, tables) or path)


async def _migrate(args: argparse.Namespace) -> int:
    db = Database(args.path)
    try:
        applied = await db.initialize()
        report: dict[str, Any] = {
            "path": describe_target(db.path), "applied": applied,
            "schema_version": await db.schema_version(),
        }
        if getattr(args, "seed", False):  # init --seed; migrate has no such flag
            from .seed import seed_report

            report["seed"] = await seed_report(db)
    finally:
        await db.close()
    text = _init_text(report)
    if "seed" in report:
        from .seed import seed_text

        text += "\n" + seed_text(db.path, report["seed"])
    emit(args, report, text)
    return 0


def _init_text(report: dict[str, Any]) -> str:
    versions = report["applied"]
    done = f"applied migrations {versions}" if versions else "already up to date"
    return f"{report['path']}: schema version {report['schema_version']} ({done})"


async def cmd_validate(args: argparse.Namespace) -> int:
    if not is_dsn(args.path) and not os.path.exists(args.path):
        raise_missing(args.path)
    async with Database(args.path, read_only=True) as db:
        report = await db.validate()
    lines = [f"{_verdict(c)}  {c['name']:<42} {c['detail']}" for c in report["checks"]]
    passed = sum(c["passed"] for c in report["checks"])
    lines.append(f"{passed}/{len(report['checks'])} checks passed")
    emit_rows(args, report["checks"], ("name", "passed", "detail"), document=report,
              text="\n".join(lines))
    return 0 if report["ok"] else 1


def _verdict(check: dict[str, Any]) -> str:
    return "PASS" if check["passed"] else "WARN" if check.get("warning") else "FAIL"


def _ollama_status() -> dict[str, Any]:
    host = os.environ.get("OLLAMA_HOST", "http://127.0.0.1:11434")
    if "://" not in host:
        host = f"http://{host}"
    try:
        with urllib.request.urlopen(f"{host}/api/version", timeout=1.0) as response:
            return {"host": host, "reachable": True, "detail": response.read().decode()[:200]}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return {"host": host, "reachable": False, "detail": str(exc)}


async def cmd_doctor(args: argparse.Namespace) -> int:
    driver = select_driver()
    conn = driver.connect(":memory:")
    try:
        extensions: dict[str, dict[str, Any]] = {}
        for name in EXTENSIONS:
            try:
                extensions[name] = {"loads": True, "version": load_extension(conn, name)}
            except Exception as exc:
                extensions[name] = {"loads": False, "detail": str(exc)}
        options = {r[0] for r in conn.execute("PRAGMA compile_options").fetchall()}
    finally:
        conn.close()
    stdlib = sqlite3.connect(":memory:")
    stdlib_loads = hasattr(stdlib, "enable_load_extension")
    stdlib.close()
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "driver": driver.name,
        "driver_sqlite_version": driver.sqlite_version,
        "stdlib_sqlite_version": sqlite3.sqlite_version,
        "stdlib_can_load_extensions": stdlib_loads,
        "extensions": extensions,
        "fts5": "ENABLE_FTS5" in options,
        "dbstat": "ENABLE_DBSTAT_VTAB" in options,
        "ollama": _ollama_status(),
    }
    lines = [
        f"python          {report['python']}",
        f"sqlite driver   {driver.name} (SQLite {driver.sqlite_version})",
        f"stdlib sqlite3  SQLite {sqlite3.sqlite_version}, "
        f"extension loading {'yes' if stdlib_loads else 'no'}",
    ]
    for name, info in extensions.items():
        state = f"loads (v{info['version'].lstrip('v')})" if info["loads"] else info["detail"]
        lines.append(f"extension {name:<5} {state}")
    lines.append(f"fts5            {'yes' if report['fts5'] else 'no'}")
    lines.append(f"dbstat          {'yes' if report['dbstat'] else 'no'}")
    ollama = report["ollama"]
    lines.append(f"ollama          {'reachable' if ollama['reachable'] else 'not reachable'}"
                 f" at {ollama['host']}")
    if args.path is not None:
        refuse_dsn(args.path, "doctor DB", "the WAL it reports on is SQLite's (memkit doctor "
                   "without DB checks this machine; memkit validate DSN checks the database)")
        report["wal"], text = wal_report(args.path)
        lines.append(text)
    emit(args, report, "\n".join(lines))
    return 0


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
