"""Metrics: named, labelled, non-negative measurements over time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .engines.interface import Connection, Store
from .errors import InvalidInputError
from .inputs import as_timestamp, require_limit, require_object, require_text
from .rows import Row, Rows, fetch_all, fetch_one, insert_row, time_range
from .values import is_finite_number, timestamp, to_json

if TYPE_CHECKING:
    from datetime import datetime


__all__ = ["JSON_COLUMNS", "LatencyRecorder", "MetricsService", "operation_name", "query_sql",
           "summary_sql"]

JSON_COLUMNS = ("labels",)

INSERT = (
    "INSERT INTO metrics (timestamp, metric_name, metric_value, labels) VALUES (?, ?, ?, ?)"
)


#: Prefix of the latency metrics ``Database(record_metrics=True)`` records.
LATENCY_PREFIX = "latency."


def operation_name(fn: Callable[..., Any]) -> str:
    """The public method a database function belongs to: ``get_memory`` for
    ``MemoryService.get_memory.<locals>.get``."""
    operation = getattr(fn, "operation", None)  # Statements name their method
    if isinstance(operation, str):
        return operation
    qualname = getattr(fn, "__qualname__", None) or type(fn).__name__
    return qualname.split(".<locals>")[0].rsplit(".", 1)[-1]


class _Flush:
    """Writes one batch of samples; its own latency is not recorded."""

    def __init__(self, samples: list[tuple[str, str, float, None]]) -> None:
        self.samples = samples

    def __call__(self, conn: Connection) -> None:
        conn.executemany(INSERT, self.samples)


class LatencyRecorder:
    """Latency samples of a Database's reads and writes, written in batches.

    A sample is kept in memory and the buffer written in one transaction every
    ``flush_every`` samples and on close, so recording adds no write per read.
    """

    def __init__(self, flush_every: int = 500) -> None:
        self.flush_every = flush_every
        self.samples: list[tuple[str, str, float, None]] = []

    async def record(self, store: Store, fn: Callable[..., Any], started: float) -> None:
        if isinstance(fn, _Flush):
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.samples.append((timestamp(), LATENCY_PREFIX + operation_name(fn), elapsed_ms, None))
        if len(self.samples) >= self.flush_every:
            await self.flush(store)

    async def flush(self, store: Store) -> None:
        """Write the buffered samples to ``metrics`` (one transaction)."""
        if self.samples:
            batch, self.samples = self.samples, []
            await store.write(_Flush(batch))


def _where(name: str, since: str | None, until: str | None) -> tuple[str, list[Any]]:
    # metric_name = ? plus the time range: both on idx_metrics_name_timestamp.
    terms, params = time_range("timestamp", since, until)
    return " AND ".join(["metric_name = ?", *terms]), [name, *params]


def query_sql(
    name: str, since: str | None = None, until: str | None = None, limit: int | None = None
) -> tuple[str, list[Any]]:
    """The SQL and parameters ``MetricsService.query`` runs (for plan tests)."""
    where, params = _where(name, since, until)
    sql = f"SELECT * FROM metrics WHERE {where} ORDER BY timestamp DESC, id DESC"
    if limit is not None:
        return f"{sql} LIMIT ?", [*params, limit]
    return sql, params


def summary_sql(
    name: str, since: str | None = None, until: str | None = None
) -> tuple[str, list[Any]]:
    """The SQL and parameters ``MetricsService.summary`` runs (for plan tests)."""
    where, params = _where(name, since, until)
    return (
        "SELECT count(*) AS count, min(metric_value) AS min, max(metric_value) AS max, "
        f"avg(metric_value) AS avg, coalesce(sum(metric_value), 0.0) AS sum FROM metrics "
        f"WHERE {where}",
        params,
    )


class MetricsService:
    """Metrics: ``db.metrics`` or ``MetricsService(db)``.

    Time bounds are a ``datetime`` (naive = UTC) or a stored-form string;
    ``since`` is inclusive, ``until`` exclusive.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    async def record(self, name: str, value: float, labels: dict[str, Any] | None = None) -> int:
        """Record one measurement now; return its id. ``value`` is finite and >= 0."""
        metric = require_text(name, "metric name")
        if not is_finite_number(value) or value < 0:
            raise InvalidInputError(
                f"Invalid metric value for {metric}: {value!r:.60} (expected a finite number >= 0)"
            )
        labels_json = None if labels is None else to_json(require_object(labels, "labels"),
                                                           "labels")
        params, dialect = (timestamp(), metric, float(value), labels_json), self.store.dialect
        return await self.store.write(lambda conn: insert_row(conn, INSERT, params, dialect))

    async def query(
        self,
        name: str,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int | None = None,
    ) -> Rows:
        """Measurements of ``name`` in the range, newest first."""
        metric = require_text(name, "metric name")
        sql, params = query_sql(metric, as_timestamp(since, "since"),
                                as_timestamp(until, "until"),
                                None if limit is None else require_limit(limit))
        return await self.store.read(lambda conn: fetch_all(conn, sql, params, JSON_COLUMNS))

    async def summary(
        self,
        name: str,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
    ) -> Row:
        """``{name, count, min, max, avg, sum}`` over the range (min/max/avg None if empty)."""
        metric = require_text(name, "metric name")
        sql, params = summary_sql(metric, as_timestamp(since, "since"),
                                  as_timestamp(until, "until"))

        def read(conn: Connection) -> Row:
            row = fetch_one(conn, sql, params)
            assert row is not None  # an aggregate always returns one row
            return {"name": metric, **row}

        return await self.store.read(read)
