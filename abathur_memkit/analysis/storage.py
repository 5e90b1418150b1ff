"""Where the bytes are: every b-tree's size from ``dbstat``, grouped by what it stores.

Each b-tree (table, index, full-text or vector shadow table) belongs to a
*kind* of stored item — ``memory``, ``event``, ``document_chunk``, ``audit``,
``session``, ``task``, ``agent``, ``checkpoint``, ``metric``, ``state`` — or
to ``other`` (the schema, ``sqlite_sequence``, registries), and has a *role*:
``data`` (the rows themselves), ``index`` (a SQLite index) or ``search`` (the
full-text and vector structures and their helper tables). So the cost of a
memory includes its indexes and its search entries.

``dbstat`` is a compile-time option of SQLite; the sqlean driver and most
builds have it. Without it, :func:`btree_sizes` returns None and callers fall
back to summing ``length()`` of the values (and say so).

Nothing here needs pandas except :func:`storage_breakdown`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..engines.interface import Connection
from ..errors import InvalidInputError
from .optional import pandas
from .queries import KINDS, Kind
from .sources import Source, connect_readonly

__all__ = [
    "KINDS",
    "BTree",
    "Kind",
    "btree_sizes",
    "kind_of_table",
    "page_totals",
    "storage_breakdown",
]


_ANCHORS = {kind.table: kind.name for kind in KINDS}
# Tables whose rows are data of a kind they do not anchor.
_DATA_TABLES = {**_ANCHORS, "document_index": "document_chunk"}


def kind_of_table(table: str) -> str:
    """The kind a table's b-trees count towards (``other`` when none)."""
    if table in _DATA_TABLES:
        return _DATA_TABLES[table]
    lowered = table.lower()
    # Search structures: memory_fts*, memory_search_*, vector tables and their
    # shadow tables, named after what they index.
    if "memor" in lowered:
        return "memory"
    if "document" in lowered or "chunk" in lowered:
        return "document_chunk"
    return "other"


@dataclass(frozen=True)
class BTree:
    """One b-tree of the file and what it holds."""

    name: str
    table: str
    type: str  # table | index
    kind: str
    role: str  # data | index | search | other
    pages: int
    bytes: int  # pages * page size: the space it takes in the file
    payload: int
    unused: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _role(btree_type: str, table: str, kind: str) -> str:
    if kind == "other":
        return "index" if btree_type == "index" else "other"
    if btree_type == "index":
        return "index"
    return "data" if table in _DATA_TABLES else "search"


def btree_sizes(conn: Connection) -> list[BTree] | None:
    """Every b-tree of ``conn``'s main database by ``dbstat``; None without dbstat."""
    try:
        stats = conn.execute(
            "SELECT name, pageno, pgsize, payload, unused FROM dbstat WHERE aggregate = 1"
        ).fetchall()
    except Exception as exc:  # the driver's OperationalError
        if "dbstat" in str(exc):
            return None
        raise
    owners = {name: (kind, table) for name, kind, table in conn.execute(
        "SELECT name, type, tbl_name FROM sqlite_master WHERE rootpage > 0")}
    result = []
    for name, pages, size, payload, unused in stats:
        btree_type, table = owners.get(name, ("table", name))
        kind = kind_of_table(table)
        result.append(BTree(name, table, btree_type, kind, _role(btree_type, table, kind),
                            int(pages), int(size), int(payload), int(unused)))
    return result


def page_totals(conn: Connection) -> dict[str, int]:
    """Page size, page count, free pages and the file bytes they add up to."""
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    return {"page_size": page_size, "page_count": pages, "freelist_count": free,
            "bytes": page_size * pages, "free_bytes": page_size * free}


def storage_breakdown(source: Source) -> Any:
    """Every b-tree's size as a DataFrame, biggest first, plus a row for free pages.

    Columns: name, table, type, kind, role, pages, bytes, payload, unused, share.
    ``bytes`` adds up to the file's page count times its page size. Raises
    ``InvalidInputError`` when the SQLite build has no ``dbstat``.
    """
    pd = pandas()
    with connect_readonly(source) as conn:
        btrees = btree_sizes(conn)
        totals = page_totals(conn)
    if btrees is None:
        raise InvalidInputError(
            "this SQLite build has no dbstat table: storage_breakdown needs it "
            "(the sqlean driver has it: MEMKIT_SQLITE_DRIVER=sqlean)"
        )
    rows = [b.as_dict() for b in btrees]
    if totals["freelist_count"]:
        rows.append({"name": "(free pages)", "table": "", "type": "free", "kind": "other",
                     "role": "free", "pages": totals["freelist_count"],
                     "bytes": totals["free_bytes"], "payload": 0,
                     "unused": totals["free_bytes"]})
    df = pd.DataFrame(rows, columns=list(BTree.__dataclass_fields__))
    total = df["bytes"].sum()
    df["share"] = df["bytes"] / total if total else 0.0
    return df.sort_values(["bytes", "name"], ascending=[False, True], ignore_index=True)
