"""``Database.validate()``: the seeds' health checks, as data.

Each check is ``{"name", "passed", "detail"}``; the report is ``{"ok", "checks"}``
and JSON-serializable, so ``memkit validate --json`` prints it as is.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import TYPE_CHECKING, Any

from . import files, schema
from .database import PRAGMAS

if TYPE_CHECKING:
    from .database import Database

__all__ = ["run_checks"]

# The seeds' latency floors for the two timed lookups (milliseconds).
SESSION_LOOKUP_MS = 10.0
MEMORY_LOOKUP_MS = 50.0
_ROUNDS = 20

# Bad JSON must be rejected by these columns' CHECK constraints.
_JSON_PROBES = (
    ("sessions.state", "INSERT INTO sessions (id, app_name, user_id, state) "
     "VALUES ('__memkit_probe__', 'a', 'u', ?)"),
    ("session_events.event", "INSERT INTO session_events (session_id, seq, event) "
     "VALUES ('__memkit_probe__', 1, ?)"),
    ("memory_entries.value", "INSERT INTO memory_entries (namespace, key, value, memory_type) "
     "VALUES ('__memkit_probe__', 'k', ?, 'semantic')"),
)


def _check(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "detail": detail}


def _json_probes(scratch: Any, ddl: dict[str, str]) -> list[tuple[str, bool, str]]:
    """Probe the file's own table definitions, copied into ``scratch`` (in memory).

    Validation reads only: the probe rows are never written to the file.
    """
    for table in ("sessions", "session_events", "memory_entries"):
        if table in ddl:
            scratch.execute(ddl[table])
    if "sessions" in ddl:
        scratch.execute(
            "INSERT INTO sessions (id, app_name, user_id) VALUES ('__memkit_probe__', 'a', 'u')")
    results = []
    for column, sql in _JSON_PROBES:
        if column.split(".")[0] not in ddl:
            results.append((column, False, "table missing"))
            continue
        if column == "sessions.state":
            sql = sql.replace("'__memkit_probe__'", "'__memkit_probe_2__'")
        try:
            scratch.execute(sql, ("{not json",))
            results.append((column, False, "accepted '{not json'"))
        except Exception as exc:  # the driver's IntegrityError
            rejected = "CHECK constraint failed" in str(exc)
            results.append((column, rejected, f"rejected: {exc}"))
    return results


async def _probe_json(db: Database) -> list[tuple[str, bool, str]]:
    rows = await db.fetchall("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
    ddl = {r["name"]: r["sql"] for r in rows}

    def probe() -> list[tuple[str, bool, str]]:
        scratch = db.driver.connect(":memory:")
        try:
            return _json_probes(scratch, ddl)
        finally:
            scratch.close()

    return await asyncio.to_thread(probe)


def _lookup_detail(ms: float, floor: float) -> str:
    return f"median {ms:.3f} ms over {_ROUNDS} lookups (floor {floor} ms)"


async def _median_ms(db: Database, sql: str, params: tuple[Any, ...]) -> float:
    await db.fetchone(sql, params)  # warm-up
    samples = []
    for _ in range(_ROUNDS):
        start = time.perf_counter()
        await db.fetchone(sql, params)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


async def run_checks(db: Database) -> dict[str, Any]:
    checks: list[dict[str, Any]] = []

    pragmas = await db.pragmas()
    for name, expected in PRAGMAS.items():
        if name == "journal_mode" and db.in_memory:
            expected = "memory"
        actual = pragmas[name]
        if name == "journal_mode" and db.read_only:
            # An immutable connection (read-only location) reports "delete"; the header knows.
            actual = files.journal_mode(db.path)
        checks.append(_check(f"pragma:{name}", str(actual).lower() == str(expected),
                             f"{name}={actual} (expected {expected})"))

    integrity = await db.integrity_check()
    checks.append(_check("integrity_check", integrity == ["ok"], "; ".join(integrity[:5])))

    violations = await db.validate_foreign_keys()
    checks.append(_check("foreign_key_check", not violations,
                         f"{len(violations)} violations"))

    version = await db.schema_version()
    never = "; not a memkit database (never initialised)" if version == 0 else ""
    checks.append(_check("schema_version", version == schema.schema_version(),
                         f"user_version={version} (expected {schema.schema_version()}){never}"))

    rows = await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    tables = {r["name"] for r in rows}
    for table in schema.TABLES:
        checks.append(_check(f"table:{table}", table in tables,
                             "exists" if table in tables else "missing"))

    usage = await db.get_index_usage()
    expected_indexes = schema.named_indexes()
    present = {index["name"] for index in usage["indexes"]}
    missing = [i for i in expected_indexes if i not in present]
    checks.append(_check(
        "index_count", not missing,
        f"{len(expected_indexes) - len(missing)}/{len(expected_indexes)} named indexes"
        + (f"; missing: {', '.join(missing)}" if missing else ""),
    ))

    for column, passed, detail in await _probe_json(db):
        checks.append(_check(f"json_rejects_invalid:{column}", passed, detail))

    if "sessions" in tables:
        session = await db.fetchone("SELECT id FROM sessions LIMIT 1")
        session_id = session["id"] if session else "__memkit_probe__"
        ms = await _median_ms(db, "SELECT * FROM sessions WHERE id = ?", (session_id,))
        checks.append(_check("lookup:session_by_id", ms < SESSION_LOOKUP_MS,
                             _lookup_detail(ms, SESSION_LOOKUP_MS)))
    else:
        checks.append(_check("lookup:session_by_id", False, "sessions table missing"))

    if "memory_entries" in tables:
        memory = await db.fetchone("SELECT namespace, key FROM memory_entries LIMIT 1")
        ns_key = (memory["namespace"], memory["key"]) if memory else ("__memkit_probe__", "k")
        ms = await _median_ms(
            db,
            "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? AND is_deleted = 0 "
            "ORDER BY version DESC LIMIT 1",
            ns_key,
        )
        checks.append(_check("lookup:memory_by_namespace_key", ms < MEMORY_LOOKUP_MS,
                             _lookup_detail(ms, MEMORY_LOOKUP_MS)))
    else:
        checks.append(_check("lookup:memory_by_namespace_key", False,
                             "memory_entries table missing"))

    return {"ok": all(c["passed"] for c in checks), "path": db.path,
            "driver": db.driver.name, "sqlite_version": db.driver.sqlite_version,
            "checks": checks}
