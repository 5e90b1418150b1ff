"""The DDL in ``sql/postgresql/``, applied as forward-only migrations.

Each ``NNN_name.sql`` file is one migration, numbered as SQLite's in ``sql/``
up to 007 (008 and 009 change only what PostgreSQL has: the constraints the
seeds' unique indexes duplicated, and its head triggers), and ends by recording its number in
``memkit_schema`` (PostgreSQL has no ``PRAGMA user_version``). Pending files
are applied in one transaction under an advisory lock, so processes that start
together migrate once: the others wait for the lock, then find nothing left to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ...errors import SchemaError

__all__ = [
    "MIGRATION_LOCK",
    "apply_pending",
    "create_vector_table",
    "current_version",
    "drop_vector_table",
    "migrate",
    "migrations",
    "schema_version",
    "tables",
    "vector_table",
]

#: The advisory lock (``pg_advisory_xact_lock``) migrations run under.
MIGRATION_LOCK = 0x6D656D6B6974  # "memkit"

_FILE_RE = re.compile(r"^(\d{3})_[\w-]+\.sql$")
_TABLE_RE = re.compile(r"CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.I)
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def postgresql_dir() -> Path:
    """Where the .sql files are: inside the wheel, or the repo's ``sql/postgresql``."""
    packaged = Path(str(resources.files("abathur_memkit") / "sql" / "postgresql"))
    if packaged.is_dir():
        return packaged
    repo = Path(__file__).resolve().parents[3] / "sql" / "postgresql"
    if repo.is_dir():
        return repo
    raise SchemaError(f"PostgreSQL schema files not found (looked in {packaged} and {repo})")


@cache
def migrations() -> tuple[Migration, ...]:
    found = []
    for path in sorted(postgresql_dir().glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), path.stem, path.read_text("utf-8")))
    if not found:
        raise SchemaError(f"no migrations in {postgresql_dir()}")
    return tuple(found)


def schema_version() -> int:
    """The version a fully migrated database has."""
    return migrations()[-1].version


@cache
def tables() -> tuple[str, ...]:
    """Every table the migrations create."""
    return tuple(name for m in migrations() for name in _TABLE_RE.findall(m.sql))


def current_version(raw: Any) -> int:
    """The newest migration applied to the database of connection ``raw`` (0: none)."""
    row = raw.execute("SELECT to_regclass('memkit_schema') IS NOT NULL").fetchone()
    if not row[0]:
        return 0
    return int(raw.execute("SELECT coalesce(max(version), 0) FROM memkit_schema").fetchone()[0])


def migrate(raw: Any) -> list[int]:
    """Apply the pending migrations on psycopg connection ``raw`` (autocommit); their numbers."""
    raw.execute("BEGIN READ WRITE")
    try:
        applied = apply_pending(raw)
        raw.execute("COMMIT")
    except BaseException:
        raw.execute("ROLLBACK")
        raise
    return applied


def apply_pending(raw: Any) -> list[int]:
    """Apply the pending migrations inside the caller's transaction on ``raw``; their numbers.

    Takes the migration lock until that transaction ends (``memkit copy`` builds
    a whole database in one transaction: its schema too).
    """
    raw.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
    current = current_version(raw)
    if current > schema_version():
        raise SchemaError(
            f"the database is at schema version {current}, newer than this memkit's "
            f"{schema_version()}: upgrade abathur-memkit"
        )
    applied: list[int] = []
    for migration in migrations():
        if migration.version > current:
            _apply(raw, migration)
            applied.append(migration.version)
    return applied


def _apply(raw: Any, migration: Migration) -> None:
    try:
        raw.execute(migration.sql)
    except Exception as exc:
        raise SchemaError(f"migration {migration.name}.sql failed: {exc}") from exc
    if current_version(raw) != migration.version:
        raise SchemaError(
            f"{migration.name}.sql did not record version {migration.version} in memkit_schema"
        )


def vector_table(name: str) -> str:
    """The table that holds the vectors of vector index ``name`` ('chunks', 'memories')."""
    if not _NAME_RE.match(name):
        raise SchemaError(f"invalid vector index name: {name!r}")
    return f"{name}_vectors"


def create_vector_table(conn: Any, name: str, dimensions: int) -> str:
    """Create index ``name``'s pgvector table and its HNSW (cosine) index; the table's name.

    One table per index, made when the dimension is known (the embedder's
    first use), as the SQLite side makes its vec0 tables. Vectors are read by
    ``ORDER BY embedding <=> query LIMIT k``; ``SET hnsw.ef_search`` trades
    speed for recall.
    """
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
        raise SchemaError(f"invalid vector dimensions: {dimensions!r}")
    table = vector_table(name)
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {table} ("
        f"id bigint PRIMARY KEY, embedding vector({dimensions}) NOT NULL)"
    )
    conn.execute(
        f"CREATE INDEX IF NOT EXISTS {table}_hnsw ON {table} "
        "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
    )
    return table


def drop_vector_table(conn: Any, name: str) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {vector_table(name)}")
