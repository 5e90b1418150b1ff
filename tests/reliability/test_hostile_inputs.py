"""Bad input, property-based: a clear MemkitError and an unchanged database; odd input round-trips.

Odd but valid names (quotes, ``%``, ``_``, SQL fragments, emoji, long strings)
must be stored and read back exactly, and prefix searches must treat them as
literal text, segment by segment. Invalid input (NUL, lone surrogates, names
too long, empty segments, wrong types, values that are not JSON, NaN/Infinity,
deep nesting, huge values, out-of-range integers) must raise a ``MemkitError``
that is also a ``ValueError`` and names the argument, and the database must be
unchanged (a dump of every table before and after).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from dbdump import dump
from hostile_strategies import (
    SQL_AND_WILDCARDS,
    bad_ints,
    bad_namespaces,
    bad_text,
    bad_values,
    json_values,
    keys,
    namespaces,
    odd_text,
    segment,
    storable,
    writers,
    wrong_types,
)
from hypothesis import assume, given
from hypothesis import strategies as st
from reliability_support import PROFILE, TRIED, Harness

from abathur_memkit import Database, InvalidInputError, MemkitError, MemoryItem
from abathur_memkit.inputs import MAX_LIMIT
from abathur_memkit.namespaces import MAX_NAME_LENGTH, SCOPES, within
from abathur_memkit.values import MAX_JSON_BYTES

# -- the property runner -------------------------------------------------------------

Call = Callable[[Database], Coroutine[Any, Any, Any]]


def _seed(h: Harness) -> list[Any]:
    """A few rows of every kind, so an invalid call has something it could damage."""
    async def seed() -> list[Any]:
        db = h.db
        if await db.sessions.get_session("s1") is None:
            await db.sessions.create_session("s1", "app", "alice", "p1", {"n": 0})
            await db.sessions.append_event("s1", {"n": 1}, {"n": 1})
            await db.memory.add_memory("user:alice", "k", {"v": 1}, "semantic", "system")
            await db.memory.update_memory("user:alice", "k", {"v": 2}, "system")
            await db.memory.add_memory("session:s1", "draft", "d", "episodic", "session:s1")
            await db.tasks.submit("prompt", task_id="t1", session_id="s1")
        return await dump(db)

    return h.run(seed())


def _valid_prefix(prefix: object) -> bool:
    """The prefix rule, written out: "" is everything; trailing ":" are dropped."""
    if prefix == "":
        return True
    if not isinstance(prefix, str) or "\x00" in prefix or len(prefix) > MAX_NAME_LENGTH:
        return False
    try:
        prefix.encode("utf-8")
    except UnicodeEncodeError:
        return False
    segments = prefix.rstrip(":").split(":")
    return segments[0] in SCOPES and all(segments)


def expect_rejected(h: Harness, before: list[Any], call: Call, *names: str) -> None:
    """``call`` raises a MemkitError + ValueError naming one of ``names``; nothing changed."""
    with pytest.raises(MemkitError) as info:
        h.run(call(h.db))
    assert isinstance(info.value, ValueError), repr(info.value)
    message = str(info.value)
    assert any(name in message for name in names), f"{message!r} names none of {names}"
    # Messages may quote the input, but not without bound (lifecycle.py quotes a bad
    # status in full, up to the 5,000 characters tried here: reported, not fixed here).
    assert len(message) < 6000, "the error message should not echo huge input"
    assert h.run(dump(h.db)) == before


# -- invalid input: a clear error, nothing changed --------------------------------------


@PROFILE
@given(namespace=bad_namespaces, op=st.sampled_from(
    ["add", "update", "delete", "restore", "rollback", "get", "history", "publish_to",
     "publish_from", "batch", "search"]))
def test_bad_namespaces_are_rejected(harness: Harness, namespace: Any, op: str) -> None:
    TRIED["bad namespace"] += 1
    before = _seed(harness)
    # search takes a prefix: "" means everything and "user:" is "user" (both valid).
    if op == "search":
        assume(not _valid_prefix(namespace))
    calls: dict[str, Call] = {
        "add": lambda db: db.memory.add_memory(namespace, "k", 1, "semantic", "system"),
        "update": lambda db: db.memory.update_memory(namespace, "k", 1, "system"),
        "delete": lambda db: db.memory.delete_memory(namespace, "k"),
        "restore": lambda db: db.memory.restore_memory(namespace, "k"),
        "rollback": lambda db: db.memory.rollback_memory(namespace, "k", 1, "system"),
        "get": lambda db: db.memory.get_memory(namespace, "k"),
        "history": lambda db: db.memory.get_memory_history(namespace, "k"),
        "publish_to": lambda db: db.memory.publish_memory("session:s1", "draft", namespace,
                                                          "system"),
        "publish_from": lambda db: db.memory.publish_memory(namespace, "draft", "user:alice",
                                                            "system"),
        "batch": lambda db: db.memory.add_memories(
            [MemoryItem("user:alice", "fresh1", 1), MemoryItem(namespace, "k", 1)], "system"),
        "search": lambda db: db.memory.search_memories(namespace),
    }
    expect_rejected(harness, before, calls[op], "namespace", "publish")


@PROFILE
@given(key=st.one_of(bad_text, wrong_types), op=st.sampled_from(
    ["add", "update", "delete", "restore", "rollback", "get", "publish", "publish_to_key",
     "batch"]))
def test_bad_keys_are_rejected(harness: Harness, key: Any, op: str) -> None:
    TRIED["bad key"] += 1
    before = _seed(harness)
    calls: dict[str, Call] = {
        "add": lambda db: db.memory.add_memory("user:alice", key, 1, "semantic", "system"),
        "update": lambda db: db.memory.update_memory("user:alice", key, 1, "system"),
        "delete": lambda db: db.memory.delete_memory("user:alice", key),
        "restore": lambda db: db.memory.restore_memory("user:alice", key),
        "rollback": lambda db: db.memory.rollback_memory("user:alice", key, 1, "system"),
        "get": lambda db: db.memory.get_memory("user:alice", key),
        "publish": lambda db: db.memory.publish_memory("session:s1", key, "user:alice", "x"),
        "publish_to_key": lambda db: db.memory.publish_memory(
            "session:s1", "draft", "user:alice", "x", to_key=key),
        "batch": lambda db: db.memory.add_memories(
            [MemoryItem("user:alice", "fresh2", 1), {"namespace": "user:alice", "key": key,
                                                     "value": 1}], "system"),
    }
    expect_rejected(harness, before, calls[op], "key")


@PROFILE
@given(value=bad_values, op=st.sampled_from(
    ["add", "update", "batch", "event", "delta", "state", "initial_state", "task_input",
     "task_result", "metadata"]))
def test_values_that_are_not_json_are_rejected(harness: Harness, value: Any, op: str) -> None:
    TRIED["bad value"] += 1
    before = _seed(harness)
    calls: dict[str, tuple[Call, tuple[str, ...]]] = {
        "add": (lambda db: db.memory.add_memory("user:alice", "new", value, "semantic", "s"),
                ("value",)),
        "update": (lambda db: db.memory.update_memory("user:alice", "k", value, "s"), ("value",)),
        "batch": (lambda db: db.memory.add_memories(
            [MemoryItem("user:alice", "n1", 1), MemoryItem("user:alice", "n2", value)], "s"),
            ("Item 1", "value")),
        "event": (lambda db: db.sessions.append_event("s1", {"payload": value}), ("event",)),
        "delta": (lambda db: db.sessions.append_event("s1", {"n": 2}, {"x": value}),
                  ("state_delta",)),
        "state": (lambda db: db.sessions.set_state("s1", "x", value), ("state value",)),
        "initial_state": (lambda db: db.sessions.create_session(
            "s-new", "app", "u", initial_state={"x": value}), ("initial_state",)),
        "task_input": (lambda db: db.tasks.submit("p", input_data=value), ("input_data",)),
        "task_result": (lambda db: db.tasks.complete("t1", value), ("result",)),
        "metadata": (lambda db: db.memory.add_memory("user:alice", "new", 1, "semantic", "s",
                                                     metadata={"m": value}), ("metadata",)),
    }
    call, names = calls[op]
    expect_rejected(harness, before, call, *names)


def test_huge_values_are_rejected(harness: Harness) -> None:
    before = _seed(harness)
    huge = "x" * (MAX_JSON_BYTES + 10)
    wide = ["é" * 1000] * (MAX_JSON_BYTES // 2000 + 10)  # 2 bytes per char in UTF-8
    values: list[Any] = [huge, {"a": huge}, wide]
    for value in values:
        TRIED["huge value"] += 1

        def add(db: Database, v: Any = value) -> Coroutine[Any, Any, Any]:
            return db.memory.add_memory("user:alice", "big", v, "semantic", "s")

        expect_rejected(harness, before, add, "larger than")


@PROFILE
@given(memory_type=st.one_of(odd_text, wrong_types).filter(
    lambda t: t not in ("semantic", "episodic", "procedural")))
def test_bad_memory_types_are_rejected(harness: Harness, memory_type: Any) -> None:
    TRIED["bad memory_type"] += 1
    before = _seed(harness)
    expect_rejected(harness, before, lambda db: db.memory.add_memory(
        "user:alice", "new", 1, memory_type, "s"), "Invalid memory_type")
    expect_rejected(harness, before, lambda db: db.memory.update_memory(
        "user:alice", "k", 1, "s", memory_type=memory_type), "Invalid memory_type")
    expect_rejected(harness, before, lambda db: db.memory.search_memories(
        "user", memory_type=memory_type), "Invalid memory_type")


@PROFILE
@given(number=bad_ints, op=st.sampled_from(
    ["get_version", "rollback", "limit", "audit_limit", "after_seq", "priority", "max_retries",
     "timeout", "entry_id", "sessions_limit", "tasks_limit"]))
def test_bad_integers_are_rejected(harness: Harness, number: Any, op: str) -> None:
    TRIED["bad integer"] += 1
    before = _seed(harness)
    if op == "entry_id":
        assume(number is not None)  # None means "no filter"
    if op in ("priority", "entry_id"):
        # Any int64 is a fine priority or id; only non-ints and out-of-range ones are bad.
        assume(not (isinstance(number, int) and not isinstance(number, bool)
                    and -(2**63) <= number < 2**63))
    if op == "get_version":
        assume(number is not None)  # None asks for the latest version
    if op == "after_seq":
        assume(not (isinstance(number, int) and not isinstance(number, bool) and number == 0))
    if op == "max_retries":
        assume(not (number == 0 and isinstance(number, int) and not isinstance(number, bool)))
    calls: dict[str, tuple[Call, tuple[str, ...]]] = {
        "get_version": (lambda db: db.memory.get_memory("user:alice", "k", version=number),
                        ("version",)),
        "rollback": (lambda db: db.memory.rollback_memory("user:alice", "k", number, "s"),
                     ("version",)),
        "limit": (lambda db: db.memory.search_memories("user", limit=number), ("limit",)),
        "audit_limit": (lambda db: db.audit.list(limit=number), ("limit",)),
        "after_seq": (lambda db: db.sessions.get_events("s1", after_seq=number), ("after_seq",)),
        "priority": (lambda db: db.tasks.submit("p", priority=number), ("priority",)),
        "max_retries": (lambda db: db.tasks.submit("p", max_retries=number), ("max_retries",)),
        "timeout": (lambda db: db.tasks.submit("p", max_execution_timeout_seconds=number),
                    ("max_execution_timeout_seconds",)),
        "entry_id": (lambda db: db.audit.list(memory_entry_id=number), ("memory_entry_id",)),
        "sessions_limit": (lambda db: db.sessions.list_sessions(limit=number), ("limit",)),
        "tasks_limit": (lambda db: db.tasks.list(limit=number), ("limit",)),
    }
    call, names = calls[op]
    expect_rejected(harness, before, call, *names)


@PROFILE
@given(text=st.one_of(bad_text, wrong_types), op=st.sampled_from(
    ["created_by", "updated_by", "deleted_by", "task_id", "session_id", "app_name", "user_id",
     "project_id", "state_key", "event_session", "status", "prompt", "agent_type",
     "claim_agent_type", "dependency", "fail_error"]))
def test_bad_identifiers_are_rejected(harness: Harness, text: Any, op: str) -> None:
    TRIED["bad identifier"] += 1
    before = _seed(harness)
    if op in ("created_by", "updated_by", "deleted_by", "task_id", "project_id",
              "claim_agent_type"):
        assume(text is not None)  # optional arguments
    if op in ("prompt", "fail_error"):
        # Prompts and errors have no length limit.
        assume(not (isinstance(text, str) and len(text) > MAX_NAME_LENGTH and "\x00" not in text
                    and text.isascii()))
    calls: dict[str, tuple[Call, tuple[str, ...]]] = {
        "created_by": (lambda db: db.memory.add_memory("user:alice", "n", 1, "semantic", text),
                       ("created_by",)),
        "updated_by": (lambda db: db.memory.update_memory("user:alice", "k", 1, text),
                       ("updated_by",)),
        "deleted_by": (lambda db: db.memory.delete_memory("user:alice", "k", deleted_by=text),
                       ("deleted_by",)),
        "task_id": (lambda db: db.memory.add_memory("user:alice", "n", 1, "semantic", "s",
                                                    task_id=text), ("task_id",)),
        "session_id": (lambda db: db.sessions.create_session(text, "app", "u"), ("session_id",)),
        "app_name": (lambda db: db.sessions.create_session("s9", text, "u"), ("app_name",)),
        "user_id": (lambda db: db.sessions.create_session("s9", "app", text), ("user_id",)),
        "project_id": (lambda db: db.sessions.create_session("s9", "app", "u", text),
                       ("project_id",)),
        "state_key": (lambda db: db.sessions.set_state("s1", text, 1), ("state key",)),
        "event_session": (lambda db: db.sessions.append_event(text, {"e": 1}), ("session_id",)),
        "status": (lambda db: db.sessions.update_status("s1", text), ("Invalid status",)),
        "prompt": (lambda db: db.tasks.submit(text), ("prompt",)),
        "agent_type": (lambda db: db.tasks.submit("p", agent_type=text), ("agent_type",)),
        "claim_agent_type": (lambda db: db.tasks.claim(text), ("agent_type",)),
        "dependency": (lambda db: db.tasks.submit("p", dependencies=[text]), ("dependenc",)),
        "fail_error": (lambda db: db.tasks.fail("t1", text), ("error",)),
    }
    call, names = calls[op]
    expect_rejected(harness, before, call, *names)


@pytest.mark.parametrize("items", [5, None, "user:alice", b"xx", {"namespace": "user:a"},
                                   [5], [None], [("user:a", "k", 1)],
                                   [{"namespace": "user:a", "key": "k"}],
                                   [{"namespace": "user:a", "key": "k", "value": 1, "x": 2}]])
def test_batch_of_the_wrong_shape_is_rejected(harness: Harness, items: Any) -> None:
    TRIED["bad batch"] += 1
    before = _seed(harness)
    expect_rejected(harness, before, lambda db: db.memory.add_memories(items, "s"),
                    "Item 0", "items")


@pytest.mark.parametrize("bad", [5, "x", 1.5, {"a"}, [("k", 1)], b"{}", True])
def test_wrong_types_for_object_arguments(harness: Harness, bad: Any) -> None:
    before = _seed(harness)
    TRIED["bad type"] += 1
    expect_rejected(harness, before, lambda db: db.memory.add_memory(
        "user:alice", "n", 1, "semantic", "s", metadata=bad), "metadata")
    expect_rejected(harness, before, lambda db: db.memory.update_memory(
        "user:alice", "k", 1, "s", metadata=bad), "metadata")
    expect_rejected(harness, before, lambda db: db.sessions.append_event("s1", bad), "event")
    expect_rejected(harness, before, lambda db: db.sessions.append_event(
        "s1", {"e": 1}, bad), "state_delta")
    expect_rejected(harness, before, lambda db: db.sessions.create_session(
        "s-new", "app", "u", initial_state=bad), "initial_state")
    expect_rejected(harness, before, lambda db: db.audit.list(since=bad), "since")


@PROFILE
@given(before=st.text(storable, max_size=8), after=st.text(storable, max_size=8),
       field=st.sampled_from(["session_id", "app_name", "user_id", "project_id", "agent_id",
                              "task session_id", "context session_id"]))
def test_ids_with_the_separator_are_rejected(harness: Harness, before: str, after: str,
                                             field: str) -> None:
    """An id that becomes a namespace segment cannot hold ':', wherever it is accepted."""
    TRIED["id with ':'"] += 1
    text = f"{before}:{after}"
    snapshot = _seed(harness)
    calls: dict[str, Call] = {
        "session_id": lambda db: db.sessions.create_session(text, "app", "u"),
        "app_name": lambda db: db.sessions.create_session("s9", text, "u"),
        "user_id": lambda db: db.sessions.create_session("s9", "app", text),
        "project_id": lambda db: db.sessions.create_session("s9", "app", "u", text),
        "agent_id": lambda db: db.agents.spawn("a", "b", "t1", "m", agent_id=text),
        "task session_id": lambda db: db.tasks.submit("p", session_id=text),
        "context session_id": lambda db: db.memory.context_for_session(text),
    }
    expect_rejected(harness, snapshot, calls[field], "may not contain ':'")


@pytest.mark.parametrize("ttl", [-1, -0.5, math.nan, -math.inf, "30", None, True, [1]])
def test_bad_ttls_are_rejected(harness: Harness, ttl: float) -> None:
    before = _seed(harness)
    expect_rejected(harness, before, lambda db: db.memory.cleanup_expired_memories(ttl),
                    "ttl_days")


def test_enormous_ttls_expire_nothing(harness: Harness) -> None:
    before = _seed(harness)
    for ttl in (10**6, 1e300, math.inf):
        assert harness.run(harness.db.memory.cleanup_expired_memories(ttl)) == 0
    assert harness.run(dump(harness.db)) == before


# -- valid but odd input: stored and read back exactly ------------------------------------


class Model:
    """What the round-trip property has written: (namespace, key) -> value."""

    def __init__(self) -> None:
        self.live: dict[tuple[str, str], Any] = {}


@pytest.fixture(scope="module")
def model() -> Model:
    return Model()


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """A database of the round-trip properties' own (no seeded rows)."""
    h = Harness(tmp_path_factory.mktemp("roundtrip") / "roundtrip.db")
    try:
        yield h
    finally:
        h.close()


@PROFILE
@given(namespace=namespaces, key=keys, value=json_values, by=writers,
       memory_type=st.sampled_from(["semantic", "episodic", "procedural"]),
       metadata=st.dictionaries(st.text(storable, max_size=10), json_values, max_size=3),
       prefix_choice=st.integers(0, 3))
def test_odd_names_and_values_round_trip(
    fresh: Harness, model: Model, namespace: str, key: str, value: Any, by: str | None,
    memory_type: str, metadata: dict[str, Any], prefix_choice: int,
) -> None:
    TRIED["odd valid memory"] += 1
    harness = fresh
    mem = harness.db.memory
    ident = (namespace, key)

    async def write() -> None:
        if ident in model.live:
            await mem.update_memory(namespace, key, value, by, memory_type=memory_type,
                                    metadata=metadata)
        else:
            await mem.add_memory(namespace, key, value, memory_type, by, metadata=metadata)

    harness.run(write())
    model.live[ident] = value
    got = harness.run(mem.get_memory(namespace, key))
    assert got is not None
    assert (got["namespace"], got["key"], got["value"]) == (namespace, key, value)
    assert got["memory_type"] == memory_type and got["metadata"] == metadata
    assert got["updated_by"] == by

    # Prefix search is literal and segment-aware, whatever the characters.
    segments = namespace.split(":")
    prefix = [":".join(segments[:2]), namespace, namespace + ":", segments[0]][prefix_choice]
    exact = prefix.rstrip(":")
    found = harness.run(mem.search_memories(prefix, limit=MAX_LIMIT))
    got_keys = {(r["namespace"], r["key"]) for r in found}
    want = {k for k in model.live if within(k[0], exact)}
    assert got_keys == want
    assert all(r["value"] == model.live[(r["namespace"], r["key"])] for r in found)
    listed = harness.run(mem.list_namespaces(prefix))
    assert set(listed) == {k[0] for k in want}


@PROFILE
@given(session_id=segment, app=segment, user=segment, project=st.none() | segment,
       state=st.dictionaries(odd_text.filter(lambda k: not k.startswith("temp:")), json_values,
                             max_size=3),
       event=st.dictionaries(odd_text, json_values, max_size=3))
def test_odd_sessions_round_trip(harness: Harness, session_id: str, app: str, user: str,
                                 project: str | None, state: dict[str, Any],
                                 event: dict[str, Any]) -> None:
    TRIED["odd valid session"] += 1
    sessions = harness.db.sessions
    sid = f"{session_id}#{TRIED['odd valid session']}"

    async def go() -> None:
        await sessions.create_session(sid, app, user, project, state)
        assert await sessions.append_event(sid, event, {"last": event}) == 1
        got = await sessions.get_session(sid)
        assert got is not None
        assert (got["id"], got["app_name"], got["user_id"], got["project_id"]) == (
            sid, app, user, project)
        assert got["events"] == [event]
        assert got["state"] == {**state, "last": event}
        for name, value in state.items():
            assert await sessions.get_state(sid, name) == value
        if project is not None:
            listed = await sessions.list_sessions(project_id=project, limit=MAX_LIMIT)
            assert sid in [s["id"] for s in listed]

    harness.run(go())


@PROFILE
@given(prompt=odd_text, agent_type=odd_text, data=json_values)
def test_odd_tasks_round_trip(harness: Harness, prompt: str, agent_type: str,
                              data: Any) -> None:
    TRIED["odd valid task"] += 1
    tasks = harness.db.tasks
    kind = f"{agent_type}#{TRIED['odd valid task']}"  # a queue of its own

    async def go() -> None:
        tid = await tasks.submit(prompt, agent_type=kind, input_data=data)
        claimed = await tasks.claim(kind, agent_id=kind)
        assert claimed is not None and claimed["id"] == tid
        assert (claimed["prompt"], claimed["agent_type"]) == (prompt, kind)
        assert claimed["input_data"] == ({} if data is None else data)
        assert await tasks.claim(kind) is None

    harness.run(go())


async def test_sql_fragments_as_ids_do_not_reach_sql(db: Database) -> None:
    """Names made of SQL are data: the schema and the other rows are untouched."""
    fragments = [f for f in SQL_AND_WILDCARDS if ":" not in f and f.strip()]
    await db.sessions.create_session("victim", "app", "bob")
    await db.memory.add_memory("user:bob", "secret", "keep", "semantic", "system")
    for i, frag in enumerate(fragments):
        await db.memory.add_memory(f"user:{frag}", frag, frag, "semantic", frag)
        await db.sessions.create_session(f"{frag}{i}", frag, frag, frag, {frag: frag})
        await db.tasks.submit(frag, agent_type=frag, created_by=frag)
    tables = await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    assert {"memory_entries", "audit", "sessions", "tasks"} <= {t["name"] for t in tables}
    assert (await db.memory.get_memory("user:bob", "secret") or {})["value"] == "keep"
    # "user:%" and "user:_" are literal namespaces, not patterns matching bob's.
    for frag in ("%", "_", "%%", "a%"):
        found = await db.memory.search_memories(f"user:{frag}")
        assert {r["namespace"] for r in found} == {f"user:{frag}"}
    assert (await db.validate())["ok"]


def test_invalid_input_leaves_no_trace(harness: Harness) -> None:
    """After all the rejected calls above the seeded rows are what they were."""
    before = _seed(harness)
    assert harness.run(harness.db.integrity_check()) == ["ok"]
    assert harness.run(dump(harness.db)) == before


def test_limits_accept_their_bounds(harness: Harness) -> None:
    _seed(harness)
    assert isinstance(harness.run(harness.db.memory.search_memories("user", limit=MAX_LIMIT)),
                      list)
    with pytest.raises(InvalidInputError, match="Invalid limit"):
        harness.run(harness.db.memory.search_memories("user", limit=MAX_LIMIT + 1))


@pytest.mark.parametrize(("kwargs", "names"), [
    ({"path": b"x.db"}, "path"), ({"path": 5}, "path"), ({"path": ""}, "path"),
    ({"path": "a\x00b.db"}, "NUL"), ({"readers": "2"}, "readers"), ({"readers": -1}, "readers"),
    ({"readers": None}, "readers"), ({"readers": True}, "readers"), ({"driver": 5}, "driver"),
    ({"driver": "postgres"}, "driver"), ({"extensions": "vec"}, "extensions"),
    ({"extensions": 5}, "extensions"), ({"vector_backend": "faiss"}, "vector_backend"),
])
def test_database_arguments_are_checked(kwargs: dict[str, Any], names: str) -> None:
    TRIED["bad Database argument"] += 1
    args = {"path": ":memory:", **kwargs}
    path = args.pop("path")
    with pytest.raises(InvalidInputError, match=names):
        Database(path, **args)
