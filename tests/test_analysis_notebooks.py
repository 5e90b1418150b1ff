"""What the notebooks show on any database: short spans, date axes, first runs, inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from abathur_memkit import analysis  # noqa: E402
from abathur_memkit.cli import main  # noqa: E402
from abathur_memkit.errors import InvalidInputError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_BENCH = ROOT / "notebooks" / "data" / "bench"


@pytest.fixture(scope="module")
def fresh_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A swarm run with real timestamps: seconds of data, under a name of its own."""
    path = tmp_path_factory.mktemp("fresh") / "swarm.sqlite"
    code = main(["simulate", str(path), "--operations", "200", "--agents", "3", "--days", "0",
                 "--no-progress", "--json"])
    assert code == 0
    return path


def _growth(days: list[str]) -> object:
    stamps = pd.to_datetime(days, utc=True)
    return pd.DataFrame({
        "day": stamps, "kind": "memory", "scope": "user", "memory_type": "semantic",
        "rows": 1, "payload_bytes": 100, "data_bytes": 100.0, "index_bytes": 0.0,
        "search_bytes": 0.0, "bytes": 100.0, "bytes_method": "length",
        "first_time": stamps + pd.Timedelta(hours=1), "last_time": stamps + pd.Timedelta(hours=20),
    })


def test_short_span_projection_is_unreliable(fresh_db: Path) -> None:
    projection = analysis.capacity_projection(analysis.memory_growth(fresh_db))
    assert projection.bytes_per_day > 0 and projection.reaches_limit_on is not None
    assert not projection.reliable and projection.span_hours < 1
    summary = projection.summary()
    assert "unreliable: only" in summary and "reaches 10 GB: not projected" in summary
    assert str(projection.reaches_limit_on.date()) not in summary  # no confident date
    assert projection.to_dict()["reliable"] is False
    fig = analysis.plot_capacity(projection)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts] + [
        ax.get_title() for ax in fig.axes]
    assert any("unreliable: only" in t for t in texts)
    assert not any(str(projection.reaches_limit_on.date()) in t for t in texts)


def test_span_threshold_is_three_days() -> None:
    # 20 hours of data on one day, then three days whose timestamps span 67 and 91 hours.
    assert not analysis.capacity_projection(_growth(["2026-11-30"])).reliable
    three = analysis.capacity_projection(_growth(["2026-11-01", "2026-11-02", "2026-11-03"]))
    assert three.span_hours == 67 and not three.reliable
    four = analysis.capacity_projection(_growth([f"2026-11-0{d}" for d in range(1, 5)]))
    assert four.span_hours == 91 and four.reliable
    # 100 bytes a day: 10 GB is further than pandas has dates for, so days and no date.
    assert "reaches 10 GB in 99,999,996 days" in four.summary()
    near = analysis.capacity_projection(_growth([f"2026-11-0{d}" for d in range(1, 5)]),
                                        limit_gb=1e-6)
    assert "reaches 1e-06 GB on 2026-11-10 (in 6 days)" in near.summary()


@pytest.mark.parametrize("days", [["2026-11-30"], [f"2026-11-{d}" for d in range(16, 31)]])
def test_november_bars_are_labelled_november(days: list[str]) -> None:
    mdates = pytest.importorskip("matplotlib.dates")
    fig = analysis.plot_growth(_growth(days))
    ax = fig.axes[0]
    fig.canvas.draw()
    formatter = ax.xaxis.get_major_formatter()
    assert isinstance(formatter, mdates.ConciseDateFormatter)
    assert isinstance(ax.xaxis.get_major_locator(), mdates.AutoDateLocator)
    labels = [t.get_text() for t in ax.get_xticklabels()] + [formatter.get_offset()]
    assert "Nov" in formatter.get_offset()
    assert not any("Dec" in label for label in labels), labels
    # Each bar covers its own day: the first starts on it, the last ends before the next.
    left, right = ax.get_xlim()
    assert mdates.num2date(left).day == int(days[0][-2:])
    assert mdates.num2date(right).strftime("%m-%d") == days[-1][5:]


def test_a_first_run_says_there_is_nothing_to_compare(tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "core.json").write_text((sorted(SAMPLE_BENCH.glob("core-*.json"))[0]).read_text())
    compared = analysis.compare_runs(analysis.load_benchmarks(bench))
    assert compared.empty
    assert "nothing to compare yet" in analysis.describe_comparison(compared)
    both = analysis.compare_runs(analysis.load_benchmarks(SAMPLE_BENCH))
    text = analysis.describe_comparison(both)
    assert "1 regression" in text and "regression: get_memory" in text


def test_notebook_inputs_take_any_database_file(fresh_db: Path, tmp_path: Path) -> None:
    found = analysis.notebook_inputs(fresh_db)
    assert found.database == fresh_db.resolve() and found.origin == "db"
    assert found.benchmarks == []  # no bench/ beside it
    bench = tmp_path / "runs"
    bench.mkdir()
    (bench / "a.json").write_text("{}")
    with_bench = analysis.notebook_inputs(str(fresh_db), str(bench))
    assert with_bench.benchmarks == [(bench / "a.json").resolve()]
    only_bench = analysis.notebook_inputs(bench=bench)
    assert only_bench.database is None and "no database" in only_bench.describe()
    with pytest.raises(InvalidInputError, match="db parameter"):
        analysis.memory_growth(only_bench.database)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"holding no agents\.db"):
        analysis.notebook_inputs(tmp_path)
    with pytest.raises(InvalidInputError, match="Invalid bench"):
        analysis.notebook_inputs(fresh_db, tmp_path / "nope")
    assert json.loads((bench / "a.json").read_text()) == {}
