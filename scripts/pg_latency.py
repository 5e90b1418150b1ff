"""One-row get and two-statement write latency on PostgreSQL: raw psycopg vs memkit's engine.

    .venv/bin/python scripts/pg_latency.py [--dsn DSN] [-n 3000]

Without --dsn it starts a throwaway pgserver (PostgreSQL 16 + pgvector).
Prints p50/p90 in µs for: a durable commit (baseline, at start and end), raw
psycopg sync and async gets, the engine's read (sync connection in a worker
thread, one hop per call), async psycopg through a pool, and the same for a
write transaction of two INSERTs. Prints only; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from abathur_memkit.engines.interface import Connection
from abathur_memkit.engines.postgresql import PostgreSQLEngine

GET = ("SELECT * FROM memory_entries WHERE namespace = %s AND key = %s AND is_deleted = 0 "
       "ORDER BY version DESC LIMIT 1")
PUT = ("INSERT INTO memory_entries (namespace, key, value, memory_type, updated_at) "
       "VALUES (%s, %s, '{\"v\":1}', 'semantic', %s) RETURNING id")
AUDIT = ("INSERT INTO audit (timestamp, action_type, memory_operation_type, memory_namespace, "
         "memory_entry_id) VALUES (%s, 'memory_write', 'create', %s, %s)")
AT = "2026-12-01 05:19:11.000000"


def _q(sql: str) -> str:
    return sql.replace("%s", "?")


def _report(name: str, samples: list[float]) -> None:
    qs = statistics.quantiles(samples, n=10)
    print(f"{name:<44} p50 {statistics.median(samples) * 1e6:8.0f} µs"
          f"   p90 {qs[8] * 1e6:8.0f} µs   (n={len(samples)})")


def _time_sync(fn: Callable[[int], Any], n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


async def _time_async(fn: Callable[[int], Awaitable[Any]], n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        await fn(i)
        out.append(time.perf_counter() - t)
    return out


def _commit_baseline(dsn: str, n: int) -> list[float]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS commit_probe (x int)")
        return _time_sync(lambda i: conn.execute("INSERT INTO commit_probe VALUES (%s)", (i,)), n)


def _seed(dsn: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(PUT.replace(" RETURNING id", ""),
                        [("user:bench", f"k{i}", AT) for i in range(rows)])
        conn.execute("ANALYZE")


async def _measure(dsn: str, n: int) -> None:
    _report("durable commit (autocommit INSERT), start", _commit_baseline(dsn, n // 3))
    keys = [("user:bench", f"k{i % 1000}") for i in range(n)]

    with psycopg.connect(dsn, autocommit=True) as conn:
        _report("raw psycopg sync get",
                _time_sync(lambda i: conn.execute(GET, keys[i]).fetchone(), n))
    aconn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    async with aconn:
        async def aget(i: int) -> Any:
            return await (await aconn.execute(GET, keys[i])).fetchone()
        _report("raw psycopg async get", await _time_async(aget, n))

    async with AsyncConnectionPool(dsn, min_size=4, max_size=4, open=False,
                                   kwargs={"autocommit": True}) as pool:
        async def pool_get(i: int) -> Any:
            async with pool.connection() as c:
                return await (await c.execute(GET, keys[i])).fetchone()

        async def pool_put(i: int) -> Any:
            async with pool.connection() as c, c.transaction():
                row = await (await c.execute(PUT, ("user:w", f"a{i}", AT))).fetchone()
                assert row is not None
                await c.execute(AUDIT, (AT, "user:w", row[0]))
        _report("async psycopg pool get", await _time_async(pool_get, n))
        _report("async psycopg pool write txn (2 INSERTs)", await _time_async(pool_put, n))

    async with PostgreSQLEngine(dsn, pool_size=4) as engine:
        get_sql, put_sql, audit_sql = _q(GET), _q(PUT), _q(AUDIT)

        def get(conn: Connection, i: int) -> Any:
            return conn.execute(get_sql, keys[i]).fetchone()

        def put(conn: Connection, i: int) -> None:
            new_id = conn.execute(put_sql, ("user:e", f"e{i}", AT)).fetchone()[0]
            conn.execute(audit_sql, (AT, "user:e", new_id))

        _report("memkit engine read (thread hop)",
                await _time_async(lambda i: engine.read(lambda c: get(c, i)), n))
        _report("memkit engine write txn (2 INSERTs)",
                await _time_async(lambda i: engine.write(lambda c: put(c, i)), n))
    _report("durable commit (autocommit INSERT), end", _commit_baseline(dsn, n // 3))


async def _migrate(dsn: str) -> None:
    async with PostgreSQLEngine(dsn):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="a server to use (default: start a pgserver)")
    parser.add_argument("-n", type=int, default=3000, help="calls per measurement")
    args = parser.parse_args()
    server = None
    base = args.dsn
    if base is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
        server = pgserver.get_server(tempfile.mkdtemp(prefix="memkit-pg-") + "/data",
                                     cleanup_mode="delete")
        base = server.get_uri()
    name = f"latency_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(base, dbname=name)
    try:
        asyncio.run(_migrate(dsn))
        _seed(dsn, 1000)
        asyncio.run(_measure(dsn, args.n))
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        if server is not None:
            server.cleanup()


if __name__ == "__main__":
    main()
