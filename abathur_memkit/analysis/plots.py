"""Plots as matplotlib Figures (Agg backend), every axis labelled with its unit.

Each function takes the frame a loader or analysis function returns and
gives back a new ``Figure``; nothing is drawn on pyplot's global state, so
``fig.savefig("x.png")`` works anywhere and Jupyter shows the figure inline.
Sizes use decimal units (1 MB = 10^6 bytes, 1 GB = 10^9 bytes).
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..errors import InvalidInputError
from .activity import memory_operations, top_namespaces, writers
from .benchmarks import latest_run
from .capacity import GB, CapacityProjection
from .optional import dates, new_figure, pandas

__all__ = [
    "plot_capacity",
    "plot_growth",
    "plot_latency",
    "plot_memory_operations",
    "plot_operation_latency",
    "plot_ratios",
    "plot_runs",
    "plot_storage",
    "plot_top_namespaces",
    "plot_writers",
]

_BYTE_UNITS = ((GB, "GB"), (10**6, "MB"), (10**3, "kB"), (1, "bytes"))


def _byte_unit(largest: float) -> tuple[float, str]:
    for size, label in _BYTE_UNITS:
        if largest >= size:
            return float(size), label
    return 1.0, "bytes"


def _date_axis(ax: Any, label: str = "day (UTC)") -> None:
    mdates = dates()
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel(label)


def _empty(fig: Any, ax: Any, message: str) -> Any:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def _period_axis(ax: Any, table: Any, period_days: float, label: str) -> None:
    """Stacked bars over time: each bar spans its own period, on a date axis.

    ``table`` is indexed by period start. The view ends just before the period
    after the last one, so the axis never names a day or month with no data
    (a bar centred on the 30th of November would reach into December).
    """
    mdates = dates()
    starts = mdates.date2num(table.index.tz_localize(None).to_pydatetime())
    bars = table.set_axis([s + 0.05 * period_days for s in starts])
    _stacked_bars(ax, bars, width=0.9 * period_days, align="edge")
    ax.xaxis_date()
    ax.set_xlim(float(min(starts)), float(max(starts)) + period_days - 1 / 86400)
    _date_axis(ax, label)


def _stacked_bars(ax: Any, table: Any, *, horizontal: bool = False,
                  scale: float = 1.0, width: float = 0.8, align: str = "center") -> None:
    """One bar per index value, stacked by column, with a legend (and totals, horizontal)."""
    base = [0.0] * len(table)
    positions = list(table.index) if not horizontal else list(range(len(table)))
    for column in table.columns:
        values = [float(v) / scale for v in table[column]]
        if horizontal:
            ax.barh(positions, values, left=base, height=width, label=str(column))
        else:
            ax.bar(positions, values, bottom=base, width=width, align=align,
                   label=str(column))
        base = [b + v for b, v in zip(base, values, strict=True)]
    if horizontal:
        ax.set_yticks(positions, [str(i) for i in table.index])
        ax.invert_yaxis()
        for y, total in zip(positions, base, strict=True):
            ax.annotate(f" {total:,.0f}" if scale == 1.0 else f" {total:,.2f}", (total, y),
                        va="center", fontsize="x-small")
        ax.set_xlim(0, max(base, default=1.0) * 1.12 or 1.0)
        ax.legend(fontsize="small", title=table.columns.name, loc="best")
    else:  # beside the plot: bars fill the axes' width
        ax.legend(fontsize="small", title=table.columns.name, loc="upper left",
                  bbox_to_anchor=(1.0, 1.0))


# -- benchmarks ------------------------------------------------------------------


def _per_call(benchmarks: Any) -> Any:
    return benchmarks[benchmarks["unit"].fillna("call") == "call"]


def plot_latency(benchmarks: Any) -> Any:
    """Latency distribution of each benchmark in the latest run, from its statistics.

    Box: quartiles and median; whiskers: the furthest samples within 1.5 IQR;
    ``x``: p99. Throughput benchmarks (one timed batch) are left out.
    """
    rows = _per_call(latest_run(benchmarks))
    fig = new_figure(9, max(3.0, 0.42 * len(rows) + 1.4))
    ax = fig.add_subplot()
    if rows.empty:
        return _empty(fig, ax, "no per-call benchmarks")
    stats = []
    for row in rows.to_dict("records"):
        low = row["ld15iqr_ms"] if not math.isnan(row["ld15iqr_ms"]) else row["min_ms"]
        high = row["hd15iqr_ms"] if not math.isnan(row["hd15iqr_ms"]) else row["max_ms"]
        stats.append({"label": row["name"], "med": row["median_ms"], "q1": row["q1_ms"],
                      "q3": row["q3_ms"], "whislo": low, "whishi": high,
                      "mean": row["mean_ms"], "fliers": []})
    positions = list(range(1, len(stats) + 1))
    ax.bxp(stats, positions=positions, orientation="horizontal", showfliers=False,
           showmeans=False, patch_artist=False)
    ax.scatter(rows["p99_ms"], positions, marker="x", color="crimson", zorder=3, label="p99")
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("latency per call (ms, log scale)")
    ax.set_ylabel("benchmark")
    run = rows["run"].iloc[0]
    ax.set_title(f"Latency per call — run {run}")
    ax.legend(fontsize="small", loc="lower right")
    ax.grid(axis="x", which="both", alpha=0.3)
    return fig


def plot_operation_latency(metrics: Any) -> Any:
    """Per-operation latency recorded by ``Database(..., record_metrics=True)``.

    ``metrics`` is what ``load_metrics`` returns; the ``latency.*`` samples
    are drawn one box per operation (quartiles, whiskers within 1.5 IQR).
    """
    samples = metrics[metrics["metric_name"].str.startswith("latency.")]
    by_operation = {name.removeprefix("latency."): group["metric_value"].tolist()
                    for name, group in samples.groupby("metric_name")}
    fig = new_figure(9, max(3.0, 0.42 * len(by_operation) + 1.4))
    ax = fig.add_subplot()
    if not by_operation:
        return _empty(fig, ax, "no latency samples: open the database with "
                               "Database(path, record_metrics=True)")
    names = sorted(by_operation, key=lambda n: -len(by_operation[n]))
    ax.boxplot([by_operation[n] for n in names], orientation="horizontal", showfliers=False)
    ax.set_yticks(range(1, len(names) + 1), [f"{n} ({len(by_operation[n]):,})" for n in names])
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("latency per call (ms, log scale)")
    ax.set_ylabel("operation (samples)")
    ax.set_title("Recorded operation latency (metrics latency.*)")
    ax.grid(axis="x", which="both", alpha=0.3)
    return fig


def _target_value(target: Any) -> float | None:
    match = re.search(r"[-+]?\d+(?:\.\d+)?", str(target or ""))
    return float(match.group()) if match else None


def plot_ratios(benchmarks: Any) -> Any:
    """Each memkit benchmark against its raw-SQLite baseline measured in the same run.

    The bar is the ratio (p50 latency ours / raw, or rate ours / raw);
    ``|`` marks its target; green met it, red did not.
    """
    rows = latest_run(benchmarks)
    rows = rows[rows["ratio"].notna()] if "ratio" in rows.columns else rows.iloc[0:0]
    fig = new_figure(9, max(3.0, 0.5 * len(rows) + 1.4))
    ax = fig.add_subplot()
    if rows.empty:
        return _empty(fig, ax, "no benchmarks with a baseline ratio")
    records = rows.to_dict("records")
    positions = list(range(len(records)))
    colors = ["seagreen" if r["met"] else "indianred" for r in records]
    ax.barh(positions, [r["ratio"] for r in records], color=colors)
    for y, r in zip(positions, records, strict=True):
        target = _target_value(r["target"])
        if target is not None:
            ax.plot([target, target], [y - 0.4, y + 0.4], color="black", linewidth=2)
        kind = "rate" if r.get("ratio_of") == "rate" else "p50"
        ax.annotate(f"  {r['ratio']:.2f}× ({kind}; target {r['target']})",
                    (max(r["ratio"], target or 0.0), y), va="center", fontsize="small")
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_yticks(positions, [f"{r['name']}\nvs {r['baseline']}" for r in records],
                  fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("ratio to the raw-SQLite baseline (×; latency: lower is better, "
                  "rate: higher is better)")
    ax.set_ylabel("benchmark")
    ax.set_xlim(0, max(max(r["ratio"] for r in records),
                       *(_target_value(r["target"]) or 0 for r in records)) * 1.6)
    ax.set_title("memkit vs raw SQLite, same file, same run")
    return fig


def plot_runs(benchmarks: Any, compared: Any = None, *, threshold: float = 0.10) -> Any:
    """Each benchmark's median across runs, relative to its first run; regressions circled.

    ``compared`` is a ``compare_runs`` frame (optional); the grey band is
    ±``threshold``, the change ``compare_runs`` needs before it tests.
    """
    rows = _per_call(benchmarks)
    fig = new_figure(10, 5)
    ax = fig.add_subplot()
    if rows.empty:
        return _empty(fig, ax, "no per-call benchmarks")
    if rows["run"].nunique() < 2:
        return _empty(fig, ax, "one run so far: nothing to compare yet\n"
                               "(run the benchmark again, e.g. memkit demo a second time)")
    colors = _colors(rows["fullname"].nunique())
    first: dict[str, float] = {}
    for color, (fullname, runs) in zip(colors, rows.groupby("fullname", sort=True),
                                       strict=False):
        runs = runs.sort_values("datetime")
        first[str(fullname)] = float(runs["median_ms"].iloc[0])
        ax.plot(runs["datetime"], runs["median_ms"] / first[str(fullname)], marker="o",
                markersize=4, color=color, label=str(runs["name"].iloc[-1]))
    ax.axhspan(1 - threshold, 1 + threshold, color="grey", alpha=0.15,
               label=f"±{threshold:.0%}")
    if compared is not None and not compared.empty:
        bad = compared[(compared["verdict"] == "regression")
                       & compared["fullname"].isin(list(first))]
        if not bad.empty:
            ax.scatter(bad["after_time"], bad["after"] / bad["fullname"].map(first), s=140,
                       facecolors="none", edgecolors="red", linewidths=2, zorder=4,
                       label="regression")
    ax.set_ylabel("median latency per call, relative to its first run (×)")
    _date_axis(ax, "run time (UTC)")
    ax.set_title(f"Median latency across {rows['run'].nunique()} run(s)")
    ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.grid(axis="y", alpha=0.3)
    return fig


def _colors(count: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return [cmap(i % 20) for i in range(max(count, 1))]


# -- growth and capacity ----------------------------------------------------------

_GROUPINGS = ("kind", "scope", "memory_type")


def plot_growth(growth: Any, by: str = "kind", value: str = "bytes") -> Any:
    """What was added each day, stacked by ``by`` (kind, scope or memory_type).

    ``value`` is ``"bytes"`` or ``"rows"``. By scope or memory type, only
    memories count.
    """
    if by not in _GROUPINGS:
        raise InvalidInputError(f"Invalid by: {by!r} (choose {', '.join(_GROUPINGS)})")
    if value not in ("bytes", "rows"):
        raise InvalidInputError(f"Invalid value: {value!r} (choose 'bytes' or 'rows')")
    data = growth if by == "kind" else growth[growth["kind"] == "memory"]
    data = data.dropna(subset=["day"])
    fig = new_figure(10, 4.8)
    ax = fig.add_subplot()
    if data.empty:
        return _empty(fig, ax, "no dated rows")
    table = data.pivot_table(index="day", columns=by, values=value, aggfunc="sum",
                             fill_value=0)
    table = table[table.sum().sort_values(ascending=False).index]
    table.columns.name = by.replace("_", " ")
    what = "memories" if by != "kind" else "items"
    if value == "bytes":
        scale, unit = _byte_unit(float(table.sum(axis=1).max()))
        method = str(growth["bytes_method"].iloc[0])
        ax.set_ylabel(f"bytes added per day ({unit})")
        note = ("on-disk bytes incl. indexes, by dbstat" if method == "dbstat"
                else "value bytes by length(); no dbstat")
        ax.set_title(f"Bytes of {what} added per day, by {table.columns.name} ({note})")
    else:
        scale = 1.0
        ax.set_ylabel("rows added per day (count)")
        ax.set_title(f"Rows of {what} added per day, by {table.columns.name}")
    _period_axis(ax, table / scale, 1.0, "day (UTC)")
    return fig


def plot_capacity(projection: CapacityProjection, *, near_days: int = 90,
                  max_days: int = 36500) -> Any:
    """Size observed and projected: the next ``near_days`` (left) and up to the limit (right).

    The right panel runs until the limit is reached, or ``max_days`` when
    that is later (or never, when the data is not growing). An unreliable
    projection (too short a span of data) gets a warning instead of a date.
    """
    fig = new_figure(12, 4.8)
    near, far = fig.subplots(1, 2, width_ratios=[1, 1])
    daily = projection.daily
    if daily.empty:
        return _empty(fig, near, "no dated rows")
    limit_label = f"{projection.limit_bytes / GB:g} GB"
    rate = f"{projection.bytes_per_day / 1e6:,.2f} MB/day"

    soon = projection.projected(near_days)
    scale, unit = _byte_unit(float(soon["cumulative_bytes"].max()))
    near.plot(daily["day"], daily["cumulative_bytes"] / scale, color="tab:blue", linewidth=2,
              marker="o", markersize=3, label="observed")
    near.plot(soon["day"], soon["cumulative_bytes"] / scale, color="tab:blue", linestyle="--",
              label=f"projected ({rate})")
    near.set_ylabel(f"size of the data ({unit})")
    _date_axis(near, "date (UTC)")
    near.set_title(f"Observed {projection.days_observed} days, next {near_days} projected")
    near.legend(fontsize="small", loc="upper left")
    near.grid(alpha=0.3)
    near.set_ylim(bottom=0)
    if projection.warning is not None:
        near.set_title(f"Projection {projection.warning}", color="crimson", fontsize="medium")
        _empty(fig, far, f"No date for {limit_label}:\n{projection.warning}")
        far.set_title(f"When the data reaches {limit_label}: not projected", color="crimson")
        return fig

    reached = projection.days_to_limit is not None and projection.days_to_limit <= max_days
    ahead = projection.projected(
        min(max_days, math.ceil(projection.days_to_limit)) if projection.days_to_limit
        is not None else max_days)
    far.plot(daily["day"], daily["cumulative_bytes"] / GB, color="tab:blue", linewidth=2,
             label="observed")
    far.plot(ahead["day"], ahead["cumulative_bytes"] / GB, color="tab:blue", linestyle="--",
             label=f"projected ({rate})")
    far.axhline(projection.limit_bytes / GB, color="crimson", linestyle=":",
                label=f"limit {limit_label}")
    if reached:
        when = projection.reaches_limit_on
        far.annotate(f"{limit_label} on {when.date()}\n({projection.days_to_limit:,.0f} days)",
                     (when, projection.limit_bytes / GB), textcoords="offset points",
                     xytext=(-8, -36), ha="right", fontsize="small")
        far.set_title(f"Reaches {limit_label} on {when.date()}")
    elif projection.days_to_limit is None:
        far.set_title(f"Not growing: never reaches {limit_label}")
    else:
        far.set_title(f"Reaches {limit_label} only after {max_days:,} days")
    far.set_ylabel("size of the data (GB, 10^9 bytes)")
    _date_axis(far, "date (UTC)")
    far.legend(fontsize="small", loc="upper left")
    far.grid(alpha=0.3)
    far.set_ylim(0, projection.limit_bytes / GB * 1.1)
    return fig


def plot_storage(storage: Any) -> Any:
    """Bytes on disk per kind of item, split into data, indexes and search structures.

    ``storage`` is a ``storage_breakdown`` frame.
    """
    pd = pandas()
    fig = new_figure(9, 4.5)
    ax = fig.add_subplot()
    if storage.empty:
        return _empty(fig, ax, "no b-trees")
    table = storage.pivot_table(index="kind", columns="role", values="bytes", aggfunc="sum",
                                fill_value=0)
    order = [r for r in ("data", "index", "search", "other", "free") if r in table.columns]
    table = table[order]
    table = table.loc[table.sum(axis=1).sort_values(ascending=False).index]
    table.columns = pd.Index(order, name="role")
    scale, unit = _byte_unit(float(table.sum(axis=1).max()))
    _stacked_bars(ax, table, horizontal=True, scale=scale)
    total = float(storage["bytes"].sum())
    index_share = float(storage.loc[storage["role"] == "index", "bytes"].sum()) / total
    ax.set_xlabel(f"size on disk ({unit})")
    ax.set_ylabel("kind of item")
    ax.set_title(f"Where the {total / 1e6:,.1f} MB are: indexes take {index_share:.0%} "
                 "(dbstat)")
    return fig


# -- audit ------------------------------------------------------------------------


def plot_memory_operations(audit: Any, freq: str = "D") -> Any:
    """Memory operations per day (or ``freq``), stacked by operation type."""
    table = memory_operations(audit, freq)
    fig = new_figure(10, 4.5)
    ax = fig.add_subplot()
    if table.empty:
        return _empty(fig, ax, "no memory operations in the audit trail")
    period = {"D": "day", "h": "hour", "W": "week"}.get(freq, freq)
    pd = pandas()
    length = 7.0 if freq == "W" else pd.to_timedelta(
        pd.tseries.frequencies.to_offset(freq)).total_seconds() / 86400
    _period_axis(ax, table, length, f"{period} (UTC)")
    ax.set_ylabel(f"memory operations per {period} (count)")
    ax.set_title(f"Memory operations over time ({int(table.to_numpy().sum()):,} in all)")
    return fig


def plot_top_namespaces(audit: Any, n: int = 12, *, level: str = "namespace") -> Any:
    """The namespaces (or scopes) with the most memory writes, by operation type."""
    table = top_namespaces(audit, n, level=level).drop(columns=["total"])
    fig = new_figure(9, max(3.0, 0.35 * len(table) + 1.5))
    ax = fig.add_subplot()
    if table.empty:
        return _empty(fig, ax, "no memory operations in the audit trail")
    _stacked_bars(ax, table, horizontal=True)
    ax.set_xlabel("memory writes (count)")
    ax.set_ylabel(level)
    ax.set_title(f"Most active {level}s ({len(table)} shown)")
    return fig


def plot_writers(audit: Any, n: int = 12) -> Any:
    """Who wrote what: by kind of writer and namespace scope (left), the top writers (right)."""
    roles = writers(audit, n, level="role", by="scope").drop(columns=["total"])
    top = writers(audit, n, level="writer", by="operation").drop(columns=["total"])
    fig = new_figure(12, max(3.5, 0.32 * max(len(top), len(roles)) + 1.8))
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.3])
    if top.empty:
        return _empty(fig, left, "no memory operations in the audit trail")
    _stacked_bars(left, roles, horizontal=True)
    left.set_xlabel("memory writes (count)")
    left.set_ylabel("kind of writer")
    left.set_title("Where each kind of writer writes")
    _stacked_bars(right, top, horizontal=True)
    right.set_xlabel("memory writes (count)")
    right.set_ylabel("writer (created_by / updated_by / deleted_by)")
    right.set_title(f"The {len(top)} most active writers")
    return fig
