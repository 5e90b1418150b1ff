"""``EXPLAIN QUERY PLAN`` rows parsed into a tree of typed nodes.

SQLite prints one row per plan step, ``(id, parent, notused, detail)``, and the
``detail`` text changed over the years: ``SCAN TABLE t`` / ``SEARCH TABLE t USING
INDEX i (a=?)`` before 3.36, ``SCAN t`` / ``SEARCH t USING ...`` after; an alias
replaces the table name in the new format (``SEARCH tt USING ...``) but follows it
in the old one (``SCAN TABLE t AS tt``). Everything here parses the detail text
into fields once, so assertions compare fields, never substrings.

What counts as a full scan (``PlanNode.full_scan_reason``):

* ``SCAN`` of a real table, whether of the table itself or of an index
  (``SCAN t USING COVERING INDEX i`` still reads every entry of ``i``; it is the
  plan of ``SELECT count(*) FROM t``): cost grows with the table;
* ``SEARCH t USING AUTOMATIC ... INDEX``: SQLite reads the whole table to build a
  transient index each time the statement runs;
* ``SEARCH t`` with no index at all: the min()/max() optimisation prints SEARCH
  for what is a scan of the table.

Not full scans: scans of CTEs, subqueries, co-routines, VALUES and constant rows
(their cost is the cost of the query inside, which has its own nodes), virtual
tables (the module does its own indexing: fts5, vec0, json_each) and SQLite's
own ``sqlite_*`` tables.

PostgreSQL's plans (``EXPLAIN (FORMAT JSON)`` flattened by the engine to
``Seq Scan on t``, ``Index Scan using i on t (Index Cond: ...)``, ``Bitmap Index
Scan on i (Index Cond: ...)``) map onto the same nodes: a Seq Scan is a SCAN of
the table; an index scan with an ``Index Cond`` is a SEARCH through its index,
and one without (an ORDER BY or a count walking the whole index) a SCAN of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "Op",
    "PlanNode",
    "QueryPlan",
    "parse_pg_detail",
    "parse_plan",
    "sql_aliases",
    "sql_ctes",
]


class Op(StrEnum):
    """The kind of one plan step."""

    SCAN = "SCAN"
    SEARCH = "SEARCH"
    CO_ROUTINE = "CO-ROUTINE"
    MATERIALIZE = "MATERIALIZE"
    SUBQUERY = "SUBQUERY"  # SCALAR / LIST / CORRELATED ... SUBQUERY n
    COMPOUND = "COMPOUND"  # COMPOUND QUERY, LEFT-MOST SUBQUERY, UNION ALL, MERGE, LEFT, ...
    MULTI_INDEX_OR = "MULTI-INDEX OR"
    OR_TERM = "INDEX"  # "INDEX n", one term under MULTI-INDEX OR
    TEMP_BTREE = "USE TEMP B-TREE"
    BLOOM_FILTER = "BLOOM FILTER"
    CONSTANT = "CONSTANT"  # SCAN CONSTANT ROW, SCAN n CONSTANT ROWS, SCAN n-ROW VALUES CLAUSE
    OTHER = "OTHER"  # SETUP, RECURSIVE STEP, RIGHT-JOIN t, and whatever a new SQLite adds


@dataclass(eq=False)
class PlanNode:
    """One row of the plan, with its detail text parsed into fields."""

    id: int
    parent: int
    detail: str
    op: Op
    #: The name the plan prints: a table, an alias (new format), a CTE or a subquery.
    name: str | None = None
    #: The table, when known: the old format prints it with ``AS alias``; for the
    #: new format it is resolved from the SQL's aliases (see ``parse_plan``).
    table: str | None = None
    alias: str | None = None
    index: str | None = None
    covering: bool = False
    #: PostgreSQL's ``Bitmap Index Scan`` (entries collected into a bitmap, not in order).
    bitmap: bool = False
    #: ``USING INTEGER PRIMARY KEY`` (a rowid lookup or range).
    rowid: bool = False
    #: ``USING PRIMARY KEY`` (a WITHOUT ROWID table's key).
    primary_key: bool = False
    automatic_index: bool = False
    virtual: bool = False
    #: ``VIRTUAL TABLE INDEX n:str`` as ``"n:str"``.
    virtual_index: str | None = None
    #: What the index is searched with, e.g. ``"namespace=? AND key=?"``.
    constraints: str | None = None
    #: ``LEFT-JOIN`` / ``RIGHT-JOIN`` suffix of a loop.
    join: str | None = None
    #: Subquery number (``SCALAR SUBQUERY 2``, ``SCAN SUBQUERY 1``, ``(subquery-2)``).
    subquery: int | None = None
    correlated: bool = False
    #: ``(~N rows)``, printed by builds with SQLITE_EXPLAIN_ESTIMATED_ROWS and by old ones.
    estimated_rows: int | None = None
    #: Set by ``parse_plan``: this access reads a CTE / co-routine / VALUES, not a table.
    derived: bool = False
    #: Set by ``parse_plan``: the name is known to be a real table (from the schema).
    known_table: bool | None = None
    children: list[PlanNode] = field(default_factory=list)
    depth: int = 0

    @property
    def is_access(self) -> bool:
        """A loop over a table, index, subquery or virtual table."""
        return self.op in (Op.SCAN, Op.SEARCH)

    @property
    def target(self) -> str | None:
        """The table this step reads (resolved), else the printed name."""
        return self.table or self.name

    @property
    def reads_table(self) -> bool:
        """This step reads rows of a real (non-virtual, non-internal) table."""
        if not self.is_access or self.virtual or self.derived or self.subquery is not None:
            return False
        target = self.target
        if target is None or target.lower().startswith("sqlite_"):
            return False
        return self.known_table is not False

    @property
    def full_scan_reason(self) -> str | None:
        """Why this step is a full scan, or None when it is not one."""
        if not self.reads_table:
            return None
        if self.automatic_index:
            return "automatic index: the whole table is read to build a transient index"
        if self.op is Op.SCAN:
            if self.index and self.covering:
                return f"full scan of covering index {self.index}"
            if self.index and self.bitmap:
                return f"full scan of index {self.index}"
            if self.index:
                return f"full scan in the order of index {self.index}"
            return "full table scan"
        if not (self.index or self.rowid or self.primary_key):
            return "full table scan (SEARCH without an index: min()/max() over the table)"
        return None

    @property
    def is_full_scan(self) -> bool:
        return self.full_scan_reason is not None

    def walk(self) -> Iterable[PlanNode]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(eq=False)
class QueryPlan:
    """A parsed plan: ``roots`` in SQLite's order; ``nodes`` in tree (pre-)order."""

    roots: list[PlanNode]
    sql: str | None = None
    params: object = None

    @property
    def nodes(self) -> list[PlanNode]:
        return [node for root in self.roots for node in root.walk()]

    def accesses(self) -> list[PlanNode]:
        return [n for n in self.nodes if n.is_access]

    def full_scans(self, tables: Iterable[str] | None = None) -> list[PlanNode]:
        """Full scans, optionally only of ``tables`` (names or aliases, any case)."""
        wanted = None if tables is None else {t.lower() for t in tables}
        found = []
        for node in self.nodes:
            if not node.is_full_scan:
                continue
            names = {x.lower() for x in (node.table, node.name, node.alias) if x}
            if wanted is None or names & wanted:
                found.append(node)
        return found

    def index_uses(self, index: str) -> list[PlanNode]:
        """Access steps that use the named index (case-insensitive)."""
        return [n for n in self.accesses() if n.index and n.index.lower() == index.lower()]

    @property
    def indexes(self) -> list[str]:
        """Named indexes the plan uses, in plan order, without repeats."""
        seen: dict[str, None] = {}
        for node in self.accesses():
            if node.index:
                seen.setdefault(node.index, None)
        return list(seen)

    def render(self, *, mark: bool = True) -> str:
        """The tree as the sqlite3 shell draws it; full scans marked ``<-- ...``."""
        lines = ["QUERY PLAN"]

        def draw(nodes: Sequence[PlanNode], prefix: str) -> None:
            for i, node in enumerate(nodes):
                last = i == len(nodes) - 1
                text = node.detail
                if mark and node.is_full_scan:
                    text += f"   <-- {node.full_scan_reason}"
                lines.append(f"{prefix}{'`--' if last else '|--'}{text}")
                draw(node.children, prefix + ("   " if last else "|  "))

        draw(self.roots, "")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


# -- parsing one detail string ---------------------------------------------------------

_ACCESS_RE = re.compile(
    r"""^(?P<op>SCAN|SEARCH)\s+
    (?:TABLE\s+(?=\S))?                         # "SCAN TABLE t" before 3.36
    (?P<name>.+?)
    (?:\s+AS\s+(?P<alias>.+?))?
    (?:\s+USING\s+(?P<using>
          AUTOMATIC\s+(?:PARTIAL\s+)?(?:COVERING\s+)?INDEX
        | INTEGER\s+PRIMARY\s+KEY
        | PRIMARY\s+KEY
        | (?P<covering>COVERING\s+)?INDEX\s+(?P<index>\S+)(?:\s+FOR\s+IN-OPERATOR)?
    ))?
    (?:\s+VIRTUAL\s+TABLE\s+INDEX\s+(?P<vidx>\d+:.*?))?
    (?:\s+\((?!~)(?P<cons>[^()]*(?:\([^()]*\)[^()]*)*)\))?
    (?:\s+(?P<join>(?:LEFT|RIGHT|FULL)-JOIN))?
    (?:\s+\(~(?P<rows>\d+)\s+rows?\))?
    \s*$""",
    re.VERBOSE,
)
_CONSTANT_RE = re.compile(
    r"^SCAN\s+(?:CONSTANT\s+ROW|\d+\s+CONSTANT\s+ROWS|\d+-ROW\s+VALUES\s+CLAUSE)\s*$"
)
_SUBQUERY_RE = re.compile(
    r"^(?:EXECUTE\s+)?(?P<corr>CORRELATED\s+)?(?:SCALAR|LIST)\s+SUBQUERY(?:\s+(?P<n>\d+))?\s*$"
)
_DERIVED_RE = re.compile(r"^(?P<op>CO-ROUTINE|MATERIALIZE)\s+(?P<name>.+?)\s*$")
_COMPOUND_RE = re.compile(
    r"""^(?:COMPOUND\s+QUERY|LEFT-MOST\s+SUBQUERY|LEFT|RIGHT
        |(?:UNION\s+ALL|UNION|INTERSECT|EXCEPT)(?:\s+USING\s+TEMP\s+B-TREE)?
        |MERGE\s+\(.*\)
        |COMPOUND\s+SUBQUERIES\s+\d+\s+AND\s+\d+.*)\s*$""",
    re.VERBOSE,
)
_OR_TERM_RE = re.compile(r"^INDEX\s+\d+\s*$")
_TEMP_RE = re.compile(r"^USE\s+TEMP\s+B-TREE\s+FOR\s+.+$")
_BLOOM_RE = re.compile(r"^(?:CREATE\s+BLOOM\s+FILTER|BLOOM\s+FILTER\s+ON\s+(?P<table>\S+).*)$")
_RIGHT_JOIN_RE = re.compile(r"^RIGHT-JOIN\s+(?P<table>.+?)\s*$")
_OLD_SUBQUERY_NAME = re.compile(r"^SUBQUERY\s+(\d+)$")
_NEW_SUBQUERY_NAME = re.compile(r"^\((?:subquery|join)-(\d+)\)$")


def parse_detail(detail: str, node_id: int = 0, parent: int = 0) -> PlanNode:
    """Parse one ``detail`` string into a node (without children)."""
    text = detail.strip()
    if _CONSTANT_RE.match(text):
        return PlanNode(node_id, parent, detail, Op.CONSTANT)
    m = _ACCESS_RE.match(text)
    if m:
        node = PlanNode(node_id, parent, detail, Op(m["op"]), name=m["name"], alias=m["alias"])
        using = m["using"] or ""
        node.index = m["index"]
        node.covering = bool(m["covering"]) or "COVERING" in using
        node.automatic_index = using.startswith("AUTOMATIC")
        node.rowid = using.startswith("INTEGER")
        node.primary_key = using.startswith("PRIMARY")
        node.virtual_index = m["vidx"]
        node.virtual = m["vidx"] is not None
        node.constraints = m["cons"]
        node.join = m["join"]
        node.estimated_rows = int(m["rows"]) if m["rows"] else None
        sub = _OLD_SUBQUERY_NAME.match(node.name or "") or _NEW_SUBQUERY_NAME.match(node.name or "")
        if sub:
            node.subquery = int(sub.group(1))
        elif node.alias:
            node.table = node.name  # old format: "SCAN TABLE t AS tt"
        return node
    m = _SUBQUERY_RE.match(text)
    if m:
        return PlanNode(
            node_id,
            parent,
            detail,
            Op.SUBQUERY,
            subquery=int(m["n"]) if m["n"] else None,
            correlated=bool(m["corr"]),
        )
    m = _DERIVED_RE.match(text)
    if m:
        return PlanNode(node_id, parent, detail, Op(m["op"]), name=m["name"])
    if _COMPOUND_RE.match(text):
        return PlanNode(node_id, parent, detail, Op.COMPOUND)
    if text == "MULTI-INDEX OR":
        return PlanNode(node_id, parent, detail, Op.MULTI_INDEX_OR)
    if _OR_TERM_RE.match(text):
        return PlanNode(node_id, parent, detail, Op.OR_TERM)
    if _TEMP_RE.match(text):
        return PlanNode(node_id, parent, detail, Op.TEMP_BTREE)
    m = _BLOOM_RE.match(text)
    if m:
        return PlanNode(node_id, parent, detail, Op.BLOOM_FILTER, name=m["table"])
    m = _RIGHT_JOIN_RE.match(text)
    if m:
        return PlanNode(node_id, parent, detail, Op.OTHER, name=m["table"])
    return PlanNode(node_id, parent, detail, Op.OTHER)


# -- PostgreSQL ------------------------------------------------------------------------

_PG_RE = re.compile(
    r"""^(?P<kind>[A-Z][A-Za-z ]*?)
    (?:\s+using\s+(?P<index>\S+))?
    (?:\s+on\s+(?P<name>\S+))?
    (?:\s+\(Index\s+Cond:\s+(?P<cond>.*)\))?
    \s*$""",
    re.VERBOSE | re.DOTALL,
)
_PG_INDEX_SCANS = frozenset({"Index Scan", "Index Only Scan", "Bitmap Index Scan"})
_PG_TABLE_SCANS = frozenset({"Seq Scan", "Sample Scan"})
_PG_TID_SCANS = frozenset({"Tid Scan", "Tid Range Scan"})


def parse_pg_detail(detail: str, node_id: int = 0, parent: int = 0) -> PlanNode:
    """Parse one PostgreSQL plan step as the engine's ``plan_rows`` spells it."""
    m = _PG_RE.match(detail.strip())
    if m is None:
        return PlanNode(node_id, parent, detail, Op.OTHER)
    kind, name, cond = m["kind"], m["name"], m["cond"]
    if kind in _PG_TABLE_SCANS:
        return PlanNode(node_id, parent, detail, Op.SCAN, name=name, table=name)
    if kind in _PG_TID_SCANS:  # ctid, PostgreSQL's rowid
        return PlanNode(node_id, parent, detail, Op.SEARCH, name=name, table=name, rowid=True)
    if kind in _PG_INDEX_SCANS:
        bitmap = kind == "Bitmap Index Scan"  # "on" names the index; the table is the parent's
        return PlanNode(
            node_id,
            parent,
            detail,
            Op.SEARCH if cond else Op.SCAN,
            name=None if bitmap else name,
            table=None if bitmap else name,
            index=name if bitmap else m["index"],
            covering=kind == "Index Only Scan",
            bitmap=bitmap,
            constraints=cond,
        )
    # Bitmap Heap Scan, joins, sorts, CTE / subquery / function scans: not an access.
    return PlanNode(node_id, parent, detail, Op.OTHER, name=name)


def _resolve_pg(nodes: Sequence[PlanNode], by_id: Mapping[int, PlanNode]) -> None:
    """Name each Bitmap Index Scan's table (its Bitmap Heap Scan's); skip the catalogs."""
    for node in nodes:
        if node.bitmap:
            up = by_id.get(node.parent)
            while up is not None and not up.detail.startswith("Bitmap Heap Scan"):
                up = by_id.get(up.parent) if up.parent != up.id else None
            if up is not None:
                node.name = node.table = up.name
        if node.is_access and node.table:
            node.known_table = not node.table.lower().startswith("pg_")


# -- a small SQL tokenizer, for aliases and CTE names ----------------------------------------

_TOKEN_RE = re.compile(
    r"""\s+|--[^\n]*|/\*.*?(?:\*/|$)            # space and comments
    |(?P<str>'(?:[^']|'')*'?)                   # string literal
    |(?P<qid>"(?:[^"]|"")*"?|`(?:[^`]|``)*`?|\[[^\]]*\]?)  # quoted identifier
    |(?P<word>[A-Za-z_\x80-\U0010ffff][\w$\x80-\U0010ffff]*)
    |(?P<num>\d[\w.]*)
    |(?P<punct>.)""",
    re.VERBOSE | re.DOTALL,
)

_CLAUSE_END = frozenset(
    [
        "WHERE",
        "GROUP",
        "ORDER",
        "LIMIT",
        "HAVING",
        "WINDOW",
        "UNION",
        "EXCEPT",
        "INTERSECT",
        "SET",
        "VALUES",
        "RETURNING",
        "SELECT",
        "FROM",
    ]
)
_NOT_ALIAS = _CLAUSE_END | frozenset(
    [
        "JOIN",
        "LEFT",
        "RIGHT",
        "FULL",
        "INNER",
        "OUTER",
        "CROSS",
        "NATURAL",
        "INDEXED",
        "NOT",
        "AS",
        "WITH",
        "DEFAULT",
        "ON",
        "USING",
    ]
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # "word", "qid", "str", "num", "punct"
    text: str

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""

    @property
    def ident(self) -> str:
        if self.kind == "qid":
            body = self.text[1:-1]
            return body.replace('""', '"').replace("``", "`")
        return self.text


def _tokens(sql: str) -> list[_Tok]:
    out = []
    for m in _TOKEN_RE.finditer(sql):
        kind = m.lastgroup
        if kind:
            out.append(_Tok(kind, m.group(kind)))
    return out


def _is_name(tok: _Tok | None) -> bool:
    return tok is not None and (
        tok.kind == "qid" or (tok.kind == "word" and tok.upper not in _NOT_ALIAS)
    )


def sql_aliases(sql: str) -> dict[str, str]:
    """``{alias: table}`` for the table references in ``sql`` (best effort).

    Reads ``FROM a [AS] x, b y JOIN c AS z``, ``UPDATE t AS x`` and table-valued
    functions; an unaliased table maps to itself. Enough to name the table behind
    ``SCAN x`` in the plans of SQLite 3.36 and later, which print only the alias.
    """
    toks = _tokens(sql)
    aliases: dict[str, str] = {}
    expect_ref = False  # the next name starts a table reference
    in_from: dict[int, bool] = {}
    depth = 0
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok.text == "(":
            depth += 1
            i += 1
            continue
        if tok.text == ")":
            in_from.pop(depth, None)
            depth -= 1
            i += 1
            continue
        up = tok.upper
        if up in ("FROM", "JOIN", "UPDATE", "INTO"):
            in_from[depth] = up in ("FROM", "JOIN")
            expect_ref = True
            i += 1
            continue
        if up in _CLAUSE_END:
            in_from[depth] = False
        if tok.text == "," and in_from.get(depth):
            expect_ref = True
            i += 1
            continue
        if expect_ref and _is_name(tok):
            expect_ref = False
            name = tok.ident
            j = i + 1
            if j + 1 < len(toks) and toks[j].text == "." and _is_name(toks[j + 1]):
                name = toks[j + 1].ident  # schema.table
                j += 2
            if j < len(toks) and toks[j].text == "(":  # table-valued function arguments
                level = 0
                while j < len(toks):
                    level += toks[j].text == "("
                    level -= toks[j].text == ")"
                    j += 1
                    if level == 0:
                        break
            if j < len(toks) and toks[j].upper == "AS":
                j += 1
            alias = name
            if j < len(toks) and _is_name(toks[j]):
                alias = toks[j].ident
                j += 1
            aliases.setdefault(alias, name)
            aliases.setdefault(name, name)
            i = j
            continue
        expect_ref = False
        i += 1
    return aliases


def sql_ctes(sql: str) -> set[str]:
    """Names the statement's ``WITH`` clauses define (any nesting level)."""
    toks = _tokens(sql)
    names: set[str] = set()
    for i, tok in enumerate(toks):
        if tok.upper != "WITH":
            continue
        j = i + 1
        if j < len(toks) and toks[j].upper == "RECURSIVE":
            j += 1
        while j < len(toks) and toks[j].kind in ("word", "qid"):
            names.add(toks[j].ident)
            j += 1
            if j < len(toks) and toks[j].text == "(":  # column list
                while j < len(toks) and toks[j].text != ")":
                    j += 1
                j += 1
            if j >= len(toks) or toks[j].upper != "AS":
                break
            j += 1
            while j < len(toks) and toks[j].upper in ("NOT", "MATERIALIZED"):
                j += 1
            if j >= len(toks) or toks[j].text != "(":
                break
            level = 0
            while j < len(toks):  # skip the CTE body
                level += toks[j].text == "("
                level -= toks[j].text == ")"
                j += 1
                if level == 0:
                    break
            if j < len(toks) and toks[j].text == ",":
                j += 1
                continue
            break
    return names


# -- the tree --------------------------------------------------------------------------------

PlanRow = str | Sequence[object] | Mapping[str, object]


def _row(row: PlanRow, position: int) -> tuple[int, int, str]:
    if isinstance(row, str):
        return position + 1, 0, row  # a bare detail string: a flat plan
    if isinstance(row, Mapping):
        return int(str(row["id"])), int(str(row["parent"])), str(row["detail"])
    values = list(row)
    if len(values) == 3:
        return int(str(values[0])), int(str(values[1])), str(values[2])
    if len(values) == 4:  # (id, parent, notused, detail) as SQLite returns it
        return int(str(values[0])), int(str(values[1])), str(values[3])
    raise ValueError(f"not an EXPLAIN QUERY PLAN row: {row!r}")


def parse_plan(
    rows: Iterable[PlanRow],
    *,
    sql: str | None = None,
    params: object = None,
    known_tables: Iterable[str] | None = None,
    dialect: str = "sqlite",
) -> QueryPlan:
    """Build a ``QueryPlan`` from ``EXPLAIN QUERY PLAN`` rows.

    ``rows`` are ``(id, parent, notused, detail)`` tuples as SQLite returns them,
    ``(id, parent, detail)`` tuples, mappings with those keys, or bare detail
    strings (a flat plan). ``sql`` lets aliases and CTE names be resolved;
    ``known_tables`` (the schema's tables) tells real tables from everything else.
    ``dialect="postgresql"`` reads PostgreSQL's steps (see ``parse_pg_detail``):
    they name tables, never aliases, so ``sql`` and ``known_tables`` are not needed.
    """
    parse = parse_pg_detail if dialect == "postgresql" else parse_detail
    nodes: list[PlanNode] = []
    by_id: dict[int, PlanNode] = {}
    for position, row in enumerate(rows):
        node_id, parent, detail = _row(row, position)
        node = parse(detail, node_id, parent)
        nodes.append(node)
        by_id[node_id] = node
    roots: list[PlanNode] = []
    for node in nodes:
        parent_node = by_id.get(node.parent) if node.parent != node.id else None
        if parent_node is None:
            roots.append(node)
        else:
            parent_node.children.append(node)

    def set_depth(items: list[PlanNode], depth: int) -> None:
        for item in items:
            item.depth = depth
            set_depth(item.children, depth + 1)

    set_depth(roots, 0)
    if dialect == "postgresql":
        _resolve_pg(nodes, by_id)
        return QueryPlan(roots, sql=sql, params=params)

    derived = {n.name.lower() for n in nodes if n.op in (Op.CO_ROUTINE, Op.MATERIALIZE) and n.name}
    aliases: dict[str, str] = {}
    if sql:
        derived |= {c.lower() for c in sql_ctes(sql)}
        aliases = {k.lower(): v for k, v in sql_aliases(sql).items()}
    tables = None if known_tables is None else {t.lower() for t in known_tables}
    for node in nodes:
        if not node.is_access or node.name is None or node.subquery is not None:
            continue
        key = node.name.lower()
        if key in derived and node.table is None:
            node.derived = True
            continue
        if node.table is None:
            node.table = aliases.get(key, node.name)
            if node.table.lower() != key:
                node.alias = node.name
        if node.table.lower() in derived:  # an alias of a CTE: "FROM c AS d"
            node.derived = True
            continue
        if tables is not None:
            node.known_table = node.table.lower() in tables
    return QueryPlan(roots, sql=sql, params=params)
