"""Vector backends: where embeddings live and how nearest neighbours are found.

Three backends behind one interface, chosen by ``Database(vector_backend=...)``:
two SQLite extensions, and pgvector on PostgreSQL.

``vec`` (default) — sqlite-vec, pip only. Every float32 vector is kept in a
plain table (``<name>_vectors``) and, 1 bit per dimension, in a ``vec0``
table partitioned into shards (``<name>_vec``). A search asks ``vec0`` for
the nearest bit codes by Hamming distance in every shard at once (an ``IN``
on the partition key runs one KNN per shard, so each shard returns its own
top candidates), then rescores those candidates exactly (cosine of the float
vectors) and keeps the best ``k``. sqlite-vec's KNN costs grow with n·k, so
asking 8 shards for 20 each is cheaper than asking one table for 160.
Measured at 100k × 768: see ``memkit bench search``.

``vss`` — sqlite-vss (faiss), the seeds' choice; needs libblas3, liblapack3
and libgomp1. One ``vss0`` table holds its whole faiss index as one blob, and
inserts into one table slow down with the number already pending in the
transaction (5k/10k/20k vectors took 1.1 s / 5.8 s / 116 s), so vectors go
into shards of at most ``shard_size`` rows (``<name>_vss_<n>``), searched
together and merged. Each shard is an exact (flat) index.

Both rescore candidates from ``<name>_vectors``, so a search returns exact
cosine similarities and only ids that are still stored.

``pgvector`` — PostgreSQL (the default there). One table ``<name>_vectors``
of ``vector(d)`` with an HNSW index (cosine, m = 16, ef_construction = 64).
A search is one ``ORDER BY embedding <=> query LIMIT k`` at ``hnsw.ef_search``
(the index's ``ef_search`` setting, at least the candidates wanted); pgvector
returns the exact cosine distance of each hit, so there is nothing to rescore.

Every method here runs on a connection's thread (inside ``Database.read`` /
``Database.write``) and takes the DB-API connection.
"""

from __future__ import annotations

import json
import math
import re
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..embeddings.base import Vectors, check_vectors
from ..engines.interface import Connection
from ..errors import ExtensionError, InvalidInputError
from ..inputs import VECTOR_BACKENDS, require_vector_backend

__all__ = [
    "BACKENDS",
    "IdFilter",
    "Neighbour",
    "PgVectorBackend",
    "SQLiteBackend",
    "VecBackend",
    "VectorBackend",
    "VssBackend",
    "backend_unavailable",
    "make_backend",
]

#: Backend names, as ``Database(vector_backend=...)`` takes them.
BACKENDS = VECTOR_BACKENDS

#: sqlite-vec refuses a KNN ``k`` above this.
VEC_MAX_K = 4096
#: pgvector's largest ``hnsw.ef_search``.
PG_MAX_EF_SEARCH = 1000

# The hnsw.ef_search each psycopg connection was left with by a search run
# outside a transaction (a rollback cannot undo it there): a search sets it
# only when it differs, which saves a round trip per search.
_EF_SEARCH: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")

# sqlite-vss reads a blob that starts with b"v\x01" as its own vector format
# (header, then float32s) and any other blob as bare float32s. A bare vector
# whose first float happens to start with those two bytes (1 in 65,536) is
# then misread two bytes short, and faiss's flat buffer shifts: every vector
# after it in that table is garbage. Always sending the header avoids that.
_VSS_HEADER = b"v\x01"

#: (id, cosine similarity), best first.
Neighbour = tuple[int, float]


@dataclass(frozen=True)
class IdFilter:
    """Restricts a search to the ids a query selects.

    ``select`` is a ``SELECT`` of one id column with a ``WHERE`` clause (use
    ``WHERE 1`` for none); ``column`` names that id column as the ``WHERE``
    may refer to it (``"c.id"``); ``params`` are the query's parameters.
    """

    select: str
    column: str
    params: tuple[Any, ...] = ()

    def keep(self, conn: Connection, ids: Sequence[int], dialect: str = "sqlite") -> list[int]:
        """The ids of ``ids`` that pass, in the order given."""
        if not ids:
            return []
        listed, param = id_list(dialect, ids)
        sql = f"{self.select} AND {self.column} IN ({listed})"
        allowed = {row[0] for row in conn.execute(sql, (*self.params, param))}
        return [i for i in ids if i in allowed]


def id_list(dialect: str, ids: Sequence[int]) -> tuple[str, Any]:
    """A subquery of the ids ``ids`` and its one parameter, for ``IN (...)``.

    SQLite reads them from a JSON array (one parameter however many ids);
    PostgreSQL from a ``bigint[]``.
    """
    if dialect == "postgresql":
        return "SELECT unnest(?::bigint[])", [int(i) for i in ids]
    return "SELECT value FROM json_each(?)", json.dumps([int(i) for i in ids])


class VectorBackend(ABC):
    """One vector index: ids (integers chosen by the caller) to unit vectors.

    Vectors must be L2-normalised (every embedder here returns them so): the
    similarity is their dot product, and sqlite-vss ranks by L2 distance,
    which orders unit vectors the same way.

    ``name`` prefixes every table the index owns; ``dimensions`` is fixed for
    its life (a new model with another size means a new index).
    """

    kind: ClassVar[str]
    #: Candidates asked of the approximate stage per result wanted.
    oversample: int
    #: How many more candidates a filtered search asks for.
    filter_factor: ClassVar[int] = 4

    def __init__(self, name: str, dimensions: int) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidInputError(f"Invalid vector index name: {name!r}")
        if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
            raise InvalidInputError(f"dimensions must be a positive int, got {dimensions!r}")
        self.name = name
        self.dimensions = dimensions
        self.store = f"{name}_vectors"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dimensions={self.dimensions})"

    # -- lifecycle -------------------------------------------------------------

    @abstractmethod
    def create(self, conn: Connection) -> None:
        """Create the index's tables if missing."""

    @abstractmethod
    def drop(self, conn: Connection) -> None:
        """Drop every table of the index."""

    # -- writes ----------------------------------------------------------------

    def upsert(self, conn: Connection, ids: Sequence[int], vectors: Vectors) -> None:
        """Store ``vectors[i]`` under ``ids[i]``, replacing what an id had."""
        ids = _check_ids(ids)
        vectors = check_vectors(vectors, self.dimensions, what="vectors")
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise InvalidInputError(
                f"{len(ids)} ids but vectors of shape {vectors.shape}: one vector per id"
            )
        if not ids:
            return
        if len(set(ids)) != len(ids):
            raise InvalidInputError("ids must be unique within one upsert")
        norms = np.linalg.norm(vectors, axis=1)
        if not np.allclose(norms, 1.0, atol=1e-3):
            worst = float(norms[np.argmax(np.abs(norms - 1.0))])
            raise InvalidInputError(
                f"vectors must be L2-normalised (cosine = dot product); one has norm {worst:.4g}"
            )
        self._write(conn, ids, vectors)

    @abstractmethod
    def _write(self, conn: Connection, ids: list[int], vectors: Vectors) -> None:
        """Store checked, unique ids and their unit vectors."""

    @abstractmethod
    def delete(self, conn: Connection, ids: Iterable[int]) -> int:
        """Remove these ids (unknown ones are ignored); return how many were stored."""

    # -- reads -----------------------------------------------------------------

    @abstractmethod
    def count(self, conn: Connection) -> int:
        """How many vectors the index holds."""

    def get(self, conn: Connection, ids: Sequence[int]) -> dict[int, Vectors]:
        """The stored vectors of these ids (missing ids are left out)."""
        return dict(self._load(conn, _check_ids(ids)))

    @abstractmethod
    def _load(self, conn: Connection, ids: Sequence[int]) -> list[tuple[int, Vectors]]: ...

    def search(
        self,
        conn: Connection,
        query: Vectors,
        k: int,
        *,
        id_filter: IdFilter | None = None,
    ) -> list[Neighbour]:
        """The ``k`` nearest ids to ``query`` by cosine, best first (approximate).

        With ``id_filter`` only ids it selects are returned; when the
        approximate stage finds fewer than ``k`` of them, the search falls back
        to an exact scan of the filtered ids.
        """
        q = self._check_query(query)
        k = _check_k(k)
        wanted = k if id_filter is None else k * self.filter_factor
        hits = self._nearest(conn, q, wanted, id_filter)[:k]
        if id_filter is not None and len(hits) < k:
            return self.exact(conn, q, k, id_filter=id_filter)
        return hits

    @abstractmethod
    def _nearest(
        self, conn: Connection, query: Vectors, wanted: int, id_filter: IdFilter | None
    ) -> list[Neighbour]:
        """About the ``wanted`` nearest ids (only those ``id_filter`` passes), best first."""

    @abstractmethod
    def exact(
        self, conn: Connection, query: Vectors, k: int, *, id_filter: IdFilter | None = None
    ) -> list[Neighbour]:
        """The true ``k`` nearest ids: a scan of every stored (or filtered) vector."""

    def _check_query(self, query: Vectors) -> Vectors:
        q = check_vectors(query, self.dimensions, what="query vector")
        if q.ndim != 1:
            raise InvalidInputError(f"query vector must be 1-D, got shape {q.shape}")
        return q


class SQLiteBackend(VectorBackend):
    """The SQLite backends' shared part: every float vector in a plain table
    (``<name>_vectors``, with its shard), candidates from an extension's
    table, rescored exactly from the plain one."""

    def create(self, conn: Connection) -> None:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.store} ("
            "id INTEGER PRIMARY KEY, shard INTEGER NOT NULL, embedding BLOB NOT NULL)"
        )
        self._create(conn)

    def drop(self, conn: Connection) -> None:
        self._drop(conn)
        conn.execute(f"DROP TABLE IF EXISTS {self.store}")

    @abstractmethod
    def _create(self, conn: Connection) -> None: ...

    @abstractmethod
    def _drop(self, conn: Connection) -> None: ...

    def _write(self, conn: Connection, ids: list[int], vectors: Vectors) -> None:
        existing = self._shards_of(conn, ids)
        if existing:
            self._remove(conn, existing)
        shards = self._assign(conn, ids)
        conn.executemany(
            f"INSERT INTO {self.store} (id, shard, embedding) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET shard = excluded.shard, embedding = excluded.embedding",
            zip(ids, shards, _blobs(vectors), strict=True),
        )
        self._insert(conn, ids, shards, vectors)

    def delete(self, conn: Connection, ids: Iterable[int]) -> int:
        existing = self._shards_of(conn, _check_ids(list(ids)))
        if not existing:
            return 0
        self._remove(conn, existing)
        conn.executemany(f"DELETE FROM {self.store} WHERE id = ?", ((i,) for i in existing))
        return len(existing)

    def _shards_of(self, conn: Connection, ids: Sequence[int]) -> dict[int, int]:
        if not ids:
            return {}
        rows = conn.execute(
            f"SELECT id, shard FROM {self.store} WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(ids)),),
        )
        return {int(i): int(s) for i, s in rows}

    @abstractmethod
    def _assign(self, conn: Connection, ids: Sequence[int]) -> list[int]:
        """The shard of each new id."""

    @abstractmethod
    def _insert(
        self, conn: Connection, ids: Sequence[int], shards: Sequence[int], vectors: Vectors
    ) -> None: ...

    @abstractmethod
    def _remove(self, conn: Connection, shards_by_id: dict[int, int]) -> None:
        """Remove ids from the approximate structures (the store is done by the caller)."""

    def _nearest(
        self, conn: Connection, query: Vectors, wanted: int, id_filter: IdFilter | None
    ) -> list[Neighbour]:
        candidates = self._candidates(conn, query, wanted)
        if id_filter is not None:
            candidates = id_filter.keep(conn, candidates)
        return self._rescore(conn, query, candidates)

    def exact(
        self, conn: Connection, query: Vectors, k: int, *, id_filter: IdFilter | None = None
    ) -> list[Neighbour]:
        q = self._check_query(query)
        k = _check_k(k)
        if id_filter is None:
            rows = conn.execute(f"SELECT id, embedding FROM {self.store}")
        else:
            rows = conn.execute(
                f"SELECT id, embedding FROM {self.store} WHERE id IN ({id_filter.select})",
                id_filter.params,
            )
        best_ids = np.empty(0, dtype=np.int64)
        best_scores = np.empty(0, dtype=np.float32)
        for ids, matrix in _batches(rows, self.dimensions):
            scores = matrix @ q
            best_ids = np.concatenate([best_ids, ids])
            best_scores = np.concatenate([best_scores, scores])
            if len(best_ids) > 4 * k:
                keep = np.argpartition(-best_scores, k)[:k]
                best_ids, best_scores = best_ids[keep], best_scores[keep]
        order = np.argsort(-best_scores, kind="stable")[:k]
        return [(int(best_ids[i]), float(best_scores[i])) for i in order]

    @abstractmethod
    def _candidates(self, conn: Connection, query: Vectors, k: int) -> list[int]:
        """Ids likely to hold the ``k`` nearest (more than ``k`` of them)."""

    def _rescore(self, conn: Connection, query: Vectors, ids: Sequence[int]) -> list[Neighbour]:
        if not ids:
            return []
        rows = conn.execute(
            f"SELECT id, embedding FROM {self.store} WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps([int(i) for i in ids]),),
        )
        # One buffer for all the candidates: per-row arrays cost more than the math.
        found, matrix = next(_batches(rows, self.dimensions, size=len(ids)),
                             (np.empty(0, dtype=np.int64), None))
        if matrix is None:
            return []
        scores = matrix @ query
        order = np.argsort(-scores, kind="stable")
        return [(int(found[i]), float(scores[i])) for i in order]

    def _load(self, conn: Connection, ids: Sequence[int]) -> list[tuple[int, Vectors]]:
        if not ids:
            return []
        rows = conn.execute(
            f"SELECT id, embedding FROM {self.store} WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps([int(i) for i in ids]),),
        )
        return [(int(i), np.frombuffer(blob, dtype=np.float32)) for i, blob in rows]


class VecBackend(SQLiteBackend):
    """sqlite-vec: sharded bit codes in ``vec0`` + exact float rescoring."""

    kind = "vec"

    def __init__(
        self, name: str, dimensions: int, *, shards: int = 8, oversample: int | None = None
    ) -> None:
        super().__init__(name, dimensions)
        if not isinstance(shards, int) or not 1 <= shards <= 64:
            raise InvalidInputError(f"shards must be an int from 1 to 64, got {shards!r}")
        if oversample is None:
            # Fewer dimensions, fewer bits, coarser codes: ask for more candidates.
            oversample = min(64, max(16, 16 * 768 // dimensions))
        if not isinstance(oversample, int) or not 1 <= oversample <= 256:
            raise InvalidInputError(f"oversample must be an int from 1 to 256, got {oversample!r}")
        self.shards = shards
        self.oversample = oversample
        self.table = f"{name}_vec"
        self._shard_list = ", ".join(str(s) for s in range(shards))

    def _create(self, conn: Connection) -> None:
        conn.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {self.table} USING vec0("
            f"shard integer partition key, embedding bit[{_bit_width(self.dimensions)}])"
        )

    def _drop(self, conn: Connection) -> None:
        conn.execute(f"DROP TABLE IF EXISTS {self.table}")

    def _assign(self, conn: Connection, ids: Sequence[int]) -> list[int]:
        return [i % self.shards for i in ids]

    def _insert(
        self, conn: Connection, ids: Sequence[int], shards: Sequence[int], vectors: Vectors
    ) -> None:
        codes = _bit_codes(vectors)
        conn.executemany(
            f"INSERT INTO {self.table} (rowid, shard, embedding) VALUES (?, ?, vec_bit(?))",
            zip(ids, shards, (c.tobytes() for c in codes), strict=True),
        )

    def _remove(self, conn: Connection, shards_by_id: dict[int, int]) -> None:
        conn.executemany(f"DELETE FROM {self.table} WHERE rowid = ?", ((i,) for i in shards_by_id))

    def count(self, conn: Connection) -> int:
        # vec0's rowid table is small; counting the float store reads every page.
        return int(conn.execute(f"SELECT count(*) FROM {self.table}_rowids").fetchone()[0])

    def _candidates(self, conn: Connection, query: Vectors, k: int) -> list[int]:
        # Full oversampling for the first 10 wanted; beyond, a quarter of it per
        # extra result: rescoring is the cost, and a long tail (hybrid and
        # by-document searches ask for 50+) needs less precision than the top.
        total = max(self.oversample * min(k, 10) + self.oversample // 4 * max(0, k - 10), 64)
        per_shard = min(VEC_MAX_K, math.ceil(total / self.shards))
        code = _bit_codes(query.reshape(1, -1))[0].tobytes()
        rows = conn.execute(
            f"SELECT rowid FROM {self.table} WHERE embedding MATCH vec_bit(?) AND k = ? "
            f"AND shard IN ({self._shard_list})",
            (code, per_shard),
        )
        return [int(r[0]) for r in rows]


class VssBackend(SQLiteBackend):
    """sqlite-vss: exact faiss indexes in ``vss0`` shards of bounded size.

    Vectors are sent in sqlite-vss's own blob format (see ``_VSS_HEADER``).
    sqlite-vss 0.1.2 loads a table's faiss index once per connection and never
    reloads it, so other connections would keep answering from an old index
    (deleted rows included). Every write therefore also replaces a view,
    which changes the schema cookie: each connection re-reads the schema
    before its next statement, and with it the indexes. A search never asks
    an empty shard (faiss aborts the process on k = 0).
    """

    kind = "vss"
    #: Rows a shard takes before the next shard is opened.
    DEFAULT_SHARD_SIZE = 2048

    def __init__(
        self, name: str, dimensions: int, *, shard_size: int = DEFAULT_SHARD_SIZE
    ) -> None:
        super().__init__(name, dimensions)
        if not isinstance(shard_size, int) or not 1 <= shard_size <= 1_000_000:
            raise InvalidInputError(f"shard_size must be a positive int, got {shard_size!r}")
        self.shard_size = shard_size
        self.oversample = 1
        self.registry = f"{name}_vss_shards"

    def shard_table(self, shard: int) -> str:
        return f"{self.name}_vss_{int(shard)}"

    def _create(self, conn: Connection) -> None:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.registry} ("
            "shard INTEGER PRIMARY KEY, row_count INTEGER NOT NULL DEFAULT 0)"
        )

    def _drop(self, conn: Connection) -> None:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (self.registry,)
        ).fetchone()
        if exists:
            for (shard,) in conn.execute(f"SELECT shard FROM {self.registry}").fetchall():
                conn.execute(f"DROP TABLE IF EXISTS {self.shard_table(shard)}")
            conn.execute(f"DROP TABLE {self.registry}")
        _bump_schema(conn)

    def _shard_rows(self, conn: Connection) -> list[tuple[int, int]]:
        return [
            (int(s), int(n))
            for s, n in conn.execute(f"SELECT shard, row_count FROM {self.registry} ORDER BY shard")
        ]

    def _assign(self, conn: Connection, ids: Sequence[int]) -> list[int]:
        shards = self._shard_rows(conn)
        out: list[int] = []
        if shards and shards[-1][1] < self.shard_size:
            current, used = shards[-1]
        else:
            current, used = (shards[-1][0] + 1 if shards else 0), 0
            self._open_shard(conn, current)
        for _ in ids:
            if used >= self.shard_size:
                current, used = current + 1, 0
                self._open_shard(conn, current)
            out.append(current)
            used += 1
        return out

    def _open_shard(self, conn: Connection, shard: int) -> None:
        conn.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {self.shard_table(shard)} "
            f"USING vss0(embedding({self.dimensions}))"
        )
        conn.execute(f"INSERT OR IGNORE INTO {self.registry} (shard) VALUES (?)", (shard,))

    def _insert(
        self, conn: Connection, ids: Sequence[int], shards: Sequence[int], vectors: Vectors
    ) -> None:
        by_shard: dict[int, list[tuple[int, bytes]]] = {}
        for i, shard, blob in zip(ids, shards, _blobs(vectors), strict=True):
            by_shard.setdefault(shard, []).append((i, _VSS_HEADER + blob))
        for shard, rows in by_shard.items():
            conn.executemany(
                f"INSERT INTO {self.shard_table(shard)} (rowid, embedding) VALUES (?, ?)", rows
            )
            conn.execute(
                f"UPDATE {self.registry} SET row_count = row_count + ? WHERE shard = ?",
                (len(rows), shard),
            )
        _bump_schema(conn)

    def _remove(self, conn: Connection, shards_by_id: dict[int, int]) -> None:
        by_shard: dict[int, list[int]] = {}
        for i, shard in shards_by_id.items():
            by_shard.setdefault(shard, []).append(i)
        for shard, ids in by_shard.items():
            conn.executemany(
                f"DELETE FROM {self.shard_table(shard)} WHERE rowid = ?", ((i,) for i in ids)
            )
            conn.execute(
                f"UPDATE {self.registry} SET row_count = max(0, row_count - ?) WHERE shard = ?",
                (len(ids), shard),
            )
        _bump_schema(conn)

    def count(self, conn: Connection) -> int:
        return sum(n for _, n in self._shard_rows(conn))

    def shard_count(self, conn: Connection) -> int:
        return len(self._shard_rows(conn))

    def _candidates(self, conn: Connection, query: Vectors, k: int) -> list[int]:
        blob = _VSS_HEADER + np.ascontiguousarray(query, dtype=np.float32).tobytes()
        out: list[int] = []
        for shard, rows in self._shard_rows(conn):
            if rows <= 0:
                continue  # faiss aborts the whole process when asked for k = 0
            n = min(rows, k)
            out.extend(
                int(r[0])
                for r in conn.execute(
                    f"SELECT rowid FROM {self.shard_table(shard)} "
                    "WHERE vss_search(embedding, vss_search_params(?, ?))",
                    (blob, n),
                )
            )
        return out


class PgVectorBackend(VectorBackend):
    """pgvector on PostgreSQL: one ``vector(d)`` table with an HNSW (cosine) index.

    ``ef_search`` is the HNSW candidate list a search keeps (``hnsw.ef_search``,
    raised to the number of results wanted, at most ``PG_MAX_EF_SEARCH``):
    more is slower and finds more of the true nearest.
    """

    kind = "pgvector"
    #: ``hnsw.ef_search`` of a search (pgvector's default is 40).
    DEFAULT_EF_SEARCH = 100

    def __init__(self, name: str, dimensions: int, *, ef_search: int = DEFAULT_EF_SEARCH) -> None:
        super().__init__(name, dimensions)
        if isinstance(ef_search, bool) or not isinstance(ef_search, int) or \
                not 1 <= ef_search <= PG_MAX_EF_SEARCH:
            raise InvalidInputError(
                f"ef_search must be an int from 1 to {PG_MAX_EF_SEARCH}, got {ef_search!r}")
        self.ef_search = ef_search
        self.oversample = 1
        # The query vector is one parameter, used for the order and the score.
        self._knn = (f"SELECT id, 1 - d FROM (SELECT id, embedding <=> ? AS d FROM {self.store} "
                     "ORDER BY d LIMIT ?) nearest")

    # The schema module is imported here: its package loads psycopg, which a
    # SQLite-only install may lack.
    def create(self, conn: Connection) -> None:
        from ..engines.postgresql.schema import create_vector_table

        create_vector_table(conn, self.name, self.dimensions)

    def drop(self, conn: Connection) -> None:
        from ..engines.postgresql.schema import drop_vector_table

        drop_vector_table(conn, self.name)

    def _write(self, conn: Connection, ids: list[int], vectors: Vectors) -> None:
        rows = np.ascontiguousarray(vectors, dtype=np.float32)
        conn.executemany(
            f"INSERT INTO {self.store} (id, embedding) VALUES (?, ?) "
            "ON CONFLICT (id) DO UPDATE SET embedding = excluded.embedding",
            zip(ids, rows, strict=True),
        )

    def delete(self, conn: Connection, ids: Iterable[int]) -> int:
        checked = _check_ids(list(ids))
        if not checked:
            return 0
        return int(conn.execute(f"DELETE FROM {self.store} WHERE id = ANY(?::bigint[])",
                                (checked,)).rowcount)

    def count(self, conn: Connection) -> int:
        return int(conn.execute(f"SELECT count(*) FROM {self.store}").fetchone()[0])

    def _load(self, conn: Connection, ids: Sequence[int]) -> list[tuple[int, Vectors]]:
        if not ids:
            return []
        rows = conn.execute(
            f"SELECT id, embedding FROM {self.store} WHERE id = ANY(?::bigint[])", (list(ids),))
        # pgvector's loader gives ``Vector`` objects.
        return [(int(i), np.asarray(v.to_numpy(), dtype=np.float32)) for i, v in rows]

    def _nearest(
        self, conn: Connection, query: Vectors, wanted: int, id_filter: IdFilter | None
    ) -> list[Neighbour]:
        ef = min(PG_MAX_EF_SEARCH, max(self.ef_search, wanted))
        session = None if conn.in_transaction else getattr(conn, "raw", None)
        if session is None or _EF_SEARCH.get(session) != ef:
            conn.execute("SELECT set_config('hnsw.ef_search', ?, false)", (str(ef),))
            if session is not None:
                _EF_SEARCH[session] = ef
        hits = [(int(i), float(s)) for i, s in conn.execute(self._knn, (query, wanted))]
        if id_filter is None:
            return hits
        allowed = set(id_filter.keep(conn, [i for i, _ in hits], "postgresql"))
        return [h for h in hits if h[0] in allowed]

    def exact(
        self, conn: Connection, query: Vectors, k: int, *, id_filter: IdFilter | None = None
    ) -> list[Neighbour]:
        q = self._check_query(query)
        k = _check_k(k)
        # cosine_distance(), unlike <=>, is not served by the HNSW index: a scan.
        where, params = "", ()
        if id_filter is not None:
            where, params = f" WHERE id IN ({id_filter.select})", id_filter.params
        rows = conn.execute(
            f"SELECT id, 1 - d FROM (SELECT id, cosine_distance(embedding, ?) AS d "
            f"FROM {self.store}{where}) scanned ORDER BY d, id LIMIT ?", (q, *params, k))
        return [(int(i), float(s)) for i, s in rows]


def make_backend(kind: str, name: str, dimensions: int, **settings: Any) -> VectorBackend:
    """The backend ``kind`` ("vec", "vss" or "pgvector") for index ``name``."""
    classes: dict[str, type[VectorBackend]] = {
        "vec": VecBackend, "vss": VssBackend, "pgvector": PgVectorBackend}
    return classes[require_vector_backend(kind)](name, dimensions, **settings)


def backend_unavailable(kind: str) -> str | None:
    """Why backend ``kind`` cannot load here, or None when it can."""
    from ..engines.sqlite.driver import load_extension, select_driver

    if kind not in BACKENDS:
        return f"unknown vector backend {kind!r}"
    if kind == "pgvector":
        return "pgvector is PostgreSQL's backend: it needs a postgresql:// database"
    driver = select_driver()
    conn = driver.connect(":memory:")
    try:
        load_extension(conn, kind)
    except ExtensionError as exc:
        return str(exc)
    finally:
        conn.close()
    return None


# -- helpers -------------------------------------------------------------------


def _bit_width(dimensions: int) -> int:
    # vec0 bit columns need a multiple of 8; codes are zero-padded to it.
    return (dimensions + 7) // 8 * 8


def _bit_codes(vectors: Vectors) -> Any:
    """One bit per dimension (1 where positive), packed 8 per byte."""
    return np.packbits(vectors > 0, axis=1, bitorder="little")


def _blobs(vectors: Vectors) -> Iterator[bytes]:
    arr = np.ascontiguousarray(vectors, dtype=np.float32)
    return (row.tobytes() for row in arr)


def _batches(rows: Any, dimensions: int, size: int = 4096) -> Iterator[tuple[Any, Vectors]]:
    while True:
        chunk = rows.fetchmany(size)
        if not chunk:
            return
        ids = np.fromiter((r[0] for r in chunk), dtype=np.int64, count=len(chunk))
        matrix = np.frombuffer(b"".join(r[1] for r in chunk), dtype=np.float32)
        yield ids, matrix.reshape(len(chunk), dimensions)


def _check_ids(ids: Sequence[int]) -> list[int]:
    out = []
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise InvalidInputError(f"vector ids must be integers, got {i!r}")
        out.append(int(i))
    return out


def _check_k(k: object) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 1000:
        raise InvalidInputError(f"Invalid k: {k!r} (expected 1..1000)")
    return k


def _bump_schema(conn: Connection) -> None:
    """Change the schema cookie so every connection reloads its vss0 indexes."""
    conn.execute("DROP VIEW IF EXISTS memkit_vss_epoch")
    conn.execute(f"CREATE VIEW memkit_vss_epoch AS SELECT {time.time_ns()} AS epoch")
