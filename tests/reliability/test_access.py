"""Access: the write policy on every memory write path, and extensions only from packages.

The policy (SPEC §4): a writer named ``session:<id>`` may write only its own
``session:<id>[:…]`` namespaces and ``user:<its user>[:…]``, unless the call is
elevated; other writers are not restricted. Each write path is tried by every
kind of writer on every kind of namespace, against that rule written out here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from dbdump import dump

from abathur_memkit import (
    Database,
    ExtensionError,
    InvalidInputError,
    MemkitError,
    MemoryItem,
    WritePolicyError,
)
from abathur_memkit.engines.sqlite.driver import EXTENSIONS, load_extension, select_driver
from abathur_memkit.namespaces import within

USERS = {"s1": "alice", "s2": "bob"}  # sessions and their users
WRITERS = ["session:s1", "session:s2", "session:ghost", "session:s1:x", "agent:planner",
           "system", None, "Session:s1", "session:"]
NAMESPACES = ["session:s1", "session:s1:draft", "session:s10", "session:s2", "user:alice",
              "user:alice:prefs", "user:alice2", "user:bob", "app:abathur", "project:p1",
              "temp:s1", "session:s1:x"]
PUBLISH_SOURCE = "session:s1:drafts"
PUBLISH_TARGETS = ["user:alice", "user:alice:prefs", "user:alice2", "user:bob", "app:abathur",
                   "project:p1"]


def invalid(writer: str | None) -> bool:
    """A session writer whose id is not a valid segment names no session at all."""
    if not writer or writer[:8].lower() != "session:":
        return False
    session = writer[len("session:"):]
    return session == "" or ":" in session


def allowed(writer: str | None, namespace: str) -> bool:
    """The rule, independently of the library's code (the scope is case-insensitive)."""
    if not writer or writer[:8].lower() != "session:":
        return True
    session = writer[len("session:"):]
    if within(namespace, f"session:{session}"):
        return True
    user = USERS.get(session)
    return user is not None and within(namespace, f"user:{user}")


@pytest.fixture
async def sessions(policy_db: Database) -> Database:
    db = policy_db
    for sid, user in USERS.items():
        await db.sessions.create_session(sid, "abathur", user, "p1")
    await db.memory.add_memory("session:s1:drafts", "summary", {"text": "draft"}, "semantic",
                               "session:s1")
    return db


Attempt = Callable[[Database, str | None, str, bool], Awaitable[Any]]


async def _prepare_key(db: Database, namespace: str, key: str, *, deleted: bool = False,
                       versions: int = 1) -> None:
    await db.memory.add_memory(namespace, key, 0, "semantic", "system")
    for v in range(1, versions):
        await db.memory.update_memory(namespace, key, v, "system")
    if deleted:
        await db.memory.delete_memory(namespace, key, deleted_by="system")


async def _add(db: Database, w: str | None, ns: str, elevated: bool) -> Any:
    return await db.memory.add_memory(ns, _key(w, "add", elevated), 1, "semantic", w,
                                      elevated=elevated)


async def _update(db: Database, w: str | None, ns: str, elevated: bool) -> Any:
    key = _key(w, "update", elevated)
    await _prepare_key(db, ns, key)
    return await db.memory.update_memory(ns, key, 2, w, elevated=elevated)


async def _delete(db: Database, w: str | None, ns: str, elevated: bool) -> Any:
    key = _key(w, "delete", elevated)
    await _prepare_key(db, ns, key)
    return await db.memory.delete_memory(ns, key, deleted_by=w, elevated=elevated)


async def _restore(db: Database, w: str | None, ns: str, elevated: bool) -> Any:
    key = _key(w, "restore", elevated)
    await _prepare_key(db, ns, key, deleted=True)
    return await db.memory.restore_memory(ns, key, restored_by=w, elevated=elevated)


async def _rollback(db: Database, w: str | None, ns: str, elevated: bool) -> Any:
    key = _key(w, "rollback", elevated)
    await _prepare_key(db, ns, key, versions=2)
    return await db.memory.rollback_memory(ns, key, 1, w, elevated=elevated)


def _batch_first(writer: str | None) -> str:
    """A namespace the writer may write, for the batch's first item."""
    if writer and writer.startswith("session:") and writer[len("session:"):]:
        return writer
    return "project:p1"


async def _batch(db: Database, w: str | None, ns: str, elevated: bool) -> Any:
    # A denied namespace anywhere in the batch rejects all of it.
    items = [MemoryItem(_batch_first(w), _key(w, f"batch0-{ns}", elevated), 1),
             MemoryItem(ns, _key(w, "batch1", elevated), 2)]
    return await db.memory.add_memories(items, w, elevated=elevated)


async def _publish(db: Database, w: str | None, ns: str, elevated: bool) -> Any:
    return await db.memory.publish_memory(PUBLISH_SOURCE, "summary", ns, w,
                                          to_key=_key(w, "publish", elevated), elevated=elevated)


def _key(writer: str | None, path: str, elevated: bool) -> str:
    return f"{path}-{writer}-{elevated}"


PATHS: dict[str, tuple[Attempt, list[str]]] = {
    "add_memory": (_add, NAMESPACES),
    "update_memory": (_update, NAMESPACES),
    "delete_memory": (_delete, NAMESPACES),
    "restore_memory": (_restore, NAMESPACES),
    "rollback_memory": (_rollback, NAMESPACES),
    "add_memories": (_batch, NAMESPACES),
    "publish_memory": (_publish, PUBLISH_TARGETS),
}


@pytest.mark.parametrize("path", list(PATHS))
async def test_the_write_policy_holds_on_every_write_path(sessions: Database, path: str) -> None:
    db = sessions
    attempt, namespaces = PATHS[path]
    tried = denied = 0
    for writer in WRITERS:
        for namespace in namespaces:
            for elevated in (False, True):
                tried += 1
                unprepared = path in ("add_memory", "add_memories", "publish_memory")
                snapshot = await dump(db) if unprepared else None
                if invalid(writer):
                    with pytest.raises(InvalidInputError, match="Invalid writer"):
                        await attempt(db, writer, namespace, elevated)
                    if unprepared:
                        assert await dump(db) == snapshot, f"{path} wrote for {writer}"
                    continue
                expected = elevated or allowed(writer, namespace)
                if path == "add_memories":
                    expected = elevated or (allowed(writer, namespace)
                                            and allowed(writer, _batch_first(writer)))
                if path == "publish_memory":  # a session publishes only its own drafts
                    expected = elevated or (allowed(writer, namespace)
                                            and allowed(writer, PUBLISH_SOURCE))
                try:
                    result = await attempt(db, writer, namespace, elevated)
                except WritePolicyError as exc:
                    denied += 1
                    assert not expected, f"{path}: {writer} denied {namespace}: {exc}"
                    assert isinstance(exc, MemkitError) and isinstance(exc, PermissionError)
                    named = {namespace, _batch_first(writer)} if path == "add_memories" \
                        else {namespace, PUBLISH_SOURCE} if path == "publish_memory" \
                        else {namespace}
                    assert f"Write denied: {writer}" in str(exc)
                    assert any(f"not {n} " in str(exc) for n in named), str(exc)
                    # Nothing written, not even the audit row (the paths that need a
                    # prepared key: test_denied_prepared_writes_change_nothing).
                    if unprepared:
                        assert await dump(db) == snapshot, f"{path} wrote despite the denial"
                    continue
                assert expected, f"{path}: {writer} was allowed to write {namespace}"
                assert result is not None and result is not False
    assert denied > 0 and tried > denied


async def test_denied_prepared_writes_change_nothing(sessions: Database) -> None:
    """For the paths that need an existing key: the denied call itself changes nothing."""
    db = sessions
    ns = "user:bob"
    for path in ("update_memory", "delete_memory", "restore_memory", "rollback_memory"):
        key = _key("session:s1", path.split("_")[0], False)
        await _prepare_key(db, ns, key, deleted=path == "restore_memory",
                           versions=2 if path == "rollback_memory" else 1)
        before = await dump(db)
        with pytest.raises(WritePolicyError):
            if path == "update_memory":
                await db.memory.update_memory(ns, key, 9, "session:s1")
            elif path == "delete_memory":
                await db.memory.delete_memory(ns, key, deleted_by="session:s1")
            elif path == "restore_memory":
                await db.memory.restore_memory(ns, key, restored_by="session:s1")
            else:
                await db.memory.rollback_memory(ns, key, 1, "session:s1")
        assert await dump(db) == before, path


async def test_policy_follows_the_session_user_at_write_time(sessions: Database) -> None:
    """The user is read inside the write transaction: no stale permission."""
    db = sessions
    await db.memory.add_memory("user:alice", "a", 1, "semantic", "session:s1")
    await db.execute("UPDATE sessions SET user_id = 'carol' WHERE id = 's1'")
    with pytest.raises(WritePolicyError):
        await db.memory.update_memory("user:alice", "a", 2, "session:s1")
    await db.memory.add_memory("user:carol", "a", 1, "semantic", "session:s1")


# -- extensions --------------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "/tmp/evil.so", "./vec", "../vec", "vec.so", "vec0", "VEC", "sqlite_vec", "sqlite-vec", "",
    "vec\x00", "vec; SELECT 1", "vss/../../x", "~/lib.so", "C:\\evil.dll", "libc.so.6",
])
def test_load_extension_refuses_names_and_paths(name: str) -> None:
    conn = select_driver().connect(":memory:")
    try:
        with pytest.raises(InvalidInputError, match="Unknown extension"):
            load_extension(conn, name)
    finally:
        conn.close()


@pytest.mark.parametrize("name", [None, 5, b"vec", ["vec"], Path("vec")])
def test_load_extension_refuses_other_types(name: Any) -> None:
    conn = select_driver().connect(":memory:")
    try:
        with pytest.raises(InvalidInputError):
            load_extension(conn, name)
    finally:
        conn.close()


async def test_database_refuses_extension_paths(tmp_path: Path) -> None:
    evil = tmp_path / "evil.so"
    evil.write_bytes(b"\x7fELF not really")
    with pytest.raises(InvalidInputError, match="Unknown extension"):
        await Database(tmp_path / "a.db", extensions=[str(evil)]).initialize()


@pytest.mark.parametrize("extensions", [(), ("vec",)])
async def test_sql_cannot_load_extensions(tmp_path: Path, extensions: tuple[str, ...]) -> None:
    """``SELECT load_extension(...)`` stays off on every memkit connection, also after vec."""
    evil = tmp_path / "evil.so"
    evil.write_bytes(b"\x7fELF not really")
    async with Database(tmp_path / "a.db", extensions=extensions) as db:
        for run in (db.fetchone, db.execute):
            with pytest.raises(Exception, match=r"not authorized|no such function") as info:
                await run(f"SELECT load_extension('{evil}')")
            assert "ELF" not in str(info.value)


def test_known_extensions_come_from_installed_packages() -> None:
    assert EXTENSIONS == ("vec", "vss")
    conn = select_driver().connect(":memory:")
    try:
        try:
            version = load_extension(conn, "vec")
        except ExtensionError as exc:  # the stdlib driver without extension loading
            pytest.skip(str(exc))
        assert version.startswith("v")
        # Loading is switched off again right after.
        with pytest.raises(Exception, match="not authorized"):
            conn.execute("SELECT load_extension('x')")
    finally:
        conn.close()
