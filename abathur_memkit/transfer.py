"""Copy a whole memkit database to another engine: ``await copy_database(src, dst)``.

``src`` and ``dst`` are each a SQLite file or a PostgreSQL DSN (``postgresql://…``):
file → PostgreSQL, PostgreSQL → file, file → file, PostgreSQL → PostgreSQL.
Every table is copied row by row with its ids, versions and timestamps as they
are: sessions, events and state, memory versions, audit, tasks, agents,
checkpoints, metrics, documents, chunks, the full-text rows, the search
bookkeeping, and each vector index with its vectors (SQLite's float32 blobs
become pgvector values and back; the approximate structures, vec0 or HNSW,
are rebuilt at the destination). The destination's id sequences are advanced
past the copied ids, so new rows never reuse one.

The source is read in one snapshot; the destination is written in one
transaction, then every table is read back and its row count and checksum
compared with the source's. Nothing is visible at the destination unless all
of that succeeded: a PostgreSQL destination gets its schema and rows in that
one transaction, a SQLite one is built beside the target file and renamed
over it. The destination must hold no rows (an empty ``memkit init`` database
is fine) unless ``overwrite=True``, which replaces memkit's tables there.

Checksums compare values as the engines mean them: a timestamp in memkit's
layout whatever its precision digits, a JSON object or array whatever its
key order and spacing (PostgreSQL's jsonb normalises both), a vector as its
float32 bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .database import is_dsn
from .engines.sqlite import files
from .engines.sqlite import schema as sqlite_schema
from .engines.sqlite.driver import Driver, load_extension, select_driver
from .errors import DatabaseFileError, InvalidInputError, MemkitError, SchemaError
from .inputs import require_bool, require_int, show

__all__ = ["CopyResult", "TableCopy", "copy_database", "describe_target"]

#: Called after each batch with (rows copied so far, rows to copy).
Progress = Callable[[int, int], object]

Row = Sequence[Any]

#: The tables memkit fills, parents before children, each with the order it is read in.
BASE_TABLES: tuple[tuple[str, str], ...] = (
    ("sessions", "id"),
    ("app_states", "app_name"),
    ("user_states", "app_name, user_id"),
    ("session_events", "session_id, seq"),
    ("memory_entries", "id"),
    ("document_index", "id"),
    ("tasks", "id"),
    ("agents", "id"),
    ("audit", "id"),
    ("checkpoints", "task_id, iteration"),
    ("state", "id"),
    ("metrics", "id"),
    ("document_chunks", "id"),
    ("memory_search_items", "entry_id"),
    ("memory_fts", "rowid"),
)

#: Tables the destination's triggers fill as base rows arrive: emptied, then copied
#: as the source holds them (a drained search queue stays drained).
DERIVED_TABLES: tuple[tuple[str, str], ...] = (
    ("memory_heads", "namespace, key"),
    ("memory_namespaces", "namespace"),
    ("memory_search_queue", "namespace, key"),
    ("vector_garbage", "index_name, id"),
)

#: The registry of vector indexes; its backend and settings name the engine's own
#: structures, so only these columns are carried over and compared.
REGISTRY = "vector_indexes"
REGISTRY_COLUMNS = ("name", "model", "dimensions", "created_at")

# Rebuilt by the destination itself: SQLite's chunk full-text index (filled by a
# trigger), the schema bookkeeping of each engine.
_REBUILT = frozenset({"document_chunks_fts", "memkit_schema", "sqlite_sequence", "sqlite_stat1",
                      "sqlite_stat4"})

# FTS5's columns hide the rowid that keys the row; PostgreSQL's table names it.
_EXPLICIT_COLUMNS = {"memory_fts": ["rowid", "key", "text"]}

DEFAULT_BATCH = 2000

_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?$")
_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class TableCopy:
    """One table as copied: rows and checksum, equal at both ends."""

    table: str
    rows: int
    checksum: str


@dataclass
class CopyResult:
    """What ``copy_database`` copied (passwords left out of the two names)."""

    source: str
    destination: str
    tables: list[TableCopy] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "destination": self.destination, "rows": self.rows,
                "seconds": round(self.seconds, 3),
                "rows_per_second": round(self.rows_per_second),
                "tables": [{"table": t.table, "rows": t.rows, "checksum": t.checksum,
                            "verified": True} for t in self.tables]}


async def copy_database(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    vector_backend: str | None = None,
    progress: Progress | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> CopyResult:
    """Copy every table of memkit database ``source`` to ``destination``, verified.

    Each is a SQLite file or a PostgreSQL DSN. ``vector_backend`` ("vec" or
    "vss") picks a SQLite destination's vector backend (default: the source's,
    else "vec"). ``progress(done, total)`` is called after each batch of rows,
    from the thread that copies; if it raises, the copy stops and nothing is
    left at the destination. Raises ``MemkitError`` (``InvalidInputError`` for a
    refused destination) with the destination as it was.
    """
    src, dst = _endpoint(source, "source"), _endpoint(destination, "destination")
    overwrite = require_bool(overwrite, "overwrite")
    batch = require_int(batch_size, "batch_size", minimum=1)
    if vector_backend is not None:
        from .inputs import require_vector_backend

        vector_backend = require_vector_backend(vector_backend)
        if is_dsn(dst):
            raise InvalidInputError("vector_backend picks a SQLite destination's backend; "
                                    "PostgreSQL keeps vectors in pgvector")
    if _same_database(src, dst):
        raise InvalidInputError(f"the destination is the source itself: {describe_target(dst)}")
    job = _Job(src, dst, overwrite, vector_backend, progress, batch)
    future = asyncio.get_running_loop().run_in_executor(None, job.run)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        job.stop.set()  # the copying thread stops at its next batch and rolls back
        await asyncio.wait([future])
        raise


def describe_target(target: str) -> str:
    """``target`` for messages: a path, or a DSN without its password."""
    if not is_dsn(target):
        return target
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(target)
    params.pop("password", None)
    return make_conninfo("", **params)


def _same_database(src: str, dst: str) -> bool:
    if is_dsn(src) and is_dsn(dst):
        from psycopg.conninfo import conninfo_to_dict

        where = ("host", "port", "dbname")
        a, b = conninfo_to_dict(src), conninfo_to_dict(dst)
        return all(str(a.get(k, "")) == str(b.get(k, "")) for k in where)
    if is_dsn(src) or is_dsn(dst):
        return False
    return Path(dst).exists() and Path(src).exists() and os.path.samefile(src, dst)


def _endpoint(value: object, what: str) -> str:
    if isinstance(value, bytes) or not isinstance(value, str | os.PathLike):
        raise InvalidInputError(f"Invalid {what}: expected a file path or a PostgreSQL DSN, "
                                f"got {show(value)}")
    text = os.fspath(value)
    if not text or "\x00" in text:
        raise InvalidInputError(f"Invalid {what}: {show(text)}")
    if is_dsn(text):
        from .extras import require_extra

        require_extra("postgres", "Copying to or from PostgreSQL")
    return text


# -- the copy, engine-neutral ------------------------------------------------------


@dataclass
class _Copied:
    table: str
    columns: list[str]
    order: str
    rows: int
    checksum: int


class _Job:
    """One copy, run in a worker thread: open both ends, copy, verify, commit."""

    def __init__(self, source: str, destination: str, overwrite: bool,
                 vector_backend: str | None, progress: Progress | None, batch: int) -> None:
        self.source, self.destination = source, destination
        self.overwrite = overwrite
        self.vector_backend = vector_backend
        self.progress = progress
        self.batch = batch
        self.stop = threading.Event()
        self.done = 0
        self.total = 0

    def run(self) -> CopyResult:
        started = time.perf_counter()
        result = CopyResult(describe_target(self.source), describe_target(self.destination))
        with _open_source(self.source) as src:
            if is_dsn(self.destination):
                copied = _into_postgresql(self.destination, self.overwrite,
                                          lambda dst: self.copy(src, dst))
            else:
                copied = _into_sqlite_file(self.destination, self.overwrite,
                                           lambda dst: self.copy(src, dst))
        result.tables = [TableCopy(c.table, c.rows, f"{c.checksum:016x}") for c in copied]
        result.seconds = time.perf_counter() - started
        return result

    def copy(self, src: _Side, dst: _Side) -> list[_Copied]:
        registry = [row for rows in src.select(REGISTRY, [*REGISTRY_COLUMNS, "backend",
                                                          "settings"], "name", self.batch)
                    for row in rows]
        vector_tables = [f"{row[0]}_vectors" for row in registry]
        _check_tables(src, [row[0] for row in registry])
        plan = [*BASE_TABLES, (REGISTRY, "name"), *((t, "id") for t in vector_tables),
                *DERIVED_TABLES]
        self.total = sum(src.count(table) for table, _ in plan)
        copied = [self.table(src, dst, table, order) for table, order in BASE_TABLES]
        copied.append(self.registry(src, dst, registry))
        copied += [self.vectors(src, dst, row) for row in registry]
        for table, order in DERIVED_TABLES:
            dst.clear(table)
            copied.append(self.table(src, dst, table, order))
        dst.set_high_water(src.high_water())
        for item in copied:
            self.verify(dst, item)
        return copied

    def table(self, src: _Side, dst: _Side, table: str, order: str) -> _Copied:
        columns = _columns(src, dst, table)
        digest = _Digest()
        for rows in src.select(table, columns, order, self.batch):
            dst.insert(table, columns, rows)
            digest.add(rows)
            self.advance(len(rows))
        return _Copied(table, columns, order, digest.rows, digest.total)

    def registry(self, src: _Side, dst: _Side, rows: list[Row]) -> _Copied:
        """Each vector index's registry row, on the destination's backend, and its table."""
        digest = _Digest()
        for name, model, dimensions, created_at, source_kind, settings in rows:
            kind, settings = dst.vector_kind(src.dialect, source_kind, settings,
                                             self.vector_backend)
            dst.add_vector_index(name, kind, model, int(dimensions), settings, created_at)
        digest.add([row[:len(REGISTRY_COLUMNS)] for row in rows])
        self.advance(len(rows))
        return _Copied(REGISTRY, list(REGISTRY_COLUMNS), "name", digest.rows, digest.total)

    def vectors(self, src: _Side, dst: _Side, registry_row: Row) -> _Copied:
        name = registry_row[0]
        table = f"{name}_vectors"
        digest = _Digest()
        for rows in src.select(table, ["id", "embedding"], "id", self.batch):
            dst.insert_vectors(name, rows)
            digest.add(rows)
            self.advance(len(rows))
        return _Copied(table, ["id", "embedding"], "id", digest.rows, digest.total)

    def verify(self, dst: _Side, item: _Copied) -> None:
        digest = _Digest()
        for rows in dst.select(item.table, item.columns, item.order, self.batch):
            digest.add(rows)
        if (digest.rows, digest.total) != (item.rows, item.checksum):
            raise MemkitError(
                f"table {item.table} did not copy faithfully: {item.rows} rows (checksum "
                f"{item.checksum:016x}) read, {digest.rows} (checksum {digest.total:016x}) "
                "written; nothing was kept at the destination")

    def advance(self, rows: int) -> None:
        if self.stop.is_set():
            raise MemkitError("the copy was cancelled; nothing was kept at the destination")
        self.done += rows
        if self.progress is not None:
            self.progress(self.done, self.total)


def _columns(src: _Side, dst: _Side, table: str) -> list[str]:
    """The columns to copy: the destination's, which the source must have too."""
    if table in _EXPLICIT_COLUMNS:
        return list(_EXPLICIT_COLUMNS[table])
    wanted, found = dst.columns(table), src.columns(table)
    if set(wanted) != set(found):
        missing = sorted(set(wanted) - set(found))
        extra = sorted(set(found) - set(wanted))
        raise SchemaError(f"table {table} has other columns at the source (missing: "
                          f"{', '.join(missing) or 'none'}; extra: {', '.join(extra) or 'none'})")
    return wanted


def _check_tables(src: _Side, indexes: list[str]) -> None:
    """Refuse a source with a table this copy would leave behind."""
    known = {t for t, _ in (*BASE_TABLES, *DERIVED_TABLES)} | {REGISTRY} | _REBUILT
    stray = sorted(
        t for t in src.tables()
        if t not in known and not any(t.startswith(f"{name}_") for name in indexes)
    )
    if stray:
        raise InvalidInputError(
            f"{describe_target(src.where)} holds tables that are not memkit's: "
            f"{', '.join(stray)}; memkit copy copies memkit databases only")


class _Digest:
    """Row count and an order-free checksum (sum of row hashes) of rows as the engines mean them."""

    def __init__(self) -> None:
        self.rows = 0
        self.total = 0

    def add(self, rows: Sequence[Row]) -> None:
        for row in rows:
            text = repr(tuple(_canonical(value) for value in row)).encode()
            hashed = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")
            self.total = (self.total + hashed) & _MASK
        self.rows += len(rows)


def _canonical(value: Any) -> Any:
    """A value as both engines mean it (see the module's docstring)."""
    if isinstance(value, bool):
        return int(value)
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return _canonical_text(value)
    if hasattr(value, "to_numpy") or hasattr(value, "astype"):  # a pgvector value
        return bytes(_vector(value).tobytes())
    return repr(value)


def _canonical_text(text: str) -> str:
    match = _TIMESTAMP.match(text)
    if match is not None:
        day, seconds, fraction = match.groups()
        return f"{day} {seconds}.{(fraction or '').ljust(6, '0')}"
    if text[:1] in ("{", "["):
        try:
            return json.dumps(json.loads(text), sort_keys=True, ensure_ascii=False,
                              separators=(",", ":"))
        except ValueError:
            return text
    return text


# -- the two engines, as source and destination ----------------------------------


class _Side:
    """One end of a copy: a connection in a transaction, and what the copy asks of it."""

    dialect: str
    where: str

    def tables(self) -> set[str]:
        raise NotImplementedError

    def columns(self, table: str) -> list[str]:
        raise NotImplementedError

    def count(self, table: str) -> int:
        raise NotImplementedError

    def select(self, table: str, columns: Sequence[str], order: str,
               batch: int) -> Iterator[list[Row]]:
        raise NotImplementedError

    def high_water(self) -> dict[str, int]:
        """The highest id each id sequence has handed out."""
        raise NotImplementedError

    # destination only
    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        raise NotImplementedError

    def clear(self, table: str) -> None:
        raise NotImplementedError

    def set_high_water(self, marks: dict[str, int]) -> None:
        raise NotImplementedError

    def vector_kind(self, source_dialect: str, source_kind: str, settings: str,
                    wanted: str | None) -> tuple[str, str]:
        raise NotImplementedError

    def add_vector_index(self, name: str, kind: str, model: str, dimensions: int,
                         settings: str, created_at: str) -> None:
        raise NotImplementedError

    def insert_vectors(self, name: str, rows: Sequence[Row]) -> None:
        raise NotImplementedError


def _quoted(columns: Sequence[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


class _SQLite(_Side):
    dialect = "sqlite"

    def __init__(self, conn: Any, where: str) -> None:
        self.conn = conn
        self.where = where
        self.backends: dict[str, Any] = {}

    def tables(self) -> set[str]:
        entries = self.conn.execute(
            "SELECT name, sql LIKE 'CREATE VIRTUAL%' FROM sqlite_master WHERE type = 'table'"
        ).fetchall()
        virtual = [name for name, is_virtual in entries if is_virtual]
        # A virtual table's shadow tables are its own business.
        return {name for name, _ in entries
                if not any(name.startswith(f"{v}_") for v in virtual)}

    def columns(self, table: str) -> list[str]:
        return [row[1] for row in self.conn.execute(f'PRAGMA table_info("{table}")')]

    def count(self, table: str) -> int:
        return int(self.conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])

    def select(self, table: str, columns: Sequence[str], order: str,
               batch: int) -> Iterator[list[Row]]:
        cursor = self.conn.execute(
            f'SELECT {_quoted(columns)} FROM "{table}" ORDER BY {order}')
        while rows := cursor.fetchmany(batch):
            yield [tuple(row) for row in rows]

    def high_water(self) -> dict[str, int]:
        return {str(name): int(seq) for name, seq in
                self.conn.execute("SELECT name, seq FROM sqlite_sequence")}

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        marks = ", ".join("?" for _ in columns)
        self.conn.executemany(f'INSERT INTO "{table}" ({_quoted(columns)}) VALUES ({marks})',
                              rows)

    def clear(self, table: str) -> None:
        self.conn.execute(f'DELETE FROM "{table}"')

    def set_high_water(self, marks: dict[str, int]) -> None:
        # Inserting explicit ids moved each sequence to the highest copied id;
        # a source whose newest rows were deleted had handed out more.
        for table, seq in marks.items():
            changed = self.conn.execute(
                "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (seq, table)
            ).rowcount
            if not changed and seq > 0:
                self.conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)",
                                  (table, seq))

    def vector_kind(self, source_dialect: str, source_kind: str, settings: str,
                    wanted: str | None) -> tuple[str, str]:
        if source_dialect == "sqlite" and wanted in (None, source_kind):
            return source_kind, settings
        # No settings: the backend's defaults, as a new index of that kind has.
        return wanted or "vec", "{}"

    def add_vector_index(self, name: str, kind: str, model: str, dimensions: int,
                         settings: str, created_at: str) -> None:
        from .search.backends import make_backend

        load_extension(self.conn, kind)
        backend = make_backend(kind, name, dimensions, **json.loads(settings))
        backend.create(self.conn)
        self.conn.execute(
            "INSERT INTO vector_indexes (name, backend, model, dimensions, settings, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)", (name, kind, model, dimensions, settings, created_at))
        self.backends[name] = backend

    def insert_vectors(self, name: str, rows: Sequence[Row]) -> None:
        import numpy as np

        backend = self.backends[name]
        vectors = np.stack([_vector(embedding) for _, embedding in rows])
        backend.upsert(self.conn, [int(i) for i, _ in rows], vectors)


def _vector(value: Any) -> Any:
    """A stored vector as a float32 array: SQLite's blob or pgvector's value."""
    import numpy as np

    if isinstance(value, bytes | memoryview):
        return np.frombuffer(value, dtype=np.float32)
    if hasattr(value, "to_numpy"):  # pgvector's Vector
        value = value.to_numpy()
    return np.asarray(value, dtype="<f4")


class _PostgreSQL(_Side):
    dialect = "postgresql"

    def __init__(self, raw: Any, where: str) -> None:
        self.raw = raw
        self.where = where
        self.cursors = 0

    def tables(self) -> set[str]:
        return {row[0] for row in self.raw.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")}

    def columns(self, table: str) -> list[str]:
        # A generated column (the tsvector of the full-text tables) is computed here.
        return [row[0] for row in self.raw.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = %s AND is_generated = 'NEVER' "
            "ORDER BY ordinal_position", (table,))]

    def count(self, table: str) -> int:
        return int(self.raw.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])

    def select(self, table: str, columns: Sequence[str], order: str,
               batch: int) -> Iterator[list[Row]]:
        from psycopg.rows import tuple_row

        self.cursors += 1  # a server-side cursor: the table is never all in memory
        with self.raw.cursor(name=f"memkit_copy_{self.cursors}", row_factory=tuple_row) as cur:
            cur.itersize = batch
            cur.execute(f'SELECT {_quoted(columns)} FROM "{table}" ORDER BY {order}')
            while rows := cur.fetchmany(batch):
                yield rows

    def _identity_tables(self) -> list[str]:
        return [row[0] for row in self.raw.execute(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND column_name = 'id' AND is_identity = 'YES'")]

    def high_water(self) -> dict[str, int]:
        marks = {}
        for table in self._identity_tables():
            sequence = self.raw.execute("SELECT pg_get_serial_sequence(%s, 'id')",
                                        (table,)).fetchone()[0]
            value, called = self.raw.execute(
                f"SELECT last_value, is_called FROM {sequence}").fetchone()
            if called:
                marks[table] = int(value)
        return marks

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        with self.raw.cursor().copy(
                f'COPY "{table}" ({_quoted(columns)}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)

    def clear(self, table: str) -> None:
        self.raw.execute(f'DELETE FROM "{table}"')

    def set_high_water(self, marks: dict[str, int]) -> None:
        for table in self._identity_tables():
            highest = self.raw.execute(f'SELECT coalesce(max(id), 0) FROM "{table}"').fetchone()[0]
            value = max(int(highest), marks.get(table, 0))
            # setval(…, 1, false): the next id is 1, as in a new table.
            called = "true" if value > 0 else "false"
            self.raw.execute(f"SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, {called})",
                             (table, max(value, 1)))

    def vector_kind(self, source_dialect: str, source_kind: str, settings: str,
                    wanted: str | None) -> tuple[str, str]:
        if source_dialect == "postgresql":
            return source_kind, settings
        return "pgvector", "{}"

    def add_vector_index(self, name: str, kind: str, model: str, dimensions: int,
                         settings: str, created_at: str) -> None:
        from .engines.postgresql import schema as pg_schema

        pg_schema.create_vector_table(self.raw, name, dimensions)
        self.raw.execute(
            "INSERT INTO vector_indexes (name, backend, model, dimensions, settings, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (name, kind, model, dimensions, settings, created_at))

    def insert_vectors(self, name: str, rows: Sequence[Row]) -> None:
        from .engines.postgresql import schema as pg_schema

        self.insert(pg_schema.vector_table(name), ["id", "embedding"],
                    [(i, _vector(embedding)) for i, embedding in rows])


# -- opening the two ends ----------------------------------------------------------


@contextlib.contextmanager
def _open_source(source: str) -> Iterator[_Side]:
    """The source in one read snapshot, closed on exit."""
    if is_dsn(source):
        raw = _pg_connect(source)
        try:
            raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            _require_current_pg(raw, source)
            yield _PostgreSQL(raw, source)
        finally:
            raw.close()
        return
    driver = select_driver()
    files.require_current(source, driver)
    conn = files.connect_read_only(driver, source)
    try:
        conn.execute("BEGIN")  # one read transaction: one snapshot of every table
        yield _SQLite(conn, source)
    finally:
        conn.close()


def _pg_connect(dsn: str) -> Any:
    import psycopg
    from pgvector.psycopg import register_vector

    from .engines.postgresql.connection import configure

    try:
        raw = psycopg.connect(dsn, autocommit=True)
    except psycopg.Error as exc:
        raise MemkitError(f"cannot connect to {describe_target(dsn)}: {exc}") from exc
    configure(raw)
    raw.execute("SET TIME ZONE 'UTC'; SET DateStyle = 'ISO, YMD'")
    row = raw.execute("SELECT to_regtype('vector') IS NOT NULL").fetchone()
    if row is not None and row[0]:
        register_vector(raw)
    return raw


def _require_current_pg(raw: Any, dsn: str) -> None:
    from .engines.postgresql import schema as pg_schema

    found = pg_schema.current_version(raw)
    if found != pg_schema.schema_version():
        raise SchemaError(f"{describe_target(dsn)} is not an up-to-date memkit database "
                          f"(schema version {found}, expected {pg_schema.schema_version()})")


def _into_postgresql(dsn: str, overwrite: bool,
                     fill: Callable[[_Side], list[_Copied]]) -> list[_Copied]:
    """Run ``fill`` on ``dsn`` in one transaction, with the schema made in it too."""
    import psycopg
    from pgvector.psycopg import register_vector

    from .engines.postgresql import schema as pg_schema

    raw = _pg_connect(dsn)
    try:
        raw.execute("BEGIN READ WRITE")
        try:
            # The migration lock, held to COMMIT, keeps memkit processes that
            # open this database waiting until the copy is whole.
            raw.execute("SELECT pg_advisory_xact_lock(%s)", (pg_schema.MIGRATION_LOCK,))
            _make_room(raw, dsn, overwrite)
            pg_schema.apply_pending(raw)
            register_vector(raw)
            side = _PostgreSQL(raw, dsn)
            tables = sorted(side.tables())
            for table in tables:
                # memkit's triggers would build the derived tables row by row, and
                # emptying them again costs a scan of the dead rows per row deleted:
                # they are copied as they are instead. Foreign keys stay checked.
                raw.execute(f'ALTER TABLE "{table}" DISABLE TRIGGER USER')
            copied = fill(side)
            for table in tables:
                raw.execute(f'ALTER TABLE "{table}" ENABLE TRIGGER USER')
            raw.execute("COMMIT")
        except BaseException:
            if not raw.closed:
                raw.execute("ROLLBACK")
            raise
    except psycopg.Error as exc:
        raise MemkitError(f"copy to {describe_target(dsn)} failed, nothing was kept: "
                          f"{exc}") from exc
    finally:
        raw.close()
    return copied


def _make_room(raw: Any, dsn: str, overwrite: bool) -> None:
    """Refuse a destination that holds rows; with ``overwrite``, drop memkit's tables first."""
    from .engines.postgresql import schema as pg_schema

    tables = _PostgreSQL(raw, dsn).tables()
    if overwrite:
        ours = {*pg_schema.tables(), "memkit_schema"}
        if "vector_indexes" in tables:
            ours |= {f"{r[0]}_vectors" for r in raw.execute("SELECT name FROM vector_indexes")}
        for table in sorted(tables & ours):
            raw.execute(f'DROP TABLE "{table}" CASCADE')
        tables -= ours
    for table in sorted(tables - {"memkit_schema"}):
        if raw.execute(f'SELECT EXISTS (SELECT 1 FROM "{table}")').fetchone()[0]:
            hint = ("" if overwrite else
                    " (pass --overwrite, or overwrite=True, to replace memkit's tables there)")
            raise InvalidInputError(
                f"the destination {describe_target(dsn)} is not empty: table {table} has "
                f"rows; copy into a new database{hint}")


def _into_sqlite_file(path: str, overwrite: bool,
                      fill: Callable[[_Side], list[_Copied]]) -> list[_Copied]:
    """Build the copy beside ``path`` with ``fill``, check it, and rename it into place."""
    driver = select_driver()
    target = Path(path)
    if target.exists() and target.is_file() and target.stat().st_size == 0:
        overwrite = True  # an empty file (e.g. from mktemp) is a name reserved for it
    files.check_destination(target, overwrite, driver, "Copy")
    copied: list[_Copied] = []

    def build(work: Path) -> Path:
        made = work / "copy.db"
        copied.extend(_fill_sqlite(driver, made, fill))
        files.check_copy(driver, made, f"the copy to {path}")
        return made

    files.write_atomically(target, build)
    return copied


def _fill_sqlite(driver: Driver, made: Path,
                 fill: Callable[[_Side], list[_Copied]]) -> list[_Copied]:
    conn = driver.connect(str(made))
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        sqlite_schema.migrate(conn, lambda: driver.connect(":memory:"))
        conn.execute("BEGIN IMMEDIATE")
        # Checked at COMMIT: tasks name parent tasks that may come later in id order.
        conn.execute("PRAGMA defer_foreign_keys = ON")
        try:
            copied = fill(_SQLite(conn, str(made)))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except driver.module.Error as exc:
        raise DatabaseFileError(f"the copy failed, nothing was kept: {exc}") from exc
    finally:
        conn.close()
    return copied
