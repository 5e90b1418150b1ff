"""PostgreSQL migrations that change an existing database: data, keys and indexes kept."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from abathur_memkit import Database
from abathur_memkit.errors import MemkitError

psycopg = pytest.importorskip("psycopg", reason="the PostgreSQL tests need the postgres extra")

from abathur_memkit.engines.postgresql import schema  # noqa: E402
from abathur_memkit.transfer import copy_database  # noqa: E402

# Rows written while the database is at version 7: two keys (one with two
# versions, one deleted), audit rows naming them, a user's own table whose
# foreign key points at memory_entries(id) too.
V7_ROWS = """
INSERT INTO memory_entries (id, namespace, key, value, memory_type, version, is_deleted,
                            created_by, created_at, updated_at) VALUES
    (1, 'user:a', 'k', '{"n": 1}', 'semantic', 1, 0, 'agent', '2026-01-01', '2026-01-01'),
    (2, 'user:a', 'k', '{"n": 2}', 'semantic', 2, 0, 'agent', '2026-01-02', '2026-01-02'),
    (3, 'user:a', 'gone', '"x"', 'episodic', 1, 1, 'agent', '2026-01-03', '2026-01-03');
SELECT setval('memory_entries_id_seq', 3);
INSERT INTO audit (timestamp, action_type, memory_operation_type, memory_namespace,
                   memory_entry_id)
    SELECT created_at, 'memory_create', 'create', namespace, id FROM memory_entries;
CREATE TABLE user_notes (note text, entry bigint REFERENCES memory_entries(id) ON DELETE CASCADE);
INSERT INTO user_notes VALUES ('about k', 2);
"""
TABLES = ("memory_entries", "audit", "memory_heads", "memory_namespaces", "user_notes")


def _at_version_7(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as raw:
        raw.execute("BEGIN")
        for migration in schema.migrations():
            if migration.version <= 7:
                raw.execute(migration.sql)
        raw.execute(V7_ROWS)
        raw.execute("COMMIT")


def _state(dsn: str) -> dict[str, Any]:
    """The keys of memory_entries, the foreign keys on it, and every row of TABLES."""
    with psycopg.connect(dsn) as conn:
        return {
            "indexes": conn.execute(
                "SELECT c.relname, i.indisprimary, i.indisunique FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE i.indrelid = 'memory_entries'::regclass "
                "AND pg_get_indexdef(i.indexrelid) LIKE '%(id)' ORDER BY 1"
            ).fetchall(),
            "pkey left": conn.execute("SELECT to_regclass('memory_entries_pkey')").fetchone()[0],
            "primary key": conn.execute(
                "SELECT conname, conindid::regclass::text FROM pg_constraint "
                "WHERE conrelid = 'memory_entries'::regclass AND contype = 'p'"
            ).fetchall(),
            "foreign keys": conn.execute(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), "
                "convalidated FROM pg_constraint WHERE confrelid = 'memory_entries'::regclass "
                "ORDER BY 1, 2"
            ).fetchall(),
            "rows": {
                table: conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
                for table in TABLES
                if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]
            },
        }


async def test_migration_8_makes_idx_memory_entries_pk_the_primary_key(pg_dsn: str) -> None:
    _at_version_7(pg_dsn)
    before = _state(pg_dsn)
    # Two unique indexes on id before: the constraint's and the seeds'.
    assert before["indexes"] == [
        ("idx_memory_entries_pk", False, True),
        ("memory_entries_pkey", True, True),
    ]
    assert before["primary key"] == [("memory_entries_pkey", "memory_entries_pkey")]
    fks = [
        (
            "audit",
            "audit_memory_entry_id_fkey",
            "FOREIGN KEY (memory_entry_id) REFERENCES memory_entries(id) ON DELETE SET NULL",
            True,
        ),
        (
            "user_notes",
            "user_notes_entry_fkey",
            "FOREIGN KEY (entry) REFERENCES memory_entries(id) ON DELETE CASCADE",
            True,
        ),
    ]
    assert before["foreign keys"] == fks

    async with Database(pg_dsn) as db:
        assert await db.schema_version() == schema.schema_version() == 10
        after = _state(pg_dsn)
        assert after["indexes"] == [("idx_memory_entries_pk", True, True)]
        assert before["pkey left"] is not None and after["pkey left"] is None
        assert after["primary key"] == [("idx_memory_entries_pk", "idx_memory_entries_pk")]
        assert after["foreign keys"] == fks  # both back, as they were, validated
        assert after["rows"] == before["rows"]

        report = await db.validate()
        checks = {c["name"]: c for c in report["checks"]}
        assert report["ok"], [c for c in report["checks"] if not c["passed"]]
        assert "idx_memory_entries_pk" in checks["explain:idx_memory_entries_pk"]["detail"]
        assert checks["constraints"]["detail"].startswith("11 foreign keys")  # with user_notes

        # The memory API on the migrated table: versions go on from the old ones.
        assert await db.memory.update_memory("user:a", "k", {"n": 3}, "agent") == 3
        history = await db.memory.get_memory_history("user:a", "k")
        assert [m["version"] for m in history] == [3, 2, 1]

    # The foreign keys still hold: a dangling id is refused, a delete follows them.
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(
                "INSERT INTO audit (timestamp, action_type, memory_entry_id) "
                "VALUES (now(), 'x', 999)"
            )
        with pytest.raises(psycopg.errors.UniqueViolation, match="idx_memory_entries_pk"):
            conn.execute(
                "INSERT INTO memory_entries (id, namespace, key, value, memory_type) "
                "VALUES (1, 'user:a', 'other', '1', 'semantic')"
            )
        conn.execute("DELETE FROM memory_entries WHERE id = 2")
        assert conn.execute(
            "SELECT memory_entry_id FROM audit WHERE memory_namespace = 'user:a' ORDER BY id"
        ).fetchall() == [(1,), (None,), (3,), (4,)]
        assert conn.execute("SELECT count(*) FROM user_notes").fetchone() == (0,)


async def test_migration_8_runs_in_one_transaction(pg_dsn: str) -> None:
    # Without the seeds' index the new key cannot be made, after the foreign
    # keys were dropped: the migration fails whole and leaves version 7 as it was.
    _at_version_7(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX idx_memory_entries_pk")
    before = _state(pg_dsn)
    assert len(before["foreign keys"]) == 2
    with pytest.raises(MemkitError, match=r"008_seed_key_indexes\.sql failed"):
        async with Database(pg_dsn):
            pass
    assert _state(pg_dsn) == before
    with psycopg.connect(pg_dsn) as conn:
        assert schema.current_version(conn) == 7


def _keys(dsn: str) -> dict[str, Any]:
    """Each unique index on the seeds' key columns, and the foreign keys on them."""
    with psycopg.connect(dsn) as conn:
        return {
            "indexes": conn.execute(
                "SELECT i.indrelid::regclass::text, c.relname, i.indisprimary FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indisunique AND "
                "i.indrelid IN ('sessions'::regclass, 'document_index'::regclass) "
                "AND pg_get_indexdef(i.indexrelid) ~ '\\((id|file_path)\\)$' ORDER BY 1, 2"
            ).fetchall(),
            "constraints": conn.execute(
                "SELECT conrelid::regclass::text, conname, contype::text, conindid::regclass::text "
                "FROM pg_constraint WHERE contype IN ('p', 'u') AND "
                "conrelid IN ('sessions'::regclass, 'document_index'::regclass) ORDER BY 1, 2"
            ).fetchall(),
            "foreign keys": conn.execute(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), "
                "convalidated FROM pg_constraint WHERE contype = 'f' AND "
                "confrelid IN ('sessions'::regclass, 'document_index'::regclass) ORDER BY 1, 2"
            ).fetchall(),
        }


async def test_migration_8_makes_the_seeds_session_and_document_indexes_the_keys(
    pg_dsn: str,
) -> None:
    _at_version_7(pg_dsn)
    before = _keys(pg_dsn)
    assert before["indexes"] == [
        ("document_index", "document_index_file_path_key", False),
        ("document_index", "document_index_pkey", True),
        ("document_index", "idx_document_file_path", False),
        ("document_index", "idx_document_index_pk", False),
        ("sessions", "idx_sessions_pk", False),
        ("sessions", "sessions_pkey", True),
    ]
    # session_events, tasks, agents, checkpoints on sessions; chunks on documents.
    assert len(before["foreign keys"]) == 5
    async with Database(pg_dsn) as db:
        after = _keys(pg_dsn)
        assert after["indexes"] == [
            ("document_index", "idx_document_file_path", False),
            ("document_index", "idx_document_index_pk", True),
            ("sessions", "idx_sessions_pk", True),
        ]
        assert after["constraints"] == [
            ("document_index", "idx_document_file_path", "u", "idx_document_file_path"),
            ("document_index", "idx_document_index_pk", "p", "idx_document_index_pk"),
            ("sessions", "idx_sessions_pk", "p", "idx_sessions_pk"),
        ]
        assert after["foreign keys"] == before["foreign keys"]
        report = await db.validate()
        assert report["ok"], [c for c in report["checks"] if not c["passed"]]
        # The keys still do their work: an upsert on file_path, a duplicate id
        # refused, a session's events deleted with it.
        await db.sessions.create_session("s1", "app", "u")
        await db.sessions.append_event("s1", {"author": "user"})
        with pytest.raises(MemkitError):
            await db.sessions.create_session("s1", "app", "u")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        sql = (
            "INSERT INTO document_index (file_path, title, content_hash) "
            "VALUES ('a.md', 'A', %s) ON CONFLICT (file_path) DO UPDATE "
            "SET content_hash = excluded.content_hash RETURNING id"
        )
        first = conn.execute(sql, ("h1",)).fetchone()
        assert conn.execute(sql, ("h2",)).fetchone() == first
        conn.execute("DELETE FROM sessions WHERE id = 's1'")
        assert conn.execute("SELECT count(*) FROM session_events").fetchone() == (0,)


async def test_a_migrated_database_copies_both_ways(
    tmp_path: Path, pg_dsn: str, pg_memkit_dsn: str
) -> None:
    _at_version_7(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE user_notes")  # not memkit's: the copy refuses it
    async with Database(pg_dsn) as db:
        await db.memory.add_memory("user:b", "new", [1, 2], "procedural", "agent")
    there = await copy_database(pg_dsn, tmp_path / "copy.db")
    back = await copy_database(tmp_path / "copy.db", pg_memkit_dsn)
    assert [(t.table, t.rows, t.checksum) for t in there.tables] == [
        (t.table, t.rows, t.checksum) for t in back.tables
    ]
    assert {t.table: t.rows for t in back.tables}["memory_entries"] == 4
    after = _state(pg_memkit_dsn)
    assert after["indexes"] == [("idx_memory_entries_pk", True, True)]
    assert after["pkey left"] is None
    assert after["rows"]["audit"] == _state(pg_dsn)["rows"]["audit"]


async def test_a_head_is_written_only_when_it_changes(pg_memkit_dsn: str) -> None:
    # Migration 009: each restored version looks the head up again; only the
    # first finds it missing and writes it. A row rewritten gets a new ctid.
    async with Database(pg_memkit_dsn) as db:
        for n in range(4):
            if n == 0:
                await db.memory.add_memory("user:h", "k", n, "semantic", "agent")
            else:
                await db.memory.update_memory("user:h", "k", n, "agent")
        await db.memory.add_memory("user:h", "other", 1, "semantic", "agent")
        await db.memory.delete_memory("user:h", "k", "agent")
        await db.memory.restore_memory("user:h", "k", "agent")
        assert (await db.memory.get_memory("user:h", "k"))["version"] == 4  # type: ignore[index]
    with psycopg.connect(pg_memkit_dsn, autocommit=True) as conn:

        def head() -> tuple[Any, ...]:
            return conn.execute(
                "SELECT ctid::text, xmin::text, entry_id, version, updated_at "
                "FROM memory_heads WHERE namespace = 'user:h' AND key = 'k'"
            ).fetchone()

        def updates() -> int:
            return conn.execute(
                "SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'memory_heads'"
            ).fetchone()[0]

        restored = head()
        conn.execute("BEGIN")
        # The same restore, four versions at once: one head, not rewritten.
        conn.execute(
            "UPDATE memory_entries SET is_deleted = 1 WHERE namespace = 'user:h' AND key = 'k'"
        )
        assert head() is None
        conn.execute(
            "UPDATE memory_entries SET is_deleted = 0 WHERE namespace = 'user:h' AND key = 'k'"
        )
        assert updates() == 0
        conn.execute("COMMIT")
        again = head()
        assert again[2:] == restored[2:]
        # Looking an unchanged head up again leaves the row as it is.
        conn.execute("SELECT memkit_refresh_memory_head('user:h', 'k')")
        assert head() == again
        # A change still moves it; the last live version gone removes it, and
        # the namespace stays while another key lives there.
        conn.execute(
            "UPDATE memory_entries SET is_deleted = 1 WHERE namespace = 'user:h' AND key = 'k' "
            "AND version = 4"
        )
        assert head()[3] == 3
        conn.execute("UPDATE memory_entries SET is_deleted = 1 WHERE key = 'k'")
        assert head() is None
        assert conn.execute("SELECT namespace FROM memory_namespaces").fetchall() == [("user:h",)]


async def test_migration_10_writes_take_the_services_locks(pg_memkit_dsn: str) -> None:
    # add_memory's function locks as the services' PG_LOCK_KEY does: a batch
    # holding the memory writers' lock exclusively (PG_LOCK_ALL) holds it back.
    from abathur_memkit.memory import PG_LOCK_ALL

    async with Database(pg_memkit_dsn) as db:
        with psycopg.connect(pg_memkit_dsn, autocommit=True) as other:
            other.execute("BEGIN")
            other.execute(PG_LOCK_ALL)
            add = asyncio.ensure_future(db.memory.add_memory("user:a", "k", 1, "semantic", "a"))
            await asyncio.sleep(0.3)
            assert not add.done()
            other.execute("COMMIT")
        assert await add > 0
        assert (await db.memory.get_memory("user:a", "k"))["version"] == 1


@pytest.mark.parametrize("status", ["created", "active", "paused", "terminated", "archived"])
async def test_migration_10_appends_only_to_the_writable_statuses(
        pg_memkit_dsn: str, status: str) -> None:
    from abathur_memkit.sessions import WRITABLE

    async with Database(pg_memkit_dsn) as db:
        await db.sessions.create_session("s", "app", "u")
        with psycopg.connect(pg_memkit_dsn, autocommit=True) as raw:
            raw.execute("UPDATE sessions SET status = %s WHERE id = 's'", (status,))
        if status in WRITABLE:
            assert await db.sessions.append_event("s", {"n": 1}) == 1
        else:
            with pytest.raises(MemkitError, match=status):
                await db.sessions.append_event("s", {"n": 1})
            assert (await db.sessions.get_session("s"))["events"] == []
