"""The EXPLAIN QUERY PLAN parser: old and new formats, trees, full-scan rules."""

from __future__ import annotations

import sqlite3

import pytest

from pytest_abathur.plan import Op, parse_plan, sql_aliases, sql_ctes

# Recorded from SQLite 3.50.4 (sqlean) for the schema in SCHEMA below.
NEW_FORMAT = {
    "select * from t": [(2, 0, 216, "SCAN t")],
    "select * from t where a=1": [(3, 0, 62, "SEARCH t USING INDEX t_ab (a=?)")],
    "select a,b from t where a=1": [(2, 0, 55, "SEARCH t USING COVERING INDEX t_ab (a=?)")],
    "select * from t where id=1": [(2, 0, 33, "SEARCH t USING INTEGER PRIMARY KEY (rowid=?)")],
    "select * from u where x='a'": [(2, 0, 39, "SEARCH u USING PRIMARY KEY (x=?)")],
    "select * from t as tt where tt.a=1": [(3, 0, 62, "SEARCH tt USING INDEX t_ab (a=?)")],
    "select count(*) from t": [(4, 0, 0, "SCAN t USING COVERING INDEX t_a")],
    "select * from w where p=1 or q=2": [
        (4, 0, 0, "MULTI-INDEX OR"),
        (5, 4, 0, "INDEX 1"),
        (11, 5, 62, "SEARCH w USING INDEX w_p (p=?)"),
        (16, 4, 0, "INDEX 2"),
        (22, 16, 62, "SEARCH w USING INDEX w_q (q=?)"),
    ],
    "select (select max(z) from v) from t": [
        (2, 0, 212, "SCAN t USING COVERING INDEX t_a"),
        (6, 0, 0, "SCALAR SUBQUERY 1"),
        (11, 6, 216, "SEARCH v"),
    ],
    "with c as (select a, count(*) n from t group by a) select * from c where n>1": [
        (2, 0, 0, "CO-ROUTINE c"),
        (8, 2, 212, "SCAN t USING COVERING INDEX t_a"),
        (37, 0, 82, "SCAN c"),
    ],
    "with c as materialized (select a from t where a=1) select * from c, c as d where c.a=d.a": [
        (3, 0, 0, "MATERIALIZE c"),
        (6, 3, 212, "SEARCH t USING COVERING INDEX t_a (a=?)"),
        (18, 0, 216, "SCAN c"),
        (22, 0, 0, "BLOOM FILTER ON d (a=?)"),
        (31, 0, 53, "SEARCH d USING AUTOMATIC COVERING INDEX (a=?)"),
    ],
    "select a from t where a=1 union all select z from v where id=2": [
        (1, 0, 0, "COMPOUND QUERY"),
        (2, 1, 0, "LEFT-MOST SUBQUERY"),
        (4, 2, 212, "SEARCH t USING COVERING INDEX t_a (a=?)"),
        (9, 1, 0, "UNION ALL"),
        (11, 9, 216, "SEARCH v USING INTEGER PRIMARY KEY (rowid=?)"),
    ],
    "select 1": [(1, 0, 0, "SCAN CONSTANT ROW")],
    "select * from f where f match 'x'": [(2, 0, 132, "SCAN f VIRTUAL TABLE INDEX 0:M1")],
    "select * from t join v on v.t_id = t.b": [
        (3, 0, 216, "SCAN t"),
        (7, 0, 0, "BLOOM FILTER ON v (t_id=?)"),
        (17, 0, 53, "SEARCH v USING AUTOMATIC COVERING INDEX (t_id=?)"),
    ],
    "select * from t left join v on v.t_id = t.id": [
        (3, 0, 216, "SCAN t"),
        (5, 0, 216, "SCAN v LEFT-JOIN"),
    ],
    "select * from (values (1),(2))": [(7, 0, 216, "SCAN 2-ROW VALUES CLAUSE")],
    "with recursive r(n) as (select 1 union all select n+1 from r where n<10) select * from r": [
        (2, 0, 0, "CO-ROUTINE r"),
        (5, 2, 0, "SETUP"),
        (6, 5, 0, "SCAN CONSTANT ROW"),
        (17, 2, 0, "RECURSIVE STEP"),
        (18, 17, 216, "SCAN r"),
        (28, 0, 215, "SCAN r"),
    ],
}

# Before 3.36 SQLite printed "SCAN TABLE t" and "SEARCH TABLE t", and the alias
# after the table ("AS tt"). Transcribed from SQLite's EXPLAIN QUERY PLAN
# documentation of the 3.24-3.35 releases and from plans published with them;
# the ids are what those versions number such rows.
OLD_FORMAT = {
    "docs: search with index, then scan": [
        (3, 0, 0, "SEARCH TABLE t1 USING INDEX i2 (a=? AND b>?)"),
        (7, 0, 0, "SCAN TABLE t2"),
    ],
    "docs: index order scan": [(4, 0, 0, "SCAN TABLE t2 USING INDEX i4")],
    "docs: subqueries": [
        (3, 0, 0, "SCAN TABLE t2 USING COVERING INDEX i4"),
        (5, 0, 0, "SCALAR SUBQUERY"),
        (10, 5, 0, "SEARCH TABLE t1 USING COVERING INDEX i2 (a=?)"),
        (23, 0, 0, "CORRELATED SCALAR SUBQUERY"),
        (28, 23, 0, "SEARCH TABLE t1 USING INDEX i3 (b=?)"),
    ],
    "docs: co-routine": [
        (2, 0, 0, "CO-ROUTINE 1"),
        (5, 2, 0, "SCAN TABLE t1 USING COVERING INDEX i2"),
        (40, 0, 0, "SCAN SUBQUERY 1"),
        (53, 0, 0, "USE TEMP B-TREE FOR GROUP BY"),
    ],
    "docs: compound": [
        (1, 0, 0, "COMPOUND QUERY"),
        (2, 1, 0, "LEFT-MOST SUBQUERY"),
        (4, 2, 0, "SCAN TABLE t1 USING COVERING INDEX i1"),
        (13, 1, 0, "UNION USING TEMP B-TREE"),
        (15, 13, 0, "SCAN TABLE t2 USING COVERING INDEX i4"),
    ],
    "docs: merge": [
        (1, 0, 0, "MERGE (EXCEPT)"),
        (2, 1, 0, "LEFT"),
        (4, 2, 0, "SCAN TABLE t1 USING COVERING INDEX i1"),
        (13, 1, 0, "RIGHT"),
        (15, 13, 0, "SCAN TABLE t2"),
        (21, 13, 0, "USE TEMP B-TREE FOR ORDER BY"),
    ],
    "published: alias and covering": [
        (3, 0, 0, "SCAN TABLE publishers AS p USING COVERING INDEX publisher_names"),
        (9, 0, 0, "SEARCH TABLE books USING COVERING INDEX book_publishers (publisher_id=?)"),
    ],
    "published: range on covering index": [
        (3, 0, 0, "SEARCH TABLE hash USING COVERING INDEX hash_base32 (base32>? AND base32<?)")
    ],
    "multi-index or": [
        (4, 0, 0, "MULTI-INDEX OR"),
        (5, 4, 0, "INDEX 1"),
        (9, 5, 0, "SEARCH TABLE t1 USING INDEX i1 (a=?)"),
        (14, 4, 0, "INDEX 2"),
        (18, 14, 0, "SEARCH TABLE t1 USING INTEGER PRIMARY KEY (rowid=?)"),
    ],
    "automatic index on a subquery and a table": [
        (2, 0, 0, "MATERIALIZE 1"),
        (5, 2, 0, "SCAN TABLE t2"),
        (20, 0, 0, "SCAN TABLE t1 AS a"),
        (24, 0, 0, "SEARCH SUBQUERY 1 AS s USING AUTOMATIC COVERING INDEX (c=?)"),
        (30, 0, 0, "SEARCH TABLE t3 USING AUTOMATIC COVERING INDEX (x=?)"),
    ],
    "virtual table": [(2, 0, 0, "SCAN TABLE docs VIRTUAL TABLE INDEX 0:M1")],
}


def one(rows: list[tuple[int, int, int, str]], sql: str | None = None):  # type: ignore[no-untyped-def]
    plan = parse_plan(rows, sql=sql)
    assert len(plan.nodes) == 1
    return plan.nodes[0]


class TestNewFormat:
    def test_scan_is_a_full_scan(self) -> None:
        node = one(NEW_FORMAT["select * from t"])
        assert (node.op, node.table, node.index, node.is_full_scan) == (Op.SCAN, "t", None, True)
        assert node.full_scan_reason == "full table scan"

    def test_search_with_index(self) -> None:
        node = one(NEW_FORMAT["select * from t where a=1"])
        assert node.op is Op.SEARCH
        assert (node.table, node.index, node.covering, node.constraints) == (
            "t",
            "t_ab",
            False,
            "a=?",
        )
        assert not node.is_full_scan

    def test_covering_search(self) -> None:
        node = one(NEW_FORMAT["select a,b from t where a=1"])
        assert node.covering and node.index == "t_ab" and not node.is_full_scan

    def test_rowid_and_primary_key(self) -> None:
        rowid = one(NEW_FORMAT["select * from t where id=1"])
        assert rowid.rowid and not rowid.primary_key and rowid.constraints == "rowid=?"
        assert not rowid.is_full_scan
        pk = one(NEW_FORMAT["select * from u where x='a'"])
        assert pk.primary_key and not pk.rowid and not pk.is_full_scan

    def test_alias_resolved_from_sql(self) -> None:
        sql = "select * from t as tt where tt.a=1"
        node = one(NEW_FORMAT[sql], sql)
        assert (node.name, node.table, node.alias) == ("tt", "t", "tt")

    def test_covering_index_scan_counts_as_full_scan(self) -> None:
        node = one(NEW_FORMAT["select count(*) from t"])
        assert node.covering and node.index == "t_a"
        assert node.full_scan_reason == "full scan of covering index t_a"

    def test_min_max_search_without_index_is_a_scan(self) -> None:
        plan = parse_plan(NEW_FORMAT["select (select max(z) from v) from t"])
        reasons = {n.name: n.full_scan_reason for n in plan.full_scans()}
        assert set(reasons) == {"t", "v"}
        assert "min()/max()" in str(reasons["v"])
        assert plan.nodes[1].op is Op.SUBQUERY and plan.nodes[1].subquery == 1
        assert plan.nodes[2].depth == 1

    def test_multi_index_or_tree(self) -> None:
        plan = parse_plan(NEW_FORMAT["select * from w where p=1 or q=2"])
        (root,) = plan.roots
        assert root.op is Op.MULTI_INDEX_OR
        assert [c.op for c in root.children] == [Op.OR_TERM, Op.OR_TERM]
        assert [c.children[0].index for c in root.children] == ["w_p", "w_q"]
        assert plan.indexes == ["w_p", "w_q"] and not plan.full_scans()

    def test_cte_co_routine_scan_is_not_a_table_scan(self) -> None:
        sql = "with c as (select a, count(*) n from t group by a) select * from c where n>1"
        plan = parse_plan(NEW_FORMAT[sql], sql=sql)
        assert plan.roots[0].op is Op.CO_ROUTINE and plan.roots[0].name == "c"
        assert [n.target for n in plan.full_scans()] == ["t"]  # the CTE's body, not "SCAN c"

    def test_materialized_cte_alias_and_automatic_index(self) -> None:
        sql = (
            "with c as materialized (select a from t where a=1) "
            "select * from c, c as d where c.a=d.a"
        )
        plan = parse_plan(NEW_FORMAT[sql], sql=sql)
        assert plan.roots[0].op is Op.MATERIALIZE
        auto = plan.nodes[-1]
        assert auto.automatic_index and auto.derived  # over the CTE: its cost is the CTE's
        bloom = plan.nodes[-2]
        assert bloom.op is Op.BLOOM_FILTER and bloom.name == "d"
        assert plan.full_scans() == []

    def test_automatic_index_on_a_table_is_a_full_scan(self) -> None:
        plan = parse_plan(NEW_FORMAT["select * from t join v on v.t_id = t.b"])
        assert [(n.target, n.automatic_index) for n in plan.full_scans()] == [
            ("t", False),
            ("v", True),
        ]

    def test_compound(self) -> None:
        plan = parse_plan(
            NEW_FORMAT["select a from t where a=1 union all select z from v where id=2"]
        )
        assert [n.op for n in plan.nodes[:2]] == [Op.COMPOUND, Op.COMPOUND]
        assert plan.full_scans() == []

    def test_constant_rows_values_and_virtual_tables_are_not_scans(self) -> None:
        for sql in ("select 1", "select * from (values (1),(2))"):
            assert one(NEW_FORMAT[sql]).op is Op.CONSTANT
        vt = one(NEW_FORMAT["select * from f where f match 'x'"])
        assert vt.virtual and vt.virtual_index == "0:M1" and not vt.is_full_scan

    def test_left_join_suffix(self) -> None:
        plan = parse_plan(NEW_FORMAT["select * from t left join v on v.t_id = t.id"])
        assert plan.nodes[1].join == "LEFT-JOIN" and plan.nodes[1].table == "v"

    def test_recursive_cte(self) -> None:
        sql = (
            "with recursive r(n) as (select 1 union all select n+1 from r where n<10) "
            "select * from r"
        )
        plan = parse_plan(NEW_FORMAT[sql], sql=sql)
        assert plan.full_scans() == []
        assert [n.detail for n in plan.roots[0].children] == ["SETUP", "RECURSIVE STEP"]

    def test_known_tables_decide_over_names(self) -> None:
        rows = [(2, 0, 0, "SCAN sqlite_master"), (3, 0, 0, "SCAN mystery")]
        assert [n.name for n in parse_plan(rows).full_scans()] == ["mystery"]
        assert parse_plan(rows, known_tables={"t"}).full_scans() == []


class TestOldFormat:
    def test_scan_table_and_search_table(self) -> None:
        plan = parse_plan(OLD_FORMAT["docs: search with index, then scan"])
        search, scan = plan.nodes
        assert (search.op, search.table, search.index, search.constraints) == (
            Op.SEARCH,
            "t1",
            "i2",
            "a=? AND b>?",
        )
        assert (scan.op, scan.table, scan.full_scan_reason) == (Op.SCAN, "t2", "full table scan")

    def test_index_order_scan(self) -> None:
        node = one(OLD_FORMAT["docs: index order scan"])
        assert node.table == "t2" and node.index == "i4" and not node.covering
        assert node.full_scan_reason == "full scan in the order of index i4"

    def test_unnumbered_subqueries(self) -> None:
        plan = parse_plan(OLD_FORMAT["docs: subqueries"])
        kinds = [(n.op, n.correlated, n.depth) for n in plan.nodes]
        assert kinds == [
            (Op.SCAN, False, 0),
            (Op.SUBQUERY, False, 0),
            (Op.SEARCH, False, 1),
            (Op.SUBQUERY, True, 0),
            (Op.SEARCH, False, 1),
        ]
        assert [n.target for n in plan.full_scans()] == ["t2"]

    def test_scan_subquery_is_not_a_table(self) -> None:
        plan = parse_plan(OLD_FORMAT["docs: co-routine"])
        scan_sub = plan.nodes[2]
        assert scan_sub.subquery == 1 and not scan_sub.is_full_scan
        assert [n.target for n in plan.full_scans()] == ["t1"]

    def test_compound_and_merge(self) -> None:
        for key in ("docs: compound", "docs: merge"):
            plan = parse_plan(OLD_FORMAT[key])
            assert plan.roots[0].op is Op.COMPOUND
            assert len(plan.roots) == 1
        merge = parse_plan(OLD_FORMAT["docs: merge"])
        assert [n.target for n in merge.full_scans()] == ["t1", "t2"]

    def test_alias_after_table(self) -> None:
        plan = parse_plan(OLD_FORMAT["published: alias and covering"])
        scan, search = plan.nodes
        assert (scan.table, scan.alias, scan.index, scan.covering) == (
            "publishers",
            "p",
            "publisher_names",
            True,
        )
        assert scan.is_full_scan and not search.is_full_scan
        assert plan.full_scans(["p"]) == plan.full_scans(["publishers"]) == [scan]

    def test_range_constraints(self) -> None:
        node = one(OLD_FORMAT["published: range on covering index"])
        assert node.constraints == "base32>? AND base32<?" and not node.is_full_scan

    def test_multi_index_or(self) -> None:
        plan = parse_plan(OLD_FORMAT["multi-index or"])
        assert plan.roots[0].op is Op.MULTI_INDEX_OR
        assert [n.index for n in plan.accesses()] == ["i1", None]
        assert plan.accesses()[1].rowid

    def test_automatic_indexes(self) -> None:
        plan = parse_plan(OLD_FORMAT["automatic index on a subquery and a table"])
        assert [(n.target, n.full_scan_reason is not None) for n in plan.accesses()] == [
            ("t2", True),
            ("t1", True),
            ("SUBQUERY 1", False),
            ("t3", True),
        ]
        assert plan.accesses()[1].alias == "a"

    def test_virtual_table(self) -> None:
        node = one(OLD_FORMAT["virtual table"])
        assert node.virtual and node.target == "docs"
        assert not node.is_full_scan

    def test_pre_324_flat_rows(self) -> None:
        plan = parse_plan(
            [
                "SCAN TABLE t1 (~1000000 rows)",
                "SEARCH TABLE t2 USING INDEX i1 (a=?) (~10 rows)",
                "EXECUTE CORRELATED SCALAR SUBQUERY 1",
                "COMPOUND SUBQUERIES 1 AND 2 USING TEMP B-TREE (UNION)",
            ]
        )
        scan, search, sub, compound = plan.nodes
        assert scan.estimated_rows == 1_000_000 and scan.is_full_scan
        assert search.estimated_rows == 10 and search.index == "i1"
        assert sub.op is Op.SUBQUERY and sub.correlated and sub.subquery == 1
        assert compound.op is Op.COMPOUND


def test_render_draws_the_shell_tree_and_marks_scans() -> None:
    plan = parse_plan(OLD_FORMAT["docs: subqueries"])
    assert plan.render() == "\n".join(
        [
            "QUERY PLAN",
            "|--SCAN TABLE t2 USING COVERING INDEX i4   <-- full scan of covering index i4",
            "|--SCALAR SUBQUERY",
            "|  `--SEARCH TABLE t1 USING COVERING INDEX i2 (a=?)",
            "`--CORRELATED SCALAR SUBQUERY",
            "   `--SEARCH TABLE t1 USING INDEX i3 (b=?)",
        ]
    )
    assert "<--" not in plan.render(mark=False)


def test_unknown_details_parse_as_other() -> None:
    plan = parse_plan([(1, 0, 0, "SOMETHING A FUTURE SQLITE PRINTS"), (2, 1, 0, "SCAN t")])
    assert plan.roots[0].op is Op.OTHER
    assert plan.roots[0].children[0].is_full_scan


def test_rows_as_mappings_and_triples() -> None:
    a = parse_plan([{"id": 2, "parent": 0, "detail": "SCAN t"}])
    b = parse_plan([(2, 0, "SCAN t")])
    assert a.nodes[0].detail == b.nodes[0].detail == "SCAN t"
    with pytest.raises(ValueError, match="not an EXPLAIN QUERY PLAN row"):
        parse_plan([(1, 2)])


def test_sql_aliases_and_ctes() -> None:
    sql = (
        "WITH recent(id) AS (SELECT id FROM audit), x AS MATERIALIZED (SELECT 1) "
        "SELECT m.id FROM memory_entries m JOIN audit AS a ON a.memory_entry_id = m.id, "
        '"odd name" o LEFT JOIN json_each(?) j WHERE m.id IN (SELECT id FROM recent)'
    )
    aliases = sql_aliases(sql)
    assert aliases["m"] == "memory_entries" and aliases["a"] == "audit"
    assert aliases["o"] == "odd name" and aliases["j"] == "json_each"
    assert sql_ctes(sql) == {"recent", "x"}
    assert sql_aliases("UPDATE sessions AS s SET status = 'x' WHERE s.id = ?")["s"] == "sessions"
    # A comment or string that looks like SQL is not a table reference.
    assert "nope" not in sql_aliases("SELECT 'FROM nope' FROM t -- FROM nope2\n")


# The current SQLite (whichever driver this machine has) must still print what
# the parser understands: a format change shows up here, not in users' suites.
SCHEMA = """
create table t(id integer primary key, a, b, c);
create index t_a on t(a);
create index t_ab on t(a,b);
create table u(x text primary key, y) without rowid;
create table v(id integer primary key, t_id, z);
create table w(p, q);
create index w_p on w(p);
create index w_q on w(q);
"""


@pytest.mark.parametrize("driver", ["sqlite3", "sqlean"])
def test_live_plans_classify_as_recorded(driver: str) -> None:
    module = sqlite3 if driver == "sqlite3" else pytest.importorskip("sqlean")
    conn = module.connect(":memory:")
    try:
        conn.executescript(SCHEMA)
        expectations = {
            "select * from t": ["t"],
            "select * from t where a=1": [],
            "select * from t as tt where tt.a=1": [],
            "select count(*) from t": ["t"],
            "select * from w where p=1 or q=2": [],
            "select (select max(z) from v) from t": ["t", "v"],
            "select * from t where id in (select t_id from v)": ["v"],
            "with c as (select a from t where a=1) select * from c": [],
        }
        for sql, scanned in expectations.items():
            rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            plan = parse_plan(rows, sql=sql, known_tables={"t", "u", "v", "w"})
            assert sorted(n.target or "" for n in plan.full_scans()) == scanned, plan.render()
    finally:
        conn.close()
