"""KNN on PostgreSQL: memkit's pgvector backend against raw pgvector SQL, same server.

``run_pgvector(dsn, n, dims)`` loads ``n`` clustered unit vectors (see
:func:`~abathur_memkit.bench.search.clustered_vectors`) into the table memkit's
:class:`~abathur_memkit.search.backends.PgVectorBackend` creates, with its HNSW
index (cosine, m = 16, ef_construction = 64), then asks the same queries two ways
at the same ``hnsw.ef_search``:

- **memkit** — ``backend.search`` through ``Database.read`` (the engine's pool
  and worker thread, the ``ef_search`` setting, the checks), as semantic search
  asks its vector index;
- **raw** — one psycopg connection in this thread: ``SET hnsw.ef_search`` once,
  then ``ORDER BY embedding <=> %s LIMIT k`` per query.

Both are scored (recall@k) against exact search in numpy; a few exact scans in
PostgreSQL (``cosine_distance``, no index) are timed too. Rounds alternate
between the two sides so that a slow minute of the machine hits both. The
vectors are loaded with binary COPY and the index built after the load (the
fast way to build HNSW); the database at ``dsn`` is migrated if needed and
keeps the ``bench_vectors`` table until the next run replaces it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..database import Database
from ..engines.interface import Connection
from ..errors import InvalidInputError
from ..search.backends import PgVectorBackend
from .search import clustered_vectors

__all__ = ["PgVectorReport", "run_pgvector"]

#: The vector index the benchmark builds (table ``bench_vectors``).
INDEX = "bench"
# Rows per COPY batch while loading.
_COPY_ROWS = 5_000


@dataclass(frozen=True)
class PgVectorReport:
    """What one ``run_pgvector`` measured (latencies in milliseconds)."""

    n: int
    dims: int
    queries: int
    k: int
    ef_search: int
    noise: float
    load_s: float
    build_s: float
    memkit_p50_ms: float
    memkit_p99_ms: float
    raw_p50_ms: float
    raw_p99_ms: float
    memkit_recall: float
    raw_recall: float
    exact_p50_ms: float
    server: str

    @property
    def ratio(self) -> float:
        """memkit's p50 over raw pgvector's (the target is <= 1.2)."""
        return self.memkit_p50_ms / self.raw_p50_ms if self.raw_p50_ms else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}

    def lines(self) -> list[str]:
        return [
            f"pgvector KNN at {self.n:,} x {self.dims} ({self.server}), HNSW m=16 "
            f"ef_construction=64, ef_search={self.ef_search}, k={self.k}, "
            f"{self.queries} queries, cluster noise {self.noise}",
            f"  load (binary COPY) {self.load_s:.1f} s, HNSW build {self.build_s:.1f} s",
            f"  {'':8} {'p50 ms':>8} {'p99 ms':>8} {'recall@' + str(self.k):>10}",
            f"  {'raw':8} {self.raw_p50_ms:8.3f} {self.raw_p99_ms:8.3f} {self.raw_recall:10.3f}",
            f"  {'memkit':8} {self.memkit_p50_ms:8.3f} {self.memkit_p99_ms:8.3f} "
            f"{self.memkit_recall:10.3f}",
            f"  memkit / raw p50 = {self.ratio:.2f} (target <= 1.2); recall target >= 0.95; "
            f"exact scan p50 {self.exact_p50_ms:.1f} ms",
        ]

    def __str__(self) -> str:
        return "\n".join(self.lines())


def run_pgvector(
    dsn: str,
    n: int = 100_000,
    dims: int = 768,
    *,
    queries: int = 200,
    k: int = 10,
    ef_search: int = PgVectorBackend.DEFAULT_EF_SEARCH,
    rounds: int = 4,
    exact_queries: int = 5,
    seed: int = 7,
    noise: float = 0.8,
    build: bool = True,
    progress: Callable[[str], None] | None = None,
) -> PgVectorReport:
    """Build the index at ``dsn`` and measure; see the module's docstring.

    ``noise`` spreads each cluster (see ``clustered_vectors``): more is harder
    for HNSW. ``build=False`` measures the index a previous run with the same
    ``n``, ``dims``, ``seed`` and ``noise`` left (its build times are then 0).
    """
    say = progress or (lambda _: None)
    say(f"generating {n:,} x {dims} clustered vectors")
    data, qs = clustered_vectors(n, dims, queries, seed=seed, noise=noise)
    truth = [set((np.argsort(-(data @ q))[:k] + 1).tolist()) for q in qs]
    return asyncio.run(_run(dsn, data, qs, truth, k, ef_search, noise, rounds, exact_queries,
                            build, say))


async def _run(
    dsn: str, data: Any, qs: Any, truth: list[set[int]], k: int, ef_search: int, noise: float,
    rounds: int, exact_queries: int, build: bool, say: Callable[[str], None],
) -> PgVectorReport:
    import psycopg
    from pgvector.psycopg import register_vector

    n, dims = data.shape
    backend = PgVectorBackend(INDEX, int(dims), ef_search=ef_search)
    load_s = build_s = 0.0
    async with Database(dsn) as db:
        with psycopg.connect(dsn, autocommit=True) as raw:
            register_vector(raw)
            if build:
                await db.write(lambda conn: _reset(conn, backend))
                say("loading with binary COPY")
                started = time.perf_counter()
                _copy(raw, backend.store, data)
                load_s = time.perf_counter() - started
                say("building the HNSW index")
                started = time.perf_counter()
                await db.write(lambda conn: _build(conn, backend))
                build_s = time.perf_counter() - started
                raw.execute("VACUUM ANALYZE " + backend.store)
            elif await db.read(backend.count) != n:
                raise InvalidInputError(
                    f"{backend.store} does not hold {n} vectors: run with build=True")
            raw.execute(f"SET hnsw.ef_search = {int(ef_search)}")
            version = raw.execute("SELECT current_setting('server_version')").fetchone()
            server = str(version[0]) if version else "?"
            sql = (f"SELECT id, embedding <=> %s AS d FROM {backend.store} "
                   "ORDER BY d LIMIT %s")

            def raw_query(q: Any) -> list[int]:
                return [int(r[0]) for r in raw.execute(sql, (q, k)).fetchall()]

            async def memkit_query(q: Any) -> list[int]:
                hits = await db.read(lambda conn: backend.search(conn, q, k))
                return [i for i, _ in hits]

            for q in qs[:20]:  # warm both paths and the buffer cache
                raw_query(q)
                await memkit_query(q)
            say(f"timing {rounds} alternating rounds of {len(qs)} queries")
            raw_ns: list[int] = []
            memkit_ns: list[int] = []
            raw_found: list[list[int]] = []
            memkit_found: list[list[int]] = []
            for _ in range(rounds):
                for q in qs:
                    t = time.perf_counter_ns()
                    found = raw_query(q)
                    raw_ns.append(time.perf_counter_ns() - t)
                    raw_found.append(found)
                for q in qs:
                    t = time.perf_counter_ns()
                    found = await memkit_query(q)
                    memkit_ns.append(time.perf_counter_ns() - t)
                    memkit_found.append(found)
            say(f"timing {exact_queries} exact scans")
            exact_ns = []
            for q in qs[:exact_queries]:
                t = time.perf_counter_ns()
                await db.read(_exact(backend, q, k))
                exact_ns.append(time.perf_counter_ns() - t)
    cycle = truth * rounds
    return PgVectorReport(
        n=int(n), dims=int(dims), queries=len(qs), k=k, ef_search=ef_search, noise=noise,
        load_s=load_s, build_s=build_s,
        memkit_p50_ms=_ms(memkit_ns, 50), memkit_p99_ms=_ms(memkit_ns, 99),
        raw_p50_ms=_ms(raw_ns, 50), raw_p99_ms=_ms(raw_ns, 99),
        memkit_recall=_recall(memkit_found, cycle, k), raw_recall=_recall(raw_found, cycle, k),
        exact_p50_ms=_ms(exact_ns, 50) if exact_ns else 0.0, server=f"PostgreSQL {server}",
    )


def _exact(backend: PgVectorBackend, q: Any, k: int) -> Callable[[Connection], object]:
    return lambda conn: backend.exact(conn, q, k)


def _reset(conn: Connection, backend: PgVectorBackend) -> None:
    backend.drop(conn)
    backend.create(conn)
    # Loaded first, indexed after: HNSW builds much faster than it inserts.
    conn.execute(f"DROP INDEX IF EXISTS {backend.store}_hnsw")


def _build(conn: Connection, backend: PgVectorBackend) -> None:
    # The whole graph in memory makes the build several times faster.
    conn.execute("SET LOCAL maintenance_work_mem = '2GB'")
    backend.create(conn)


def _copy(raw: Any, table: str, data: Any) -> None:
    with raw.cursor() as cur:
        for start in range(0, len(data), _COPY_ROWS):
            with cur.copy(f"COPY {table} (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "vector"])
                for offset, row in enumerate(data[start : start + _COPY_ROWS]):
                    copy.write_row((start + offset + 1, row))


def _ms(samples_ns: list[int], percentile: float) -> float:
    return float(np.percentile(np.asarray(samples_ns, dtype=np.float64), percentile)) / 1e6


def _recall(found: list[list[int]], truth: list[set[int]], k: int) -> float:
    return float(np.mean([len(set(f) & t) / k for f, t in zip(found, truth, strict=True)]))
