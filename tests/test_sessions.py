"""SessionService: lifecycle, ordered events, state, temp: keys, listing, seed defect 1."""

from __future__ import annotations

import asyncio
import itertools
import math
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from dbdump import dump
from plan_checks import assert_searches, details

from abathur_memkit import (
    AlreadyExistsError,
    Database,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
)
from abathur_memkit import sessions as sql
from abathur_memkit.sessions import LIFECYCLE, STATUSES, SessionService

KEYS = ["id", "app_name", "user_id", "project_id", "status", "events", "state", "metadata",
        "created_at", "last_update_time", "terminated_at", "archived_at"]


@pytest.fixture
async def s1(db: Database) -> SessionService:
    await db.sessions.create_session("s1", "abathur", "alice", project_id="p1")
    return db.sessions


# -- create / get ---------------------------------------------------------------

async def test_create_and_get(db: Database) -> None:
    created = await db.sessions.create_session(
        "s1", app_name="abathur", user_id="alice", project_id="p1",
        initial_state={"turn": 0, "temp:scratch": 1}, metadata={"source": "cli"})
    got = await db.sessions.get_session("s1")
    assert got == created
    assert list(got) == KEYS
    assert got["status"] == "created" and got["events"] == []
    assert got["state"] == {"turn": 0}
    assert got["metadata"] == {"source": "cli"}
    assert got["terminated_at"] is None and got["archived_at"] is None
    assert await db.sessions.get_session("nope") is None


async def test_service_constructible_and_shared(db: Database) -> None:
    assert db.sessions is db.sessions
    await SessionService(db).create_session("s1", "app", "u")
    assert await db.sessions.get_session("s1") is not None


async def test_memory_database(memdb: Database) -> None:
    await memdb.sessions.create_session("s1", "app", "u")
    assert await memdb.sessions.append_event("s1", {"n": 1}, {"k": "v"}) == 1
    got = await memdb.sessions.get_session("s1")
    assert got is not None and got["events"] == [{"n": 1}] and got["state"] == {"k": "v"}


# -- lifecycle --------------------------------------------------------------------

async def test_lifecycle_created_active_paused_terminated_archived(s1: SessionService) -> None:
    stamps = []
    for status in ("active", "paused", "active", "terminated", "archived"):
        await s1.update_status("s1", status)
        got = await s1.get_session("s1")
        assert got is not None and got["status"] == status
        stamps.append(got["last_update_time"])
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    got = await s1.get_session("s1")
    assert got is not None
    assert got["terminated_at"] is not None and got["archived_at"] is not None
    assert got["terminated_at"] <= got["archived_at"]


async def test_terminate_session_from_created(s1: SessionService) -> None:
    await s1.terminate_session("s1")
    got = await s1.get_session("s1")
    assert got is not None and got["status"] == "terminated" and got["terminated_at"]


LEGAL = {(a, b) for a, targets in LIFECYCLE.moves.items() for b in targets}
ILLEGAL = sorted(set(itertools.product(STATUSES, STATUSES)) - LEGAL)
# A legal path from 'created' to each status.
PATH = {"created": [], "active": ["active"], "paused": ["active", "paused"],
        "terminated": ["terminated"], "archived": ["terminated", "archived"]}


def test_transition_table_is_the_spec() -> None:
    spec = {("created", "active"), ("created", "terminated"), ("active", "paused"),
            ("paused", "active"), ("active", "terminated"), ("paused", "terminated"),
            ("terminated", "archived")}
    assert spec == LEGAL


@pytest.mark.parametrize(("current", "target"), ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
async def test_illegal_transition_names_both_states(
    db: Database, s1: SessionService, current: str, target: str
) -> None:
    for status in PATH[current]:
        await s1.update_status("s1", status)
    before = await dump(db)
    with pytest.raises(InvalidTransitionError,
                       match=f"^Cannot move session s1 from {current} to {target}$"):
        await s1.update_status("s1", target)
    assert await dump(db) == before


async def test_unknown_status(db: Database, s1: SessionService) -> None:
    before = await dump(db)
    with pytest.raises(InvalidInputError, match=r"^Invalid status: x "):
        await s1.update_status("s1", "x")
    with pytest.raises(InvalidInputError, match=r"^Invalid status: None "):
        await s1.update_status("s1", None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"^Invalid status: x "):
        await s1.list_sessions(status="x")
    assert await dump(db) == before


async def test_concurrent_moves_cannot_both_win(s1: SessionService) -> None:
    # Read-check-write runs inside one write transaction: of two racing
    # created->active moves exactly one succeeds.
    results = await asyncio.gather(*(s1.update_status("s1", "active") for _ in range(2)),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["InvalidTransitionError", "NoneType"]


# -- events ---------------------------------------------------------------------

async def test_events_keep_their_order(s1: SessionService) -> None:
    events = [{"event_type": "message", "actor": "user" if i % 2 else "agent", "n": i}
              for i in range(50)]
    seqs = [await s1.append_event("s1", e) for e in events]
    assert seqs == list(range(1, 51))
    got = await s1.get_session("s1")
    assert got is not None and got["events"] == events
    page = await s1.get_events("s1", after_seq=45, limit=3)
    assert [(e["seq"], e["event"]) for e in page] == [(46, events[45]), (47, events[46]),
                                                       (48, events[47])]
    assert all(e["created_at"] for e in page)


async def test_concurrent_appends_get_distinct_consecutive_seqs(s1: SessionService) -> None:
    seqs = await asyncio.gather(*(s1.append_event("s1", {"n": i}) for i in range(50)))
    assert sorted(seqs) == list(range(1, 51))
    got = await s1.get_session("s1")
    assert got is not None
    n_by_seq = dict(zip(seqs, range(50), strict=True))
    assert [e["n"] for e in got["events"]] == [n_by_seq[seq] for seq in sorted(n_by_seq)]


BOOM_TRIGGER = {
    "sqlite": "CREATE TRIGGER boom BEFORE UPDATE OF state ON sessions "
              "WHEN json_extract(NEW.state, '$.boom') IS NOT NULL "
              "BEGIN SELECT RAISE(ABORT, 'boom'); END",
    "postgresql": "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                  "RAISE check_violation USING MESSAGE = 'boom'; END $$; "
                  "CREATE TRIGGER boom BEFORE UPDATE OF state ON sessions FOR EACH ROW "
                  "WHEN (NEW.state -> 'boom' IS NOT NULL) EXECUTE FUNCTION boom()",
}


async def test_appends_from_two_databases_get_gapless_seqs(
    db: Database, s1: SessionService
) -> None:
    # Two Database objects (two pools or writer connections) append to one
    # session at once, each event with its state change.
    async with Database(db.path) as other:
        appends = [svc.append_event("s1", {"n": i}, {f"k{i}": i})
                   for i, svc in enumerate((s1, other.sessions) * 20)]
        seqs = await asyncio.gather(*appends)
    assert sorted(seqs) == list(range(1, 41))
    got = await s1.get_session("s1")
    assert got is not None
    assert sorted(e["n"] for e in got["events"]) == list(range(40))
    assert got["state"] == {f"k{i}": i for i in range(40)}


async def test_concurrent_creates_of_one_id(db: Database) -> None:
    results = await asyncio.gather(*(db.sessions.create_session("dup", "app", f"u{i}")
                                      for i in range(6)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 5 and all(type(e) is AlreadyExistsError for e in errors), errors
    assert all(str(e) == "Session dup already exists" for e in errors)


async def test_event_and_state_delta_commit_together(db: Database, s1: SessionService) -> None:
    assert await s1.append_event("s1", {"n": 1}, state_delta={"turn": 1, "temp:x": 1}) == 1
    assert await s1.get_state("s1", "turn") == 1
    # Make the state update fail inside the transaction: the event must not stay.
    await db.execute(BOOM_TRIGGER[db.dialect])
    before = await dump(db)
    with pytest.raises(InvalidInputError, match="boom"):
        await s1.append_event("s1", {"n": 2}, state_delta={"boom": True})
    assert await dump(db) == before
    assert await s1.append_event("s1", {"n": 2}) == 2


@pytest.mark.parametrize(("event", "message"), [
    ([1, 2], "Invalid event: expected a JSON object (dict), got list"),
    ("hi", "Invalid event: expected a JSON object (dict), got str"),
    (None, "Invalid event: expected a JSON object (dict), got NoneType"),
    ({1: "a"}, "Invalid event: key 1 is not a string"),
    ({"x": {1, 2}}, "Invalid event: not JSON-serializable"),
    ({"x": math.nan}, "Invalid event: not valid JSON"),
])
async def test_bad_events_change_nothing(
    db: Database, s1: SessionService, event: Any, message: str
) -> None:
    before = await dump(db)
    with pytest.raises(InvalidInputError, match=f"^{re.escape(message)}"):
        await s1.append_event("s1", event)
    assert await dump(db) == before


async def test_event_table_rejects_invalid_json(db: Database, s1: SessionService) -> None:
    # The seeds' "rejects invalid JSON" check, on the events' new home (a jsonb column
    # on PostgreSQL).
    message = {"sqlite": "CHECK constraint failed",
               "postgresql": "invalid input syntax for type json"}
    with pytest.raises(InvalidInputError, match=message[db.dialect]):
        await db.execute("INSERT INTO session_events (session_id, seq, event) "
                         "VALUES ('s1', 1, '{not json')")


# -- state ------------------------------------------------------------------------

async def test_state_set_get_and_isolation(db: Database) -> None:
    svc = db.sessions
    await svc.create_session("a", "app", "alice", initial_state={"shared": "a"})
    await svc.create_session("b", "app", "bob", initial_state={"shared": "b"})
    await svc.set_state("a", "plan", {"steps": [1, 2]})
    await svc.set_state("a", "none", None)
    await svc.append_event("b", {"n": 1}, state_delta={"turn": 7})
    assert await svc.get_state("a", "plan") == {"steps": [1, 2]}
    assert await svc.get_state("a", "none", default="x") is None
    assert await svc.get_state("a", "missing") is None
    assert await svc.get_state("a", "missing", default=0) == 0
    assert await svc.get_state("a", "turn") is None
    assert await svc.get_state("b", "plan") is None
    a, b = await svc.get_session("a"), await svc.get_session("b")
    assert a is not None and b is not None
    assert a["state"] == {"shared": "a", "plan": {"steps": [1, 2]}, "none": None}
    assert b["state"] == {"shared": "b", "turn": 7}


async def test_state_delta_replaces_top_level_keys(s1: SessionService) -> None:
    await s1.set_state("s1", "prefs", {"a": 1, "b": 2})
    await s1.append_event("s1", {"n": 1}, state_delta={"prefs": {"a": 9}, "x": None})
    assert await s1.get_state("s1", "prefs") == {"a": 9}


async def test_temp_keys_are_never_persisted(db: Database) -> None:
    svc = db.sessions
    await svc.create_session("s1", "app", "u", initial_state={"temp:a": 1, "keep": 1})
    await svc.append_event("s1", {"n": 1}, state_delta={"temp:b": 2, "turn": 1})
    await svc.set_state("s1", "temp:c", 3)
    for key in ("temp:a", "temp:b", "temp:c"):
        assert await svc.get_state("s1", key) is None
        assert await svc.get_state("s1", key, default="gone") == "gone"
    raw = await db.fetchone("SELECT state FROM sessions WHERE id = 's1'")
    assert raw is not None and "temp:" not in raw["state"]
    got = await svc.get_session("s1")
    assert got is not None and got["state"] == {"keep": 1, "turn": 1}


async def test_terminated_sessions_are_read_only(db: Database, s1: SessionService) -> None:
    await s1.terminate_session("s1")
    before = await dump(db)
    for call in (lambda: s1.append_event("s1", {"n": 1}), lambda: s1.set_state("s1", "k", 1)):
        with pytest.raises(InvalidInputError,
                           match=r"^Session s1 is terminated: its events and state are read-only"):
            await call()
    assert await dump(db) == before
    assert await s1.get_state("s1", "k") is None


# -- errors -------------------------------------------------------------------------

Call = Callable[[SessionService], Awaitable[Any]]

MISSING: list[tuple[str, Call]] = [
    ("update_status", lambda s: s.update_status("nope", "active")),
    ("terminate_session", lambda s: s.terminate_session("nope")),
    ("append_event", lambda s: s.append_event("nope", {"n": 1})),
    ("append_event_delta", lambda s: s.append_event("nope", {"n": 1}, {"k": 1})),
    ("set_state", lambda s: s.set_state("nope", "k", 1)),
    ("set_state_temp", lambda s: s.set_state("nope", "temp:k", 1)),
    ("get_state", lambda s: s.get_state("nope", "k")),
    ("get_events", lambda s: s.get_events("nope")),
]


@pytest.mark.parametrize("call", [c for _, c in MISSING], ids=[n for n, _ in MISSING])
async def test_missing_session(db: Database, s1: SessionService, call: Call) -> None:
    before = await dump(db)
    with pytest.raises(NotFoundError, match=r"^Session nope not found$"):
        await call(s1)
    assert await dump(db) == before


async def test_duplicate_session(db: Database, s1: SessionService) -> None:
    before = await dump(db)
    with pytest.raises(AlreadyExistsError, match=r"^Session s1 already exists$"):
        await s1.create_session("s1", "other", "bob", initial_state={"x": 1})
    assert await dump(db) == before


BAD_INPUT: list[tuple[str, Call, str]] = [
    ("empty id", lambda s: s.create_session("", "app", "u"), "Invalid session_id: empty"),
    ("int id", lambda s: s.create_session(5, "app", "u"),  # type: ignore[arg-type]
     "Invalid session_id: expected a string, got int"),
    ("nul id", lambda s: s.create_session("a\x00b", "app", "u"),
     "Invalid session_id: contains a NUL character"),
    ("long id", lambda s: s.create_session("x" * 513, "app", "u"),
     "Invalid session_id: longer than 512 characters"),
    ("surrogate id", lambda s: s.create_session("a\ud800", "app", "u"),
     "Invalid session_id: not encodable as UTF-8"),
    ("no app", lambda s: s.create_session("s2", "", "u"), "Invalid app_name: empty"),
    ("no user", lambda s: s.create_session("s2", "app", None),  # type: ignore[arg-type]
     "Invalid user_id: expected a string, got NoneType"),
    ("project", lambda s: s.create_session("s2", "app", "u", project_id=""),
     "Invalid project_id: empty"),
    ("initial list", lambda s: s.create_session("s2", "app", "u", initial_state=[1]),  # type: ignore[arg-type]
     "Invalid initial_state: expected a JSON object"),
    ("initial value", lambda s: s.create_session("s2", "app", "u", initial_state={"k": object()}),
     "Invalid initial_state: not JSON-serializable"),
    ("metadata", lambda s: s.create_session("s2", "app", "u", metadata="x"),  # type: ignore[arg-type]
     "Invalid metadata: expected a JSON object"),
    ("get id", lambda s: s.get_session(""), "Invalid session_id: empty"),
    ("append id", lambda s: s.append_event(None, {}),  # type: ignore[arg-type]
     "Invalid session_id: expected a string"),
    ("delta", lambda s: s.append_event("s1", {}, [1]),  # type: ignore[arg-type]
     "Invalid state_delta: expected a JSON object"),
    ("delta value", lambda s: s.append_event("s1", {}, {"k": math.inf}),
     "Invalid state_delta: not valid JSON"),
    ("state key", lambda s: s.set_state("s1", "", 1), "Invalid state key: empty"),
    ("state value", lambda s: s.set_state("s1", "k", {1, 2}),
     "Invalid state value for 'k': not JSON-serializable"),
    ("get key", lambda s: s.get_state("s1", 3),  # type: ignore[arg-type]
     "Invalid state key: expected a string, got int"),
    ("status id", lambda s: s.update_status("", "active"), "Invalid session_id: empty"),
    ("limit", lambda s: s.list_sessions(limit=0), "Invalid limit: 0"),
    ("limit bool", lambda s: s.list_sessions(limit=True), "Invalid limit: True"),
    ("after_seq", lambda s: s.get_events("s1", after_seq=-1),
     "Invalid after_seq: -1 (expected an integer >= 0)"),
    ("cursor", lambda s: s.list_sessions(cursor="not a cursor"), "Invalid cursor"),
    ("cursor type", lambda s: s.list_sessions(cursor=3),  # type: ignore[arg-type]
     "Invalid cursor"),
]


@pytest.mark.parametrize(("call", "message"), [(c, m) for _, c, m in BAD_INPUT],
                         ids=[n for n, _, _ in BAD_INPUT])
async def test_bad_input_changes_nothing(
    db: Database, s1: SessionService, call: Call, message: str
) -> None:
    before = await dump(db)
    with pytest.raises(InvalidInputError) as info:
        await call(s1)
    assert str(info.value).startswith(message), str(info.value)
    assert await dump(db) == before


# -- listing ------------------------------------------------------------------------

async def _make_sessions(svc: SessionService) -> None:
    for i in range(7):
        await svc.create_session(f"s{i}", "app", "alice" if i % 2 else "bob",
                                 project_id="p1" if i < 4 else None)


async def test_list_newest_first_with_filters(db: Database) -> None:
    svc = db.sessions
    await _make_sessions(svc)
    ids = lambda rows: [r["id"] for r in rows]  # noqa: E731
    assert ids(await svc.list_sessions()) == [f"s{i}" for i in range(6, -1, -1)]
    assert ids(await svc.list_sessions(user_id="alice")) == ["s5", "s3", "s1"]
    assert ids(await svc.list_sessions(project_id="p1")) == ["s3", "s2", "s1", "s0"]
    assert ids(await svc.list_sessions(project_id="p1", user_id="bob")) == ["s2", "s0"]
    for sid in ("s1", "s4", "s2"):
        await svc.update_status(sid, "active")
    # Active/paused alone: most recently updated first.
    await svc.append_event("s4", {"n": 1})
    assert ids(await svc.list_sessions(status="active")) == ["s4", "s2", "s1"]
    assert ids(await svc.list_sessions(status="created", user_id="alice")) == ["s5", "s3"]
    assert ids(await svc.list_sessions(status="created")) == ["s6", "s5", "s3", "s0"]
    rows = await svc.list_sessions(limit=1)
    assert list(rows[0]) == [k for k in KEYS if k != "events"]


@pytest.mark.parametrize("filters", [{}, {"user_id": "alice"}, {"status": "active"}])
async def test_cursor_pages_through_ties(db: Database, filters: dict[str, str]) -> None:
    # Twelve sessions with the same timestamps: the cursor's rowid breaks ties,
    # so no row is lost or repeated between pages.
    for i in range(12):
        await db.execute(
            "INSERT INTO sessions (id, app_name, user_id, status, created_at, last_update_time) "
            "VALUES (?, 'app', 'alice', 'active', '2025-01-01 00:00:00', '2025-01-01 00:00:00')",
            (f"t{i:02}",))
    seen: list[str] = []
    pages = []
    cursor = None
    while True:
        page = await db.sessions.list_sessions(**filters, limit=5, cursor=cursor)
        pages.append(len(page))
        seen += [r["id"] for r in page]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == [5, 5, 2]
    assert sorted(seen) == [f"t{i:02}" for i in range(12)] and len(set(seen)) == 12


async def test_cursor_belongs_to_its_listing(db: Database) -> None:
    await _make_sessions(db.sessions)
    for sid in ("s1", "s2"):
        await db.sessions.update_status(sid, "active")
    page = await db.sessions.list_sessions(status="active", limit=1)
    assert page.next_cursor is not None
    with pytest.raises(InvalidInputError, match="Invalid cursor: it belongs to a listing"):
        await db.sessions.list_sessions(user_id="alice", cursor=page.next_cursor)


# -- plans ------------------------------------------------------------------------------

# Filters → the index the listing must SEARCH. No filter, or created/terminated/
# archived alone, has no index (idx_sessions_status_updated covers only
# active/paused): those scan, and are pinned here so a change is noticed.
LISTINGS = [
    *[(("p1", st, u), "idx_sessions_project") for st in (None, *STATUSES) for u in (None, "u")],
    *[((None, st, "u"), "idx_sessions_user_created") for st in (None, *STATUSES)],
    ((None, "active", None), "idx_sessions_status_updated"),
    ((None, "paused", None), "idx_sessions_status_updated"),
    *[((None, st, None), None) for st in (None, "created", "terminated", "archived")],
]


@pytest.mark.sqlite_only("plan pins read SQLite's EXPLAIN QUERY PLAN and its index names")
@pytest.mark.parametrize("after", [None, ("order", "2025-01-01", 7)], ids=["first", "cursor"])
@pytest.mark.parametrize(("filters", "index"), LISTINGS, ids=[str(f) for f, _ in LISTINGS])
async def test_list_plans(
    db: Database, filters: tuple[Any, Any, Any], index: str | None, after: Any
) -> None:
    query, params = sql.list_query(*filters, limit=10, after=after)
    if index is not None:
        await assert_searches(db, query, params, "sessions", index)
    else:
        assert (await details(db, query, params))[0] == "SCAN sessions"


@pytest.mark.sqlite_only("plan pins read SQLite's EXPLAIN QUERY PLAN and its index names")
@pytest.mark.parametrize(("query", "params", "index"), [
    (sql.GET_SESSION, ("s1",), "idx_sessions_pk"),
    (sql.ALL_EVENTS, ("s1",), "sqlite_autoindex_session_events_1"),
    (sql.LAST_SEQ, ("s1",), "sqlite_autoindex_session_events_1"),
    (sql.EVENTS, ("s1", 0, 10), "sqlite_autoindex_session_events_1"),
    (sql.GET_STATUS_STATE, ("s1",), "idx_sessions_pk"),
], ids=["get_session", "get_session_events", "last_seq", "events", "status_state"])
async def test_point_query_plans(
    db: Database, query: str, params: tuple[Any, ...], index: str
) -> None:
    await assert_searches(db, query, params, "sessions", index)


@pytest.mark.sqlite_only("reads SQLite's statement trace (set_trace_callback)")
async def test_get_session_reads_row_and_events_in_one_snapshot(
    db: Database, s1: SessionService
) -> None:
    await s1.append_event("s1", {"n": 1})
    statements: list[str] = []
    await db.set_trace_callback(statements.append)
    try:
        await s1.get_session("s1")
    finally:
        await db.set_trace_callback(None)
    assert len(statements) == 4, statements
    assert statements[0] == "BEGIN" and statements[3] == "COMMIT"
    assert statements[1].startswith(sql.GET_SESSION.removesuffix("?"))
    assert statements[2].startswith(sql.ALL_EVENTS.replace("?", "'s1'"))


# -- seed defect 1: events are rows, appends are O(1) --------------------------------------

async def test_no_events_column(db: Database) -> None:
    query = ("PRAGMA table_info(sessions)" if db.dialect == "sqlite" else
             "SELECT column_name AS name FROM information_schema.columns "
             "WHERE table_schema = current_schema() AND table_name = 'sessions'")
    columns = [r["name"] for r in await db.fetchall(query)]
    assert "state" in columns and "events" not in columns


async def _row_bytes(db: Database, session_id: str) -> int:
    row = await db.fetchone("SELECT * FROM sessions WHERE id = ?", (session_id,))
    assert row is not None
    return sum(len(str(v).encode()) for v in row.values() if v is not None)


async def _wal_bytes_of_one_append(db: Database, n: int) -> int:
    wal = Path(f"{db.path}-wal")
    assert (await db.checkpoint("TRUNCATE"))["busy"] == 0
    assert wal.stat().st_size == 0
    await db.sessions.append_event("s1", {"n": n, "content": "x" * 1000})
    return wal.stat().st_size


@pytest.mark.sqlite_only("measures what one append adds to SQLite's WAL file")
async def test_append_cost_does_not_grow_with_history(db: Database, s1: SessionService) -> None:
    page_size = (await db.fetchone("PRAGMA page_size") or {})["page_size"]
    for n in range(10):
        await s1.append_event("s1", {"n": n, "content": "x" * 1000})
    size_at_10 = await _row_bytes(db, "s1")
    wal_at_10 = await _wal_bytes_of_one_append(db, 10)
    for n in range(11, 2000):
        await s1.append_event("s1", {"n": n, "content": "x" * 1000})
    # The session row does not grow with its events (it held them all in the seeds) ...
    assert await _row_bytes(db, "s1") == size_at_10
    # ... and one append writes a few pages to the WAL, not the ~2 MB history. Its
    # audit row goes to a table and three indexes shared by the whole database, which
    # gain a level between 10 and 2,000 rows: a few pages more, never the history.
    wal_at_2000 = await _wal_bytes_of_one_append(db, 2000)
    assert wal_at_2000 <= wal_at_10 + 10 * (page_size + 24), (wal_at_10, wal_at_2000)
    assert wal_at_2000 < 20 * (page_size + 24)
    got = await s1.get_session("s1")
    assert got is not None and len(got["events"]) == 2001
    assert [e["n"] for e in got["events"]] == list(range(2001))
