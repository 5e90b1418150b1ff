"""Compare a database before and after: proof that a failed call changed nothing."""

from __future__ import annotations

from typing import Any

from abathur_memkit import Database

_SQLITE_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
_SQLITE_SCHEMA = "SELECT type, name, sql FROM sqlite_master ORDER BY name"
# The schema's tables, and its tables, indexes and constraints by name and definition.
_PG_TABLES = ("SELECT table_name FROM information_schema.tables "
              "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' "
              "ORDER BY table_name")
_PG_SCHEMA = ("SELECT 'index', indexname, indexdef FROM pg_indexes "
              "WHERE schemaname = current_schema() UNION ALL "
              "SELECT 'constraint', conname, pg_get_constraintdef(oid) FROM pg_constraint "
              "WHERE connamespace = current_schema()::regnamespace ORDER BY 2, 3")


def _dump(conn: Any, tables_sql: str, schema_sql: str) -> list[Any]:
    tables = [r[0] for r in conn.execute(tables_sql)]
    out: list[Any] = [tuple(r) for r in conn.execute(schema_sql)]
    for table in tables:
        # Sorted: PostgreSQL returns rows in no fixed order.
        rows = sorted((tuple(r) for r in conn.execute(f'SELECT * FROM "{table}"')), key=repr)
        out.append((table, rows))
    return out


async def dump(database: Database) -> list[Any]:
    """Schema and every row of every table, read in one snapshot."""
    if database.dialect == "postgresql":
        return await database.read(lambda c: _dump(c, _PG_TABLES, _PG_SCHEMA), snapshot=True)
    return await database.read(lambda c: _dump(c, _SQLITE_TABLES, _SQLITE_SCHEMA), snapshot=True)
