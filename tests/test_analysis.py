"""abathur_memkit.analysis on a database whose every row is known: exact counts and bytes."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from abathur_memkit import Database, analysis  # noqa: E402
from abathur_memkit.analysis.storage import kind_of_table  # noqa: E402
from abathur_memkit.errors import DatabaseFileError, InvalidInputError  # noqa: E402

# (namespace, key, value JSON, memory_type, version, created_at)
MEMORIES = [
    ("user:alice:prefs", "theme", '{"mode":"dark"}', "semantic", 1, "2026-01-01 10:00:00.000000"),
    ("user:alice:prefs", "theme", '{"mode":"light"}', "semantic", 2, "2026-01-01 11:00:00.000000"),
    ("session:s1", "obs_1", '{"x":1}', "episodic", 1, "2026-01-02 09:00:00.000000"),
    ("project:p1:knowledge", "fact", '"café"', "semantic", 1, "2026-01-03 12:00:00.000000"),
]
EVENTS = ['{"e":1}', '{"e":22}', '{"e":333}']
# (timestamp, agent_id, action_type, action_data, operation, namespace, entry id)
AUDIT = [
    ("2026-01-01 10:00:00.000000", None, "memory_create", '{"by":"system"}', "create",
     "user:alice:prefs", 1),
    ("2026-01-01 11:00:00.000000", None, "memory_update", '{"by":"session:s1"}', "update",
     "user:alice:prefs", 2),
    ("2026-01-02 09:00:00.000000", "agent-7", "memory_create", None, "create", "session:s1", 3),
    ("2026-01-03 12:00:00.000000", None, "memory_create", '{"by":"agent:coder-01"}', "create",
     "project:p1:knowledge", 4),
    ("2026-01-03 13:00:00.000000", None, "task_submitted", '{"priority":5}', None, None, None),
]


def _payload(*values: Any) -> int:
    """Bytes of each value as SQLite text/blob: what growth's payload_bytes sums."""
    return sum(0 if v is None else len(str(v).encode()) for v in values)


async def _fill(db: Database) -> None:
    def insert(conn: Any) -> None:
        for ns, key, value, kind, version, at in MEMORIES:
            conn.execute(
                "INSERT INTO memory_entries (namespace, key, value, memory_type, version, "
                "metadata, created_by, updated_by, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, '{}', 'system', 'system', ?, ?)",
                (ns, key, value, kind, version, at, at))
        conn.execute("INSERT INTO sessions (id, app_name, user_id, created_at, last_update_time) "
                     "VALUES ('s1', 'abathur', 'alice', '2026-01-02 08:00:00.000000', "
                     "'2026-01-02 08:30:00.000000')")
        for seq, event in enumerate(EVENTS, 1):
            conn.execute("INSERT INTO session_events (session_id, seq, event, created_at) "
                         "VALUES ('s1', ?, ?, ?)",
                         (seq, event, f"2026-01-02 08:1{seq}:00.000000"))
        conn.executemany(
            "INSERT INTO audit (timestamp, agent_id, action_type, action_data, "
            "memory_operation_type, memory_namespace, memory_entry_id) VALUES (?,?,?,?,?,?,?)",
            AUDIT)

    await db.write(insert)


@pytest.fixture
async def known(tmp_path: Path) -> AsyncIterator[tuple[Database, Path]]:
    path = tmp_path / "known.db"
    async with Database(path) as db:
        await _fill(db)
        yield db, path


# -- loaders ---------------------------------------------------------------------


async def test_load_audit_async_and_sync_agree(known: tuple[Database, Path]) -> None:
    db, path = known
    frame = await analysis.load_audit(db)
    same = analysis.load_audit_sync(path)
    assert len(frame) == len(AUDIT) == len(same)
    assert frame["id"].tolist() == same["id"].tolist() == [1, 2, 3, 4, 5]
    assert str(frame["timestamp"].dt.tz) == "UTC"
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2026-01-01 10:00", tz="UTC")
    assert frame["action_data"].iloc[0] == {"by": "system"}
    assert frame["action_data"].iloc[2] is None  # NULL stays None, never NaN
    # The same database read through a Database object, synchronously.
    assert analysis.load_audit_sync(db)["id"].tolist() == [1, 2, 3, 4, 5]


async def test_load_memories_sessions_events_metrics(known: tuple[Database, Path]) -> None:
    db, path = known
    memories = analysis.load_memories_sync(path)
    assert memories["key"].tolist() == ["theme", "theme", "obs_1", "fact"]
    assert memories["value"].iloc[3] == "café"
    assert memories["is_deleted"].dtype == bool
    raw = analysis.load_memories_sync(path, parse_json=False)
    assert raw["value"].iloc[0] == '{"mode":"dark"}'
    sessions = await analysis.load_sessions(db)
    assert sessions[["id", "event_count"]].values.tolist() == [["s1", 3]]
    assert sessions["terminated_at"].isna().all()
    events = analysis.load_events_sync(path)
    assert [e["e"] for e in events["event"]] == [1, 22, 333]
    await db.metrics.record("tokens", 12.5, {"model": "m"})
    metrics = await analysis.load_metrics(db)
    assert metrics[["metric_name", "metric_value"]].values.tolist() == [["tokens", 12.5]]
    assert metrics["labels"].iloc[0] == {"model": "m"}


async def test_loaders_on_memory_database() -> None:
    async with Database(":memory:") as db:
        await _fill(db)
        assert len(await analysis.load_audit(db)) == len(AUDIT)
        with pytest.raises(InvalidInputError, match="in-memory Database"):
            analysis.memory_growth(db)


def test_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(DatabaseFileError, match="no database at"):
        analysis.load_audit_sync(tmp_path / "missing.db")
    with pytest.raises(InvalidInputError, match="Invalid table: 'nope'"):
        analysis.load_table_sync(tmp_path / "missing.db", "nope")


def test_missing_pandas_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    with pytest.raises(analysis.MissingDependencyError,
                       match=r"pip install 'abathur-memkit\[notebooks\]'") as info:
        analysis.load_benchmarks([])
    assert isinstance(info.value, ImportError)


# -- growth, storage, capacity ---------------------------------------------------


def _growth_row(growth: Any, day: str, kind: str, scope: Any = None,
                memory_type: Any = None) -> Any:
    match = (growth["day"] == pd.Timestamp(day, tz="UTC")) & (growth["kind"] == kind)
    match &= growth["scope"].isna() if scope is None else growth["scope"] == scope
    match &= (growth["memory_type"].isna() if memory_type is None
              else growth["memory_type"] == memory_type)
    rows = growth[match]
    assert len(rows) == 1, rows
    return rows.iloc[0]


async def test_memory_growth_counts_and_payload_bytes(known: tuple[Database, Path]) -> None:
    _, path = known
    growth = analysis.memory_growth(path, use_dbstat=False)
    assert set(growth["bytes_method"]) == {"length"}
    day1 = _growth_row(growth, "2026-01-01", "memory", "user", "semantic")
    assert day1["rows"] == 2
    # Every column of both rows: id, namespace, key, value, memory_type, version,
    # is_deleted, metadata, created_by, updated_by, created_at, updated_at.
    # Row 1: 1+16+5+15+8+1+1+2+6+6+26+26 = 113; row 2 has a one byte longer value.
    assert day1["payload_bytes"] == 113 + 114 == 227
    assert day1["bytes"] == 227 and math.isnan(day1["index_bytes"])
    cafe = _growth_row(growth, "2026-01-03", "memory", "project", "semantic")
    # "café" is 6 characters and 7 bytes of UTF-8: bytes are bytes, not characters.
    assert cafe["payload_bytes"] == _payload(
        4, "project:p1:knowledge", "fact", '"café"', "semantic", 1, 0, "{}", "system",
        "system", MEMORIES[3][5], MEMORIES[3][5]) == 1 + 20 + 4 + 7 + 8 + 1 + 1 + 2 + 6 + 6 + 52
    events = _growth_row(growth, "2026-01-02", "event", "session")
    assert events["rows"] == 3
    assert events["payload_bytes"] == sum(
        _payload("s1", seq, event, f"2026-01-02 08:1{seq}:00.000000")
        for seq, event in enumerate(EVENTS, 1))
    audit_memory = _growth_row(growth, "2026-01-01", "audit", "user")
    assert audit_memory["rows"] == 2
    assert _growth_row(growth, "2026-01-03", "audit")["rows"] == 1  # the task row: no scope
    assert _growth_row(growth, "2026-01-02", "session")["rows"] == 1
    totals = growth.groupby("kind")["rows"].sum().to_dict()
    assert totals == {"audit": 5, "event": 3, "memory": 4, "session": 1}


async def test_memory_growth_dbstat_bytes_add_up(known: tuple[Database, Path]) -> None:
    db, path = known
    growth = analysis.memory_growth(db)  # a file-backed Database works as a source
    assert set(growth["bytes_method"]) == {"dbstat"}
    page = int((await db.fetchone("PRAGMA page_size"))["page_size"])  # type: ignore[index]
    memory = growth[growth["kind"] == "memory"]
    # memory_entries fits one page; each index of the memory kind is one page too.
    assert memory["data_bytes"].sum() == pytest.approx(page)
    index_btrees = [r["name"] for r in await db.fetchall(
        "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'")
        if kind_of_table(r["tbl_name"]) == "memory"]
    assert len(index_btrees) >= 7  # the six named memory indexes and UNIQUE's autoindex
    assert memory["index_bytes"].sum() == pytest.approx(page * len(index_btrees))
    # Shared out by payload: the 2026-01-01 rows carry 227 of the 4 rows' payload.
    total_payload = memory["payload_bytes"].sum()
    day1 = _growth_row(growth, "2026-01-01", "memory", "user", "semantic")
    assert day1["data_bytes"] == pytest.approx(page * 227 / total_payload)
    # Per kind, growth and the storage breakdown measure the same b-trees.
    storage = analysis.storage_breakdown(path)
    for kind, frame in growth.groupby("kind"):
        measured = storage[(storage["kind"] == kind)
                           & storage["role"].isin(["data", "index", "search"])]["bytes"].sum()
        assert frame["bytes"].sum() == pytest.approx(measured), kind


async def test_storage_breakdown_is_the_whole_file(known: tuple[Database, Path]) -> None:
    db, path = known
    await db.checkpoint()
    storage = analysis.storage_breakdown(path)
    pages = await db.fetchone("PRAGMA page_count")
    size = await db.fetchone("PRAGMA page_size")
    assert pages is not None and size is not None
    assert storage["bytes"].sum() == pages["page_count"] * size["page_size"]
    assert storage["share"].sum() == pytest.approx(1.0)
    row = storage[storage["name"] == "idx_memory_namespace_prefix"].iloc[0]
    assert (row["table"], row["type"], row["kind"], row["role"]) == (
        "memory_entries", "index", "memory", "index")
    assert kind_of_table("memory_fts_data") == "memory"
    assert kind_of_table("document_chunks_fts_idx") == "document_chunk"
    assert kind_of_table("sqlite_sequence") == "other"


def test_capacity_projection_exact() -> None:
    days = pd.date_range("2026-01-01", periods=4, freq="D", tz="UTC")
    growth = pd.DataFrame({
        "day": [*days, days[1]],
        "kind": ["memory", "memory", "memory", "memory", "event"],
        "rows": [1, 1, 1, 1, 10],
        "bytes": [100.0, 100.0, 300.0, 400.0, 100.0],
        "data_bytes": [60.0, 60.0, 180.0, 240.0, 100.0],
        "index_bytes": [40.0, 40.0, 120.0, 160.0, 0.0],
        "search_bytes": [0.0] * 5,
        "bytes_method": ["dbstat"] * 5,
    })
    # Added per day 100, 200, 300, 400: cumulative 100, 300, 600, 1000, slope 300/day.
    projection = analysis.capacity_projection(growth, limit_gb=4000 / 1e9)
    assert projection.current_bytes == 1000
    assert projection.bytes_per_day == pytest.approx(300)
    assert projection.days_observed == 4
    assert projection.days_to_limit == pytest.approx(10)
    assert projection.reaches_limit_on == pd.Timestamp("2026-01-14", tz="UTC")
    assert projection.bytes_per_memory == 225
    assert projection.bytes_per_event == 10
    assert math.isnan(projection.bytes_per_document_chunk)
    assert projection.index_share == pytest.approx(360 / 1000)
    assert projection.daily["cumulative_bytes"].tolist() == [100, 300, 600, 1000]
    ahead = projection.projected()
    assert ahead["cumulative_bytes"].iloc[-1] == pytest.approx(4000)
    data = projection.to_dict()
    assert data["reaches_limit_on"] == "2026-01-14" and json.dumps(data)
    assert "reaches 4e-06 GB on 2026-01-14" in projection.summary()
    # The last two days only: added 300 then 400, slope 400.
    assert analysis.capacity_projection(growth, window_days=2).bytes_per_day == 400
    with pytest.raises(InvalidInputError, match="limit_gb"):
        analysis.capacity_projection(growth, limit_gb=0)
    with pytest.raises(InvalidInputError, match="missing columns"):
        analysis.capacity_projection(growth.drop(columns=["bytes"]))


async def test_capacity_projection_of_known_database(known: tuple[Database, Path]) -> None:
    _, path = known
    growth = analysis.memory_growth(path, use_dbstat=False)
    projection = analysis.capacity_projection(growth)
    memory_bytes = growth.loc[growth["kind"] == "memory", "payload_bytes"].sum()
    assert projection.bytes_per_memory == memory_bytes / 4
    assert projection.days_observed == 3  # 2026-01-01 .. 2026-01-03
    assert projection.index_share is None  # no dbstat measure: not known
    assert projection.limit_bytes == 10 * 10**9


async def test_not_growing_never_reaches_the_limit(known: tuple[Database, Path]) -> None:
    growth = analysis.memory_growth(known[1])
    one_day = growth[growth["day"] == pd.Timestamp("2026-01-02", tz="UTC")]
    projection = analysis.capacity_projection(one_day.iloc[0:0])
    assert projection.days_to_limit is None and projection.reaches_limit_on is None
    assert "never" in projection.summary()


# -- audit activity --------------------------------------------------------------


async def test_activity_tables(known: tuple[Database, Path]) -> None:
    audit = analysis.load_audit_sync(known[1])
    writes = analysis.memory_writes(audit)
    assert writes["writer"].tolist() == ["system", "session:s1", "agent-7", "agent:coder-01"]
    ops = analysis.memory_operations(audit)
    assert ops.to_dict("index") == {
        pd.Timestamp("2026-01-01", tz="UTC"): {"create": 1, "update": 1},
        pd.Timestamp("2026-01-02", tz="UTC"): {"create": 1, "update": 0},
        pd.Timestamp("2026-01-03", tz="UTC"): {"create": 1, "update": 0},
    }
    weekly = analysis.memory_operations(audit, "W")
    assert weekly.to_numpy().sum() == 4
    top = analysis.top_namespaces(audit, 2)
    assert top.index.tolist() == ["user:alice:prefs", "project:p1:knowledge"]
    assert top.loc["user:alice:prefs"].to_dict() == {"create": 1, "update": 1, "total": 2}
    scopes = analysis.top_namespaces(audit, level="scope")
    assert scopes["total"].to_dict() == {"user": 2, "project": 1, "session": 1}
    by_role = analysis.writers(audit, level="role", by="scope")
    assert by_role.loc["agent"].to_dict() == {"user": 0, "project": 1, "session": 0, "total": 1}
    assert analysis.writers(audit).loc["session:s1", "update"] == 1
    with pytest.raises(InvalidInputError, match="level"):
        analysis.top_namespaces(audit, level="nope")


# -- plots -----------------------------------------------------------------------


def _check_figure(fig: Any) -> None:
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    drawn = [ax for ax in fig.axes if ax.has_data()]
    assert drawn, "nothing plotted"
    for ax in drawn:
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
        assert ax.get_title()
    units = " ".join(f"{ax.get_xlabel()} {ax.get_ylabel()}" for ax in drawn)
    assert any(u in units for u in ("(ms", "(count)", "(MB)", "(kB)", "(bytes)", "(GB",
                                    "(×", "(UTC)")), units


async def test_plots_of_known_database(known: tuple[Database, Path], tmp_path: Path) -> None:
    _, path = known
    growth = analysis.memory_growth(path)
    audit = analysis.load_audit_sync(path)
    figures = [
        analysis.plot_growth(growth),
        analysis.plot_growth(growth, by="scope"),
        analysis.plot_growth(growth, by="memory_type", value="rows"),
        analysis.plot_capacity(analysis.capacity_projection(growth)),
        analysis.plot_storage(analysis.storage_breakdown(path)),
        analysis.plot_memory_operations(audit),
        analysis.plot_top_namespaces(audit),
        analysis.plot_writers(audit),
    ]
    for n, fig in enumerate(figures):
        _check_figure(fig)
        fig.savefig(tmp_path / f"{n}.png")
        assert (tmp_path / f"{n}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "MB/day" in figures[3].axes[0].get_legend().get_texts()[1].get_text()
    with pytest.raises(InvalidInputError, match="Invalid by"):
        analysis.plot_growth(growth, by="nope")


def test_plots_of_empty_frames() -> None:
    empty_bench = analysis.load_benchmarks([])
    for fig in (analysis.plot_latency(empty_bench), analysis.plot_ratios(empty_bench),
                analysis.plot_runs(empty_bench)):
        assert "no " in fig.axes[0].texts[0].get_text()


# -- notebook inputs -------------------------------------------------------------


def test_notebook_inputs_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    (data / "bench").mkdir(parents=True)
    (data / "agents.db").write_bytes(b"")
    (data / "bench" / "run.json").write_text("{}")
    found = analysis.notebook_inputs(data)
    assert found.origin == "db" and found.database == (data / "agents.db").resolve()
    assert found.benchmarks == [(data / "bench" / "run.json").resolve()]
    monkeypatch.setenv("MEMKIT_DATA", str(data))
    assert analysis.notebook_inputs().origin == "$MEMKIT_DATA"
    monkeypatch.delenv("MEMKIT_DATA")
    demo = tmp_path / "memkit-demo"
    demo.mkdir()
    (demo / "agents.db").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert analysis.notebook_inputs().origin == "memkit demo output"
    (demo / "agents.db").unlink()
    sample = analysis.notebook_inputs()  # the repository's notebooks/data
    assert sample.origin == "sample data" and sample.database.is_file()
    assert "sample data" in sample.describe()
    with pytest.raises(InvalidInputError, match="does not exist"):
        analysis.notebook_inputs(tmp_path / "nope")
