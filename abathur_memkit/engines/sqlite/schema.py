"""The DDL in ``sql/``, applied as forward-only migrations.

Each ``sql/NNN_name.sql`` file is one migration and ends by setting
``PRAGMA user_version = NNN``; ``cat sql/*.sql | sqlite3 new.db`` builds the
same schema. The Python side only reads those files, never repeats them.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ...errors import SchemaError
from ..interface import Connection

__all__ = [
    "TABLES",
    "Migration",
    "classify",
    "migrate",
    "migrations",
    "named_indexes",
    "schema_version",
    "sql_dir",
    "statements",
]

#: The nine tables of the seeds, session_events (events as rows) and the shared
#: session states (app_states, user_states).
TABLES = (
    "sessions",
    "app_states",
    "user_states",
    "session_events",
    "memory_entries",
    "document_index",
    "tasks",
    "agents",
    "audit",
    "checkpoints",
    "state",
    "metrics",
)

#: The tables of the pre-memory Abathur schema that an upgrade may rebuild.
LEGACY_TABLES = ("tasks", "agents", "state", "audit", "metrics", "checkpoints")

# NOT NULL columns that older Abathur schemas lacked: how to fill them on upgrade.
_BACKFILL = {
    ("tasks", "last_updated_at"): "COALESCE(completed_at, started_at, submitted_at)",
}

# A migration that rebuilds tables says so; it runs with foreign keys off
# (dropping a parent table would fail its children's checks) and is checked
# as a whole before COMMIT instead.
_REBUILDS = "-- memkit: rebuilds tables"
# Named CHECKs on JSON columns: "CONSTRAINT "<table>.<column> is JSON" CHECK ...".
_JSON_CHECK_RE = re.compile(r"CHECK constraint failed: (\w+)\.(\w+) is JSON")

_FILE_RE = re.compile(r"^(\d{3})_[\w-]+\.sql$")
_INDEX_RE = re.compile(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.I)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def sql_dir() -> Path:
    """Where the .sql files are: inside the wheel, or the repo's ``sql/``."""
    packaged = resources.files("abathur_memkit") / "sql"
    if packaged.is_dir():
        return Path(str(packaged))
    repo = Path(__file__).resolve().parents[3] / "sql"
    if repo.is_dir():
        return repo
    raise SchemaError(f"schema files not found (looked in {packaged} and {repo})")


@cache
def migrations() -> tuple[Migration, ...]:
    found = []
    for path in sorted(sql_dir().glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), path.stem, path.read_text("utf-8")))
    if not found:
        raise SchemaError(f"no migrations in {sql_dir()}")
    return tuple(found)


def schema_version() -> int:
    """The version a fully migrated database has."""
    return migrations()[-1].version


@cache
def named_indexes() -> tuple[str, ...]:
    # A rebuilt table's indexes are created again by the migration that rebuilds it.
    return tuple(dict.fromkeys(name for m in migrations() for name in _INDEX_RE.findall(m.sql)))


def _is_blank(sql: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in sql.splitlines())


def statements(script: str) -> Iterator[str]:
    """Split a script into complete statements, as sqlite3's shell does."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if not _is_blank(buffer):
                yield buffer.strip()
            buffer = ""
    if not _is_blank(buffer):
        raise SchemaError(f"incomplete SQL statement at end of script: {buffer.strip()[:80]}")


def _user_version(conn: Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _existing_tables(conn: Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {row[0] for row in rows}


def _shape(conn: Connection, table: str) -> tuple[Any, ...]:
    """Columns and foreign keys: what differs between the old and new tables."""
    columns = tuple(tuple(r)[1:6] for r in conn.execute(f'PRAGMA table_info("{table}")'))
    fks = tuple(sorted(tuple(r)[2:7] for r in conn.execute(f'PRAGMA foreign_key_list("{table}")')))
    return columns, fks


def _columns(conn: Connection, table: str) -> list[str]:
    return [tuple(r)[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]


def migrate(conn: Connection, connect_memory: Any) -> list[int]:
    """Bring ``conn`` to the latest schema version; return the versions applied.

    ``connect_memory`` opens an in-memory connection of the same driver; it is
    used to build the reference schema when a pre-memory database is upgraded.
    Runs on the writer connection's thread, which nothing else uses meanwhile.
    """
    if _user_version(conn) >= schema_version():
        return []
    legacy = _existing_tables(conn) & set(LEGACY_TABLES)
    if _user_version(conn) == 0 and legacy:
        return _upgrade_legacy(conn, connect_memory, legacy)
    applied = []
    for migration in migrations():
        rebuilds = _REBUILDS in migration.sql
        if rebuilds:
            conn.execute("PRAGMA foreign_keys = OFF")
        try:
            if _apply(conn, migration, rebuilds):
                applied.append(migration.version)
        finally:
            if rebuilds:
                conn.execute("PRAGMA foreign_keys = ON")
    return applied


def _apply(conn: Connection, migration: Migration, rebuilds: bool) -> bool:
    """Apply one migration in one transaction; False if it was applied already."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read under the write lock: another process may have migrated.
        if _user_version(conn) >= migration.version:
            conn.execute("ROLLBACK")
            return False
        for statement in statements(migration.sql):
            conn.execute(statement)
        if _user_version(conn) != migration.version:
            raise SchemaError(
                f"{migration.name}.sql did not set PRAGMA user_version = {migration.version}"
            )
        if rebuilds:
            _check_foreign_keys(conn, f"migration {migration.name}")
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, SchemaError):
            raise
        raise SchemaError(
            f"migration {migration.name} failed: {exc}{_bad_json_row(conn, exc)}"
        ) from exc
    return True


def _check_foreign_keys(conn: Connection, what: str) -> None:
    violations = conn.execute("PRAGMA foreign_key_check").fetchall()
    if violations:
        raise SchemaError(
            f"{what} would leave {len(violations)} foreign key violations, e.g. "
            f"{tuple(violations[0])}; nothing was changed"
        )


def _bad_json_row(conn: Connection, exc: BaseException) -> str:
    """Which row broke a JSON check, for the error message ("" if none did)."""
    match = _JSON_CHECK_RE.search(str(exc))
    if match is None:
        return ""
    table, column = match.groups()
    keys = [r[1] for r in sorted(conn.execute(f'PRAGMA table_info("{table}")'),
                                 key=lambda r: r[5]) if r[5]] or ["rowid"]
    row = conn.execute(
        f'SELECT {", ".join(keys)} FROM "{table}" WHERE NOT json_valid("{column}") LIMIT 1'
    ).fetchone()
    if row is None:
        return ""
    where = ", ".join(f"{k}={v!r}" for k, v in zip(keys, tuple(row), strict=True))
    return (f" (table {table}, row {where}: {column} is not valid JSON; "
            "fix or delete that row and open the database again; nothing was changed)")


def _upgrade_legacy(conn: Connection, connect_memory: Any, legacy: set[str]) -> list[int]:
    """Rebuild the pre-memory tables into the current definitions, rows kept.

    SQLite cannot add a foreign key or drop NOT NULL in place (audit.task_id),
    so a table whose columns or foreign keys differ is renamed, recreated from
    the .sql files, refilled and dropped: the rebuild procedure of
    https://sqlite.org/lang_altertable.html, in one transaction.
    """
    reference = connect_memory()
    try:
        for migration in migrations():
            for statement in statements(migration.sql):
                reference.execute(statement)
        rebuild = sorted(t for t in legacy if _shape(conn, t) != _shape(reference, t))
        new_columns = {t: _columns(reference, t) for t in rebuild}
    finally:
        reference.close()

    # Foreign keys off for the rebuild (a dropped parent would fail its
    # children's checks); checked as a whole before COMMIT instead.
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("PRAGMA legacy_alter_table = ON")  # keep other tables' FKs on the name
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table in rebuild:
            conn.execute(f'ALTER TABLE "{table}" RENAME TO "_memkit_old_{table}"')
            indexes = conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                "AND sql IS NOT NULL",
                (f"_memkit_old_{table}",),
            ).fetchall()
            for (index,) in indexes:
                conn.execute(f'DROP INDEX "{index}"')
        for migration in migrations():
            for statement in statements(migration.sql):
                conn.execute(statement)
        for table in rebuild:
            _copy_rows(conn, table, new_columns[table])
        for table in rebuild:
            conn.execute(f'DROP TABLE "_memkit_old_{table}"')
        _check_foreign_keys(conn, "upgrade")
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, SchemaError):
            raise
        raise SchemaError(
            f"upgrade of the pre-memory schema failed: {exc}{_bad_json_row(conn, exc)}"
        ) from exc
    finally:
        conn.execute("PRAGMA legacy_alter_table = OFF")
        conn.execute("PRAGMA foreign_keys = ON")
    return [m.version for m in migrations()]


def _copy_rows(conn: Connection, table: str, new_columns: list[str]) -> None:
    """Refill ``table`` from its renamed old copy, every row and every column.

    Columns the new schema lacks are added to it (never dropped); NOT NULL
    columns the old schema lacked are filled by ``_BACKFILL``.
    """
    old_table = f"_memkit_old_{table}"
    old_info = {tuple(r)[1]: tuple(r)[2] for r in conn.execute(f'PRAGMA table_info("{old_table}")')}
    for column, decltype in old_info.items():
        if column not in new_columns:
            conn.execute(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {decltype}')
    targets, sources = [], []
    for column in [*new_columns, *[c for c in old_info if c not in new_columns]]:
        if column in old_info:
            targets.append(f'"{column}"')
            sources.append(f'"{column}"')
        elif (table, column) in _BACKFILL:
            targets.append(f'"{column}"')
            sources.append(_BACKFILL[(table, column)])
    conn.execute(
        f'INSERT INTO "{table}" ({", ".join(targets)}) '
        f'SELECT {", ".join(sources)} FROM "{old_table}"'
    )


# Tables every memkit schema version has: together with user_version >= 1 they
# tell a memkit database from another application's SQLite file.
_MEMKIT_MARKERS = ("memory_entries", "session_events")

# Columns of the pre-memory Abathur tasks table (a foreign ``tasks`` lacks them).
_LEGACY_TASK_COLUMNS = {"prompt", "input_data", "submitted_at"}


def classify(conn: Connection) -> tuple[str, int, list[str]]:
    """What the file behind ``conn`` is, without changing it.

    Returns ``(kind, user_version, tables)``; kind is ``"current"``,
    ``"outdated"`` or ``"newer"`` (memkit databases), ``"legacy"`` (the
    pre-memory Abathur schema, which ``migrate`` upgrades), ``"empty"`` (no
    tables: never initialised) or ``"foreign"`` (another application's file).
    """
    version = _user_version(conn)
    tables = sorted(t for t in _existing_tables(conn) if not t.startswith("sqlite_"))
    if not tables:
        return "empty", version, tables
    if version >= 1 and all(t in tables for t in _MEMKIT_MARKERS):
        if version == schema_version():
            return "current", version, tables
        return ("outdated" if version < schema_version() else "newer"), version, tables
    legacy = (
        version == 0
        and set(tables) <= set(LEGACY_TABLES)
        and set(_columns(conn, "tasks") if "tasks" in tables else ()) >= _LEGACY_TASK_COLUMNS
    )
    return ("legacy" if legacy else "foreign"), version, tables
