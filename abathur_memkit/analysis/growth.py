"""How the database grew: rows and bytes added per day, by kind, scope and memory type.

Bytes come in two measures:

- ``payload_bytes``: the bytes of the values themselves, summed with
  ``length(CAST(value AS BLOB))`` over every column of each row (integers and
  reals count as their decimal text). Always available.
- ``bytes``: the space the rows take in the file. With ``dbstat`` (the
  sqlean driver has it), each kind's b-trees — its table, its indexes and its
  search structures — are measured page by page and shared out over that
  kind's rows by their payload; ``data_bytes + index_bytes + search_bytes``
  make up ``bytes``. Without dbstat, ``bytes`` is the payload and the index
  and search columns are NaN. The ``bytes_method`` column says which
  (``"dbstat"`` or ``"length"``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import InvalidInputError
from .optional import pandas
from .queries import DOCUMENTS_WITHOUT_CHUNKS, KINDS, Kind, group_rows, table_names
from .sources import Source, connect_readonly, source_dialect
from .storage import BTree, btree_sizes, relation_sizes

__all__ = ["COLUMNS", "memory_growth"]

#: The columns of the frame ``memory_growth`` returns.
COLUMNS = ("day", "kind", "scope", "memory_type", "rows", "payload_bytes",
           "data_bytes", "index_bytes", "search_bytes", "bytes", "bytes_method",
           "first_time", "last_time")


def _kinds(tables: set[str]) -> list[Kind]:
    kinds = []
    for kind in KINDS:
        if kind.table in tables:
            kinds.append(kind)
        elif kind.name == "document_chunk" and "document_index" in tables:
            kinds.append(DOCUMENTS_WITHOUT_CHUNKS)
    return kinds


def _totals(btrees: Iterable[BTree]) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = {}
    for b in btrees:
        totals[b.kind, b.role] = totals.get((b.kind, b.role), 0) + b.bytes
    return totals


def memory_growth(source: Source, *, use_dbstat: bool | None = None) -> Any:
    """Rows and bytes added per day (UTC) by kind, namespace scope and memory type.

    One row per (day, kind, scope, memory_type) with rows in it; ``kind`` is
    ``memory``, ``event``, ``document_chunk``, ``audit``, ``session``, ``task``,
    ``agent``, ``checkpoint``, ``metric`` or ``state``. ``scope`` is the
    namespace scope of memories (and of the audit rows of memory writes),
    ``memory_type`` that of memories; ``first_time``/``last_time`` are the
    group's earliest and latest timestamps. ``use_dbstat=None`` uses dbstat when the
    SQLite build has it; ``False`` forces the ``length()`` measure.
    """
    pd = pandas()
    dialect = source_dialect(source)
    with connect_readonly(source) as conn:
        tables = table_names(conn, dialect)
        groups = [row for kind in _kinds(tables) for row in group_rows(conn, kind, dialect)]
        if dialect == "postgresql":  # each relation's size stands in for dbstat's b-trees
            btrees = None if use_dbstat is False else relation_sizes(conn)
        else:
            btrees = None if use_dbstat is False else btree_sizes(conn)
    if use_dbstat and btrees is None:
        raise InvalidInputError("use_dbstat=True, but this SQLite build has no dbstat table")
    df = pd.DataFrame.from_records(
        groups, columns=["kind", "day", "scope", "memory_type", "rows", "payload_bytes",
                         "first_time", "last_time"])
    df["rows"] = df["rows"].astype("int64")
    df["payload_bytes"] = df["payload_bytes"].fillna(0).astype("int64")
    if btrees is None:
        df["data_bytes"] = df["payload_bytes"].astype("float64")
        df["index_bytes"] = float("nan")
        df["search_bytes"] = float("nan")
        df["bytes"] = df["data_bytes"]
        df["bytes_method"] = "length"
    else:
        totals = _totals(btrees)
        kind_payload = df.groupby("kind")["payload_bytes"].transform("sum")
        kind_rows = df.groupby("kind")["rows"].transform("sum")
        # A row's share of its kind's pages: by payload, or by count if all are empty.
        share = (df["payload_bytes"] / kind_payload).where(kind_payload > 0,
                                                           df["rows"] / kind_rows)
        for role in ("data", "index", "search"):
            total = df["kind"].map(lambda k, r=role: totals.get((k, r), 0))
            df[f"{role}_bytes"] = share * total
        df["bytes"] = df["data_bytes"] + df["index_bytes"] + df["search_bytes"]
        df["bytes_method"] = "dbstat" if dialect == "sqlite" else "pg_relation_size"
    df["day"] = pd.to_datetime(df["day"], format="%Y-%m-%d", utc=True)
    for column in ("first_time", "last_time"):
        df[column] = pd.to_datetime(df[column], format="ISO8601", utc=True, errors="coerce")
    df = df[list(COLUMNS)]
    return df.sort_values(["day", "kind", "scope", "memory_type"], ignore_index=True,
                          na_position="last")
