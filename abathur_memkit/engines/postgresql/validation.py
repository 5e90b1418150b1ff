"""``Database.validate()`` on PostgreSQL: the seeds' checks in PostgreSQL's terms.

The report has the SQLite report's shape (``{"ok", "checks"}``, each check
``{"name", "passed", "detail"}``) and its names where a check means the same:
``integrity_check``, ``schema_version``, ``table:*``, ``index_count``,
``lookup:*`` and one ``explain:<index>`` per sample query. PRAGMAs and the WAL
have no counterpart here. What PostgreSQL has instead:

- ``extension:vector``: pgvector is installed;
- ``constraints``: the foreign keys, CHECKs and UNIQUEs of the migrations are
  there, all validated (``integrity_check`` also reports one added NOT VALID);
- ``indexes_valid``: no index left invalid by a failed ``CREATE INDEX CONCURRENTLY``;
- ``jsonb:<table.column>``: the JSON columns are ``jsonb``, which rejects text
  that is not JSON (SQLite needs a CHECK per column for that).

Each ``explain:`` check asks the planner with sequential scans discouraged
(``enable_seqscan = off``, inside a read-only snapshot): on a small table a
sequential scan is cheaper and would be chosen whatever the indexes, so the
question answered is whether the index can serve the query. Nothing is written.
"""

from __future__ import annotations

import re
import statistics
import time
from functools import cache
from typing import TYPE_CHECKING, Any

from ..interface import Connection
from ..sqlite.validation import INDEX_SAMPLES, MEMORY_LOOKUP_MS, SESSION_LOOKUP_MS
from . import schema
from .engine import plan_rows

if TYPE_CHECKING:
    from .engine import PostgreSQLEngine

__all__ = ["JSON_COLUMNS", "run_checks", "uses_index"]

#: The columns that hold JSON, each a ``jsonb`` here.
JSON_COLUMNS = (
    ("sessions", "state"), ("session_events", "event"), ("memory_entries", "value"),
    ("tasks", "input_data"), ("tasks", "result_data"), ("checkpoints", "state"),
)

# SQLite's names for the indexes its tables get implicitly, as PostgreSQL names them.
_IMPLICIT = {
    "INTEGER PRIMARY KEY": "{table}_pkey",
    "sqlite_autoindex_state_1": "state_task_id_key_key",
    "sqlite_autoindex_session_events_1": "session_events_pkey",
}
_INDEX_RE = re.compile(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.I)
_ROUNDS = 20


@cache
def named_indexes() -> tuple[str, ...]:
    """The indexes the migrations create by name."""
    return tuple(dict.fromkeys(
        name for m in schema.migrations() for name in _INDEX_RE.findall(m.sql)))


@cache
def _expected_constraints() -> dict[str, int]:
    text = " ".join(m.sql for m in schema.migrations())
    return {"foreign keys": len(re.findall(r"\bREFERENCES\b", text)),
            "checks": len(re.findall(r"\bCHECK\s*\(", text))}


def _check(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "detail": detail}


def _names(table: str, index: str) -> list[str]:
    """The PostgreSQL names of ``index`` (``a|b``: either) on ``table``."""
    return [_IMPLICIT.get(n, n).format(table=table) for n in index.split("|")]


# A plan step as the engine's plan_rows spells it: the node, its index and table,
# then an optional " (Index Cond: ...)".
_STEP = re.compile(r"^(?P<node>Index Scan|Index Only Scan|Bitmap Index Scan|Seq Scan)"
                   r"(?: using (?P<index>\S+))? on (?P<name>\S+)(?: \(|$)")


def uses_index(plan: list[str], table: str, index: str) -> bool:
    """Whether ``plan`` reads ``table`` through ``index`` (or one of ``a|b``), no Seq Scan."""
    names = set(_names(table, index))
    steps = [m for m in map(_STEP.match, plan) if m]
    used = any((m["node"] == "Bitmap Index Scan" and m["name"] in names)
               or (m["index"] in names and m["name"] == table) for m in steps)
    return used and not any(m["node"] == "Seq Scan" and m["name"] == table for m in steps)


def _catalog(conn: Connection) -> dict[str, Any]:
    """What the checks read from the catalog, in one snapshot."""
    here = "current_schema()::regnamespace"
    return {
        "server": conn.execute("SHOW server_version").fetchone()[0],
        "vector": conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone(),
        "tables": {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")},
        "indexes": {r[0]: bool(r[1]) for r in conn.execute(
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c "
            f"ON c.oid = i.indexrelid WHERE c.relnamespace = {here}")},
        "constraints": [(r[0], bool(r[1])) for r in conn.execute(
            f"SELECT contype, convalidated FROM pg_constraint WHERE connamespace = {here}")],
        "json_types": {(r[0], r[1]): r[2] for r in conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema()")},
        "version": schema.current_version(conn),
    }


def _structure_checks(found: dict[str, Any]) -> list[dict[str, Any]]:
    checks = [_check("extension:vector", found["vector"] is not None,
                     f"pgvector {found['vector'][0]}" if found["vector"] else
                     "pgvector is not installed (CREATE EXTENSION vector)")]
    version = found["version"]
    checks.append(_check("schema_version", version == schema.schema_version(),
                         f"memkit_schema={version} (expected {schema.schema_version()})"))
    for table in schema.tables():
        present = table in found["tables"]
        checks.append(_check(f"table:{table}", present, "exists" if present else "missing"))
    expected = named_indexes()
    missing = [i for i in expected if i not in found["indexes"]]
    checks.append(_check(
        "index_count", not missing,
        f"{len(expected) - len(missing)}/{len(expected)} named indexes"
        + (f"; missing: {', '.join(missing)}" if missing else "")))
    invalid = sorted(name for name, valid in found["indexes"].items() if not valid)
    checks.append(_check("indexes_valid", not invalid,
                         f"invalid: {', '.join(invalid)} (REINDEX them)" if invalid
                         else f"{len(found['indexes'])} indexes, all valid"))
    checks.append(_constraints_check(found["constraints"]))
    for table, column in JSON_COLUMNS:
        kind = found["json_types"].get((table, column))
        checks.append(_check(f"jsonb:{table}.{column}", kind == "jsonb",
                             f"type {kind or 'missing'} (expected jsonb)"))
    return checks


def _constraints_check(constraints: list[tuple[str, bool]]) -> dict[str, Any]:
    counts = {"foreign keys": sum(kind == "f" for kind, _ in constraints),
              "checks": sum(kind == "c" for kind, _ in constraints)}
    expected = _expected_constraints()
    short = [f"{kind} {counts[kind]}/{want}" for kind, want in expected.items()
             if counts[kind] < want]
    unvalidated = sum(not valid for _, valid in constraints)
    detail = ", ".join(f"{counts[k]} {k}" for k in counts) + \
        f", {sum(kind == 'u' for kind, _ in constraints)} uniques"
    if short:
        detail += f"; missing: {', '.join(short)}"
    if unvalidated:
        detail += f"; {unvalidated} not validated"
    return _check("constraints", not short and not unvalidated, detail)


def _explain(conn: Connection) -> list[dict[str, Any]]:
    conn.execute("SET LOCAL enable_seqscan = off")
    checks = []
    for table, index, sql, params in INDEX_SAMPLES:
        name = f"explain:{_names(table, index)[0]}"
        conn.execute("SAVEPOINT sample")
        try:
            plan = [detail for _, _, detail in plan_rows(conn, sql, params)]
        except Exception as exc:  # a damaged schema: the table or a column is missing
            conn.execute("ROLLBACK TO SAVEPOINT sample")
            checks.append({**_check(name, False, str(exc).splitlines()[0]), "sql": sql})
            continue
        checks.append({**_check(name, uses_index(plan, table, index), " | ".join(plan)),
                       "sql": sql})
    return checks


async def _median_ms(engine: PostgreSQLEngine, sql: str, params: tuple[Any, ...]) -> float:
    def lookup(conn: Connection) -> Any:
        return conn.execute(sql, params).fetchone()

    await engine.read(lookup)  # warm-up
    samples = []
    for _ in range(_ROUNDS):
        start = time.perf_counter()
        await engine.read(lookup)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


async def _lookups(engine: PostgreSQLEngine, tables: set[str]) -> list[dict[str, Any]]:
    checks = []
    if "sessions" in tables:
        row = await engine.read(lambda c: c.execute("SELECT id FROM sessions LIMIT 1").fetchone())
        ms = await _median_ms(engine, "SELECT * FROM sessions WHERE id = ?",
                              (row[0] if row else "__memkit_probe__",))
        checks.append(_check("lookup:session_by_id", ms < SESSION_LOOKUP_MS,
                             f"median {ms:.3f} ms over {_ROUNDS} lookups "
                             f"(floor {SESSION_LOOKUP_MS} ms)"))
    else:
        checks.append(_check("lookup:session_by_id", False, "sessions table missing"))
    if "memory_entries" in tables:
        row = await engine.read(lambda c: c.execute(
            "SELECT namespace, key FROM memory_entries LIMIT 1").fetchone())
        ms = await _median_ms(
            engine, "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? "
            "AND is_deleted = 0 ORDER BY version DESC LIMIT 1",
            (row[0], row[1]) if row else ("__memkit_probe__", "k"))
        checks.append(_check("lookup:memory_by_namespace_key", ms < MEMORY_LOOKUP_MS,
                             f"median {ms:.3f} ms over {_ROUNDS} lookups "
                             f"(floor {MEMORY_LOOKUP_MS} ms)"))
    else:
        checks.append(_check("lookup:memory_by_namespace_key", False,
                             "memory_entries table missing"))
    return checks


async def run_checks(engine: PostgreSQLEngine) -> dict[str, Any]:
    """The checks as a JSON-serializable report: ``{"ok", "path", "engine", "checks"}``."""
    found = await engine.read(_catalog, snapshot=True)
    integrity = await engine.integrity_check()
    checks = [_check("integrity_check", integrity == ["ok"], "; ".join(integrity[:5]))]
    checks += _structure_checks(found)
    checks += await _lookups(engine, found["tables"])
    checks += await engine.read(_explain, snapshot=True)
    return {"ok": all(c["passed"] for c in checks), "path": engine._where,  # no password
            "engine": "postgresql", "server_version": found["server"], "checks": checks}
