"""Sessions: a conversation's lifecycle, its ordered events and its state.

Events live one row each in ``session_events(session_id, seq, event)``, not
in a JSON array on the session row (rewritten whole on every append): an append inserts one
row and touches the session row only for ``last_update_time`` and the state
delta, so it costs the same at event #5,000 as at event #10.

State keys have scopes, by prefix: ``app:`` keys are shared by every
session of the app (table ``app_states``), ``user:`` keys by every session
of the same app and user (``user_states``), other keys belong to the session.
``temp:`` keys belong to one invocation and are never stored: they are
dropped from ``initial_state``, ``state_delta`` and ``set_state``, and
``get_state`` of a ``temp:`` key returns the default. Reads return the merged
state, prefixes kept; a write routes each key to its scope in the same
transaction.

Every create, status change, event append and state change writes its audit
row (``session_created``, ``session_status_changed``, ``session_event_appended``,
``session_state_changed``) in the same transaction.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, NamedTuple

from . import audit
from .engines.interface import Connection, Statements, Store
from .errors import AlreadyExistsError, InvalidInputError
from .inputs import (
    optional_text,
    require_int,
    require_limit,
    require_object,
    require_text,
    show,
)
from .lifecycle import Lifecycle, for_update
from .namespaces import optional_segment, require_segment
from .rows import Row, Rows, decode
from .values import from_json, timestamp, to_json

__all__ = [
    "APP_PREFIX",
    "LIFECYCLE",
    "STATUSES",
    "TEMP_PREFIX",
    "USER_PREFIX",
    "Page",
    "SessionService",
    "list_query",
    "order_column",
]

#: Session lifecycle: created → active ↔ paused → terminated → archived.
LIFECYCLE = Lifecycle(
    "session",
    "status",
    {
        "created": frozenset({"active", "terminated"}),
        "active": frozenset({"paused", "terminated"}),
        "paused": frozenset({"active", "terminated"}),
        "terminated": frozenset({"archived"}),
        "archived": frozenset(),
    },
)
STATUSES = LIFECYCLE.states
TEMP_PREFIX = "temp:"
APP_PREFIX = "app:"
USER_PREFIX = "user:"
# Events and state of a terminated or archived session are history: read-only.
WRITABLE = frozenset({"created", "active", "paused"})
# The statuses idx_sessions_status_updated covers (its partial WHERE).
INDEXED_STATUSES = ("active", "paused")

# -- SQL (module-level so tests can check each plan) -------------------------

COLUMNS = (
    "id, app_name, user_id, project_id, status, state, metadata, "
    "created_at, last_update_time, terminated_at, archived_at"
)

# The app's and the user's shared state, beside a session row's own.
SCOPED_STATES = (
    "(SELECT a.state FROM app_states AS a WHERE a.app_name = sessions.app_name) AS app_state, "
    "(SELECT u.state FROM user_states AS u WHERE u.app_name = sessions.app_name "
    "AND u.user_id = sessions.user_id) AS user_state"
)
# get_session reads the session row, then its events one row each in seq order,
# in one snapshot. Not one value built in SQL: the events of a long session can
# add up to more than SQLite's largest string (SQLITE_MAX_LENGTH), while each
# one fits. "NULL AS events" puts the key where get_session returns it.
GET_SESSION = (
    "SELECT id, app_name, user_id, project_id, status, NULL AS events, state, metadata, "
    "created_at, last_update_time, terminated_at, archived_at, "
    f"{SCOPED_STATES} FROM sessions WHERE id = ?"
)
# PostgreSQL: the events, joined into one text (up to 1 GB, its largest value),
# with the row in one statement: one round trip, one snapshot without a transaction.
PG_GET_SESSION = GET_SESSION.replace(
    "NULL AS events",
    "(SELECT string_agg(e.event::text, ',' ORDER BY e.seq) FROM session_events AS e "
    "WHERE e.session_id = sessions.id) AS events")
# PostgreSQL's append_event in one statement, a function (sql/postgresql/010):
# if the session is writable, it updates (so locks) its row, merging the own
# state keys, takes the next seq, inserts the event, merges the shared keys
# into their scopes (``||``, as the Python path's dict.update) and writes the
# audit row. It returns the
# session's status (NULL: no such session) and the seq (NULL: nothing written,
# the session is read-only), and the service raises as it would have.
PG_APPEND = (
    "SELECT session_status, event_seq FROM memkit_append_event(:sid, :event::jsonb, "
    ":at::timestamp, :own::jsonb, :app::jsonb, :user::jsonb, :keys::jsonb)"
)
# The shared states of the sessions a listing returned, by (app_name, user_id).
GET_SCOPED = (
    "SELECT (SELECT state FROM app_states WHERE app_name = ?) AS app_state, "
    "(SELECT state FROM user_states WHERE app_name = ? AND user_id = ?) AS user_state"
)
ALL_EVENTS = "SELECT event FROM session_events WHERE session_id = ? ORDER BY seq"
EXISTS = "SELECT 1 FROM sessions WHERE id = ?"
# No row back: the id exists (a concurrent create on PostgreSQL gets here).
INSERT = (
    "INSERT INTO sessions (id, app_name, user_id, project_id, status, state, metadata, "
    "created_at, last_update_time) VALUES (?, ?, ?, ?, 'created', ?, ?, ?, ?) "
    "ON CONFLICT (id) DO NOTHING RETURNING id"
)
GET_STATUS = "SELECT status, app_name, user_id FROM sessions WHERE id = ?"
GET_STATUS_STATE = "SELECT status, state, app_name, user_id FROM sessions WHERE id = ?"
GET_STATE = f"SELECT state, {SCOPED_STATES} FROM sessions WHERE id = ?"
GET_APP_STATE = "SELECT state FROM app_states WHERE app_name = ?"
GET_USER_STATE = "SELECT state FROM user_states WHERE app_name = ? AND user_id = ?"
PUT_APP_STATE = (
    "INSERT INTO app_states (app_name, state, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (app_name) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
)
PUT_USER_STATE = (
    "INSERT INTO user_states (app_name, user_id, state, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (app_name, user_id) DO UPDATE SET state = excluded.state, "
    "updated_at = excluded.updated_at"
)
# The last seq of a session: one seek to the end of its range of the primary
# key, whatever the length of the session (never count(*) or a scan).
LAST_SEQ = "SELECT seq FROM session_events WHERE session_id = ? ORDER BY seq DESC LIMIT 1"
INSERT_EVENT = (
    "INSERT INTO session_events (session_id, seq, event, created_at) VALUES (?, ?, ?, ?)"
)
TOUCH = "UPDATE sessions SET last_update_time = ? WHERE id = ?"
SET_STATE = "UPDATE sessions SET state = ?, last_update_time = ? WHERE id = ?"
SET_STATUS = (
    "UPDATE sessions SET status = ?, last_update_time = ?, "
    "terminated_at = coalesce(?, terminated_at), archived_at = coalesce(?, archived_at) "
    "WHERE id = ?"
)
EVENTS = (
    "SELECT seq, event, created_at FROM session_events "
    "WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?"
)


class _Sql(NamedTuple):
    """The statements that differ between the engines."""

    # The session row a write checks, then changes: on PostgreSQL locked until
    # the commit, so appends to one session take seqs one after the other.
    get_status: str
    get_status_state: str
    # Shared state: SQLite writes the object merged in Python under its write
    # lock; PostgreSQL merges the new keys into the stored object (``||``) in
    # the upsert itself, so concurrent sessions of one app lose no key.
    put_app_state: str
    put_user_state: str
    merges_shared: bool
    # get_session: the row, then its events one row each (SQLite); or the row
    # with its events joined (PostgreSQL).
    get_session: tuple[str, ...]
    # append_event in one statement (None: in Python).
    append: str | None


SQL = {
    "sqlite": _Sql(GET_STATUS, GET_STATUS_STATE, PUT_APP_STATE, PUT_USER_STATE, False,
                   (GET_SESSION, ALL_EVENTS), None),
    "postgresql": _Sql(
        for_update(GET_STATUS),
        for_update(GET_STATUS_STATE),
        PUT_APP_STATE.replace("= excluded.state", "= app_states.state || excluded.state"),
        PUT_USER_STATE.replace("= excluded.state", "= user_states.state || excluded.state"),
        True,
        (PG_GET_SESSION,),
        PG_APPEND,
    ),
}
#: What breaks ties between sessions of the same timestamp in a listing: SQLite's
#: rowid is the indexes' own tie order; PostgreSQL has no rowid, the id is unique.
TIE_BREAKER = {"sqlite": "rowid", "postgresql": "id"}


def order_column(
    project_id: str | None, status: str | None, user_id: str | None, app_name: str | None = None
) -> str:
    """What a listing sorts by: ``last_update_time`` for status active/paused alone."""
    alone = project_id is None and user_id is None and app_name is None
    return "last_update_time" if alone and status in INDEXED_STATUSES else "created_at"


def list_query(
    project_id: str | None = None,
    status: str | None = None,
    user_id: str | None = None,
    *,
    limit: int = 50,
    after: tuple[str, str, int | str] | None = None,
    app_name: str | None = None,
    dialect: str = "sqlite",
) -> tuple[str, list[Any]]:
    """The SQL and parameters ``list_sessions`` runs (public so tests check plans).

    The driving index: ``idx_sessions_project`` for a project, else
    ``idx_sessions_user_created`` for a user (and an app: the app is a
    filter on the user's sessions), both newest ``created_at`` first; for
    status active/paused alone ``idx_sessions_status_updated``, most
    recently updated first. An app alone scans. Created/terminated/archived alone, or no
    filter, has no index to search and scans (see the README).
    ``after`` is a decoded cursor ``(order column, value, tie)``; it pages
    by key, and the ``TIE_BREAKER`` of ``dialect`` (rowid, or id) breaks ties.
    """
    order = order_column(project_id, status, user_id, app_name)
    tie = TIE_BREAKER[dialect]
    terms: list[str] = []
    params: list[Any] = []
    if app_name is not None:
        terms.append("app_name = ?")
        params.append(app_name)
    if project_id is not None:
        terms.append("project_id = ?")
        params.append(project_id)
    if user_id is not None:
        terms.append("user_id = ?")
        params.append(user_id)
    if status is not None:
        if order == "last_update_time":
            # The partial index's own WHERE term, spelled out so the planner
            # can prove the index covers the query.
            terms.append("status IN ('active', 'paused')")
        terms.append("status = ?")
        params.append(status)
    if after is not None:
        _, value, last = after
        # "<=" is the range the index seeks; the OR only sorts out ties.
        terms.append(f"{order} <= ? AND ({order} < ? OR {tie} > ?)")
        params += [value, value, last]
    where = f" WHERE {' AND '.join(terms)}" if terms else ""
    # On SQLite rowid ascending is the index's own tie order: no sort step is added.
    sql = (
        f"SELECT {tie} AS cursor_tie, {COLUMNS} FROM sessions{where} "
        f"ORDER BY {order} DESC, {tie} LIMIT ?"
    )
    return sql, [*params, limit]


class Page(Rows):
    """A page of rows (a plain list) and the cursor of the next page, or None."""

    next_cursor: str | None = None


#: Longest cursor accepted; the ones list_sessions makes are far shorter.
MAX_CURSOR_LENGTH = 4096


def _encode_cursor(order: str, value: str, tie: int | str) -> str:
    raw = json.dumps([order, value, tie], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _decode_cursor(cursor: object, order: str, dialect: str) -> tuple[str, str, int | str]:
    try:
        if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_LENGTH:
            raise TypeError("not a cursor")
        made_for, value, tie = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
        # A forged cursor may hold anything: the value and tie-breaker are bound
        # as SQL parameters, so they must be what the engine can bind.
        require_text(value, "cursor value", max_length=None)
        if TIE_BREAKER[dialect] == "rowid":
            require_int(tie, "cursor rowid")
        else:
            require_text(tie, "cursor id")
    except (ValueError, TypeError, UnicodeError, binascii.Error, RecursionError) as exc:
        raise InvalidInputError(
            f"Invalid cursor: {show(cursor)} (pass the next_cursor of a previous page)"
        ) from exc
    if made_for != order:
        raise InvalidInputError("Invalid cursor: it belongs to a listing with other filters")
    return made_for, value, tie


def _without_temp(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if not k.startswith(TEMP_PREFIX)}


def _split(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The keys of ``state`` (no ``temp:`` ones) by scope: session, app, user."""
    own: dict[str, Any] = {}
    app: dict[str, Any] = {}
    user: dict[str, Any] = {}
    for key, value in state.items():
        scope = app if key.startswith(APP_PREFIX) else user if key.startswith(USER_PREFIX) else own
        scope[key] = value
    return own, app, user


def _merged(row: Row) -> dict[str, Any]:
    """A session's state with its app's and user's shared keys (prefixes kept)."""
    state: dict[str, Any] = {}
    for column in ("app_state", "user_state"):
        text = row.pop(column, None)
        if text is not None:
            state.update(from_json(text))
    own = row["state"]
    state.update(from_json(own) if isinstance(own, str) else own)
    return state


def _put_shared(
    conn: Connection, sql: _Sql, row: Any, app: dict[str, Any], user: dict[str, Any], now: str
) -> None:
    """Apply the ``app:`` and ``user:`` keys of a write to their shared states."""
    merges = sql.merges_shared
    if app:
        state = {} if merges else _stored(conn, GET_APP_STATE, (row["app_name"],))
        state.update(app)
        conn.execute(sql.put_app_state, (row["app_name"], to_json(state, "state"), now))
    if user:
        owner = (row["app_name"], row["user_id"])
        state = {} if merges else _stored(conn, GET_USER_STATE, owner)
        state.update(user)
        conn.execute(sql.put_user_state, (*owner, to_json(state, "state"), now))


def _stored(conn: Connection, query: str, params: tuple[str, ...]) -> dict[str, Any]:
    """A shared state as stored, ``{}`` before its first key."""
    found = conn.execute(query, params).fetchone()
    return {} if found is None else dict(from_json(found[0]))


def _apply(
    conn: Connection, sql: _Sql, session_id: str, row: Any, delta: dict[str, Any], now: str
) -> None:
    """Route each key of ``delta`` to its scope; always touch the session."""
    own, app, user = _split(delta)
    if own:
        state = from_json(row["state"])
        state.update(own)
        conn.execute(SET_STATE, (to_json(state, "state"), now, session_id))
    else:
        conn.execute(TOUCH, (now, session_id))
    _put_shared(conn, sql, row, app, user, now)


def _audit(conn: Connection, action: str, session_id: str, at: str,
           result: str | None = None, **data: Any) -> None:
    audit.record(conn, action, action_data={"session_id": session_id, **data},
                 result=result, at=at)


def _writable_row(conn: Connection, session_id: str, sql: str) -> Any:
    """The session's row by ``sql``; NotFound, or an error if it is read-only."""
    row = LIFECYCLE.current(conn, sql, session_id)
    if row["status"] not in WRITABLE:
        raise _read_only(session_id, row["status"])
    return row


def _read_only(session_id: str, status: str) -> InvalidInputError:
    return InvalidInputError(
        f"Session {session_id} is {status}: its events and state are read-only")


class SessionService:
    """Sessions: ``db.sessions`` or ``SessionService(db)``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.sql = SQL[store.dialect]

    # -- reads ---------------------------------------------------------------

    async def get_session(self, session_id: str) -> Row | None:
        """The session with its events (in order) and state, or None."""
        sid = require_text(session_id, "session_id")

        statements = self.sql.get_session
        found, *events = await self.store.read(
            Statements("get_session", *((sql, (sid,)) for sql in statements), named=True),
            snapshot=len(statements) > 1)
        if not found.rows:
            return None
        session = dict(zip(found.columns, found.rows[0], strict=True))
        session["metadata"] = from_json(session["metadata"])
        session["state"] = _merged(session)
        joined = ",".join(row[0] for row in events[0].rows) if events else session["events"]
        # Each event is valid JSON (CHECK json_valid): one parse of the joined
        # array is ~4x faster than one per event.
        session["events"] = from_json(f"[{joined or ''}]")
        return session

    async def get_events(
        self, session_id: str, *, after_seq: int = 0, limit: int = 1000
    ) -> Rows:
        """Events after ``after_seq`` as ``{seq, event, created_at}``, oldest first.

        For long sessions, a page at a time; ``get_session`` returns them all.
        """
        sid = require_text(session_id, "session_id")
        after = require_int(after_seq, "after_seq", minimum=0)
        count = require_limit(limit)

        def read(conn: Connection) -> Rows:
            LIFECYCLE.current(conn, EXISTS, sid)
            return [decode(r, ("event",)) for r in conn.execute(EVENTS, (sid, after, count))]

        return await self.store.read(read, snapshot=True)

    async def get_state(self, session_id: str, key: str, default: Any = None) -> Any:
        """One state value, or ``default`` (always for ``temp:`` keys, never stored)."""
        sid = require_text(session_id, "session_id")
        name = require_text(key, "state key")
        row = await self.store.read(lambda conn: dict(LIFECYCLE.current(conn, GET_STATE, sid)))
        if name.startswith(TEMP_PREFIX):
            return default
        return _merged(row).get(name, default)

    async def list_sessions(
        self,
        project_id: str | None = None,
        status: str | None = None,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        app_name: str | None = None,
    ) -> Page:
        """Sessions newest first, ``limit`` a page; ``page.next_cursor`` fetches the next.

        Rows have every ``get_session`` key except ``events`` (the state
        merged with the app's and user's, as ``get_session`` returns it). Filtered by
        status active or paused alone, they come most recently updated first
        (a session updated between two pages can then move to an earlier page).
        """
        project = optional_text(project_id, "project_id")
        wanted = None if status is None else LIFECYCLE.check_state(status)
        user = optional_text(user_id, "user_id")
        app = optional_text(app_name, "app_name")
        count = require_limit(limit)
        order = order_column(project, wanted, user, app)
        dialect = self.store.dialect
        after = None if cursor is None else _decode_cursor(cursor, order, dialect)
        # One row more than asked: whether a next page exists, without a count.
        sql, params = list_query(project, wanted, user, limit=count + 1, after=after,
                                 app_name=app, dialect=dialect)

        def read(conn: Connection) -> Page:
            page = Page(decode(r, ("metadata",)) for r in conn.execute(sql, params))
            shared: dict[tuple[str, str], Row] = {}
            for row in page:
                owner = (row["app_name"], row["user_id"])
                if owner not in shared:
                    shared[owner] = decode(conn.execute(GET_SCOPED, (owner[0], *owner)).fetchone())
                row["state"] = _merged({**row, **shared[owner]})
            if len(page) > count:
                del page[count:]
                page.next_cursor = _encode_cursor(order, page[-1][order], page[-1]["cursor_tie"])
            for row in page:
                del row["cursor_tie"]
            return page

        return await self.store.read(read, snapshot=True)

    # -- writes --------------------------------------------------------------

    async def create_session(
        self,
        session_id: str,
        app_name: str,
        user_id: str,
        project_id: str | None = None,
        initial_state: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Row:
        """Create a session in status ``created``; return it as ``get_session`` would."""
        # Each becomes a namespace segment (session:<id>, user:<id>, ...).
        sid = require_segment(session_id, "session_id")
        app = require_segment(app_name, "app_name")
        user = require_segment(user_id, "user_id")
        project = optional_segment(project_id, "project_id")
        state = _without_temp(
            require_object({} if initial_state is None else initial_state, "initial_state")
        )
        meta = require_object({} if metadata is None else metadata, "metadata")
        own, app_keys, user_keys = _split(json.loads(to_json(state, "initial_state")))
        own_json, meta_json = to_json(own, "initial_state"), to_json(meta, "metadata")
        owner = {"app_name": app, "user_id": user}
        sql = self.sql

        def create(conn: Connection) -> tuple[str, dict[str, Any]]:
            # Taken under SQLite's write lock, so audit timestamps follow audit ids.
            now = timestamp()
            inserted = conn.execute(
                INSERT, (sid, app, user, project, own_json, meta_json, now, now)).fetchone()
            if inserted is None:
                raise AlreadyExistsError(f"Session {sid} already exists")
            _put_shared(conn, sql, owner, app_keys, user_keys, now)
            _audit(conn, "session_created", sid, now, "created",
                   app_name=app, user_id=user)
            shared = decode(conn.execute(GET_SCOPED, (app, app, user)).fetchone())
            return now, _merged({**shared, "state": own})

        now, merged = await self.store.write(create)
        return {
            "id": sid, "app_name": app, "user_id": user, "project_id": project,
            "status": "created", "events": [], "state": merged, "metadata": meta,
            "created_at": now, "last_update_time": now, "terminated_at": None,
            "archived_at": None,
        }

    async def append_event(
        self, session_id: str, event: dict[str, Any], state_delta: dict[str, Any] | None = None
    ) -> int:
        """Append ``event`` (a JSON object) and apply ``state_delta``, atomically.

        Returns the event's sequence number (1, 2, ... per session).
        """
        sid = require_text(session_id, "session_id")
        event_json = to_json(require_object(event, "event"), "event")
        delta: dict[str, Any] | None = None
        if state_delta is not None:
            delta = _without_temp(require_object(state_delta, "state_delta"))
            to_json(delta, "state_delta")  # fail before the transaction, naming the argument
        sql = self.sql
        if sql.append is not None:
            return await self._append_in_one(sid, event_json, delta or {})

        def append(conn: Connection) -> int:
            # The state is read only when it changes: its size is not the append's cost.
            row = _writable_row(conn, sid, sql.get_status_state if delta else sql.get_status)
            last = conn.execute(LAST_SEQ, (sid,)).fetchone()
            seq = 1 if last is None else int(last[0]) + 1
            now = timestamp()
            conn.execute(INSERT_EVENT, (sid, seq, event_json, now))
            _apply(conn, sql, sid, row, delta or {}, now)
            _audit(conn, "session_event_appended", sid, now, seq=seq,
                   state_keys=sorted(delta) if delta else [])
            return seq

        return await self.store.write(append)

    async def _append_in_one(self, sid: str, event_json: str, delta: dict[str, Any]) -> int:
        """append_event as ``sql.append``: one statement on PostgreSQL."""
        assert self.sql.append is not None
        own, app, user = _split(delta)
        (appended,) = await self.store.write(Statements(
            "append_event", (self.sql.append, {
                "sid": sid, "event": event_json, "at": timestamp(),
                "own": to_json(own, "state"), "app": to_json(app, "state") if app else None,
                "user": to_json(user, "state") if user else None,
                "keys": to_json(sorted(delta), "state_keys")})))
        status, seq = appended.rows[0]
        if status is None:
            raise LIFECYCLE.not_found(sid)
        if seq is None:
            raise _read_only(sid, status)
        return int(seq)

    async def set_state(self, session_id: str, key: str, value: Any) -> None:
        """Set one state key (a ``temp:`` key is accepted and not stored)."""
        sid = require_text(session_id, "session_id")
        name = require_text(key, "state key")
        value_json = to_json(value, f"state value for {name!r}")
        temporary = name.startswith(TEMP_PREFIX)
        sql = self.sql

        def put(conn: Connection) -> None:
            row = _writable_row(conn, sid, sql.get_status_state)
            if temporary:
                return
            now = timestamp()
            # The stored form, e.g. tuples as lists.
            _apply(conn, sql, sid, row, {name: json.loads(value_json)}, now)
            _audit(conn, "session_state_changed", sid, now, state_keys=[name])

        await self.store.write(put)

    async def update_status(self, session_id: str, status: str) -> None:
        """Move the session to ``status`` if the lifecycle allows it."""
        sid = require_text(session_id, "session_id")
        new = LIFECYCLE.check_state(status)
        get_status = self.sql.get_status

        def move(conn: Connection) -> None:
            old = LIFECYCLE.move(conn, get_status, sid, new)["status"]
            now = timestamp()
            _audit(conn, "session_status_changed", sid, now, new, previous=old)
            conn.execute(SET_STATUS, (
                new, now,
                now if new == "terminated" else None,
                now if new == "archived" else None,
                sid,
            ))

        await self.store.write(move)

    async def terminate_session(self, session_id: str) -> None:
        """``update_status(session_id, "terminated")``."""
        await self.update_status(session_id, "terminated")


# -- reads for the workload tools: counts and the invariant checks over the events --


def count_sessions(conn: Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM sessions").fetchone()[0])


def count_events(conn: Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM session_events").fetchone()[0])


def event_counts(conn: Connection) -> dict[str, int]:
    """Events stored per session (sessions without events left out)."""
    return {r[0]: int(r[1]) for r in conn.execute(
        "SELECT session_id, count(*) FROM session_events GROUP BY session_id")}


def sessions_with_seq_gaps(conn: Connection, limit: int = 5) -> list[Any]:
    """Sessions whose event seqs are not exactly 1..n."""
    return conn.execute(
        "SELECT session_id, count(*), min(seq), max(seq) FROM session_events "
        "GROUP BY session_id HAVING min(seq) != 1 OR max(seq) != count(*) LIMIT ?",
        (limit,)).fetchall()


def torn_counter_sessions(conn: Connection, limit: int = 5) -> list[Any]:
    """Sessions with metadata ``{"counter": true}`` whose state ``n`` is not their event count.

    Such sessions get ``{"n": seq}`` as every event and as its state delta, so
    an event without its state change (or the reverse) shows here.
    """
    # One statement for both engines: ->/->> and CAST read JSON alike on each.
    return conn.execute(
        "SELECT * FROM (SELECT s.id, CAST(s.state ->> 'n' AS INTEGER) AS n, "
        "(SELECT count(*) FROM session_events e WHERE e.session_id = s.id) AS events, "
        "(SELECT count(*) FROM session_events e WHERE e.session_id = s.id "
        " AND CAST(e.event ->> 'n' AS INTEGER) IS DISTINCT FROM e.seq) AS mismatched "
        "FROM sessions s WHERE s.metadata -> 'counter' = 'true') AS c "
        "WHERE coalesce(n, 0) != events OR mismatched != 0 LIMIT ?", (limit,)).fetchall()


def count_by_status(conn: Connection) -> dict[str, int]:
    """How many sessions are in each status, the most common first."""
    sql = "SELECT status, count(*) FROM sessions GROUP BY 1 ORDER BY 2 DESC"
    return {str(status): int(n) for status, n in conn.execute(sql)}
