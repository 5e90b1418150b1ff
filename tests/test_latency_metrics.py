"""``Database(record_metrics=True)``: per-operation latency samples in ``metrics``."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from abathur_memkit import Database, InvalidInputError
from abathur_memkit.engines.sqlite.driver import select_driver
from abathur_memkit.metrics import operation_name


def _latency_rows(path: Path) -> list[tuple[str, float]]:
    with closing(select_driver().connect(str(path))) as conn:
        return conn.execute("SELECT metric_name, metric_value FROM metrics "
                            "WHERE metric_name LIKE 'latency.%' ORDER BY id").fetchall()


async def test_samples_are_buffered_and_written_on_close(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    async with Database(path, record_metrics=True) as db:
        await db.memory.add_memory("user:a", "k", 1, "semantic", "user:a")
        assert await db.memory.get_memory("user:a", "k") is not None
        await db.sessions.create_session("s", "app", "u")
        assert await db.sessions.get_session("s") is not None
        assert _latency_rows(path) == []  # no write per sample
    names = [name for name, _ in _latency_rows(path)]
    assert {"latency.add_memory", "latency.get_memory", "latency.create_session",
            "latency.get_session"} <= set(names)
    assert all(ms >= 0 for _, ms in _latency_rows(path))


async def test_samples_are_written_on_postgresql_too(pg_memkit_dsn: str) -> None:
    async with Database(pg_memkit_dsn, record_metrics=True) as db:
        await db.memory.add_memory("user:a", "k", 1, "semantic", "user:a")
        assert await db.memory.get_memory("user:a", "k") is not None
        assert await db.metrics.query("latency.add_memory") == []  # no write per sample
    async with Database(pg_memkit_dsn) as db:
        for name in ("latency.add_memory", "latency.get_memory"):
            (sample,) = await db.metrics.query(name)
            assert sample["metric_value"] >= 0 and sample["labels"] is None


async def test_a_full_buffer_is_written_in_one_batch(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    async with Database(path, record_metrics=True) as db:
        await db.sessions.create_session("s", "app", "u")
        for _ in range(600):
            await db.sessions.get_state("s", "k")
        written = len(_latency_rows(path))
        assert written == 500  # the first 500 samples, before close
    assert len(_latency_rows(path)) == 601


async def test_off_by_default(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    async with Database(path) as db:
        await db.sessions.create_session("s", "app", "u")
        await db.sessions.get_session("s")
    assert _latency_rows(path) == []


def test_record_metrics_must_be_a_bool() -> None:
    with pytest.raises(InvalidInputError, match="record_metrics"):
        Database(":memory:", record_metrics="yes")  # type: ignore[arg-type]


class Service:
    def get_memory(self) -> object:
        def get() -> None: ...
        return get


def test_operation_name_is_the_public_method() -> None:
    assert operation_name(Service().get_memory()) == "get_memory"  # type: ignore[arg-type]
    # A function defined inside another is named after the outer one.
    assert operation_name(lambda: None) == "test_operation_name_is_the_public_method"


async def test_the_performance_plot_draws_one_box_per_operation(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from abathur_memkit.analysis import load_metrics_sync, plot_operation_latency

    path = tmp_path / "m.db"
    async with Database(path, record_metrics=True) as db:
        await db.sessions.create_session("s", "app", "u")
        await db.sessions.get_session("s")
    fig = plot_operation_latency(load_metrics_sync(path))
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert {"create_session (1)", "get_session (1)"} <= set(labels)
    empty = plot_operation_latency(load_metrics_sync(path).iloc[0:0])
    assert "record_metrics=True" in empty.axes[0].texts[0].get_text()
