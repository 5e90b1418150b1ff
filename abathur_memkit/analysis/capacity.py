"""A capacity model: what each item costs on disk, how fast the file grows, when it is full.

Input is the frame of :func:`~abathur_memkit.analysis.memory_growth`. The
growth rate is the least-squares slope of the cumulative bytes over the
calendar days observed (days with nothing written count as zero), so one busy
day moves it less than it moves a mean. The projection is linear from the
last day observed. GB here is 10^9 bytes.

A rate fitted on less than :data:`MIN_SPAN_DAYS` days of timestamps says
more about the hour the data was written in (a burst of seeding, a test run)
than about growth: such a projection is marked unreliable, and its summary and
plot say so instead of giving a date.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..errors import InvalidInputError
from .optional import pandas

__all__ = ["GB", "MIN_SPAN_DAYS", "CapacityProjection", "capacity_projection"]

GB = 10**9
#: Fewest days between the first and last timestamp for a projection to be trusted.
MIN_SPAN_DAYS = 3.0


@dataclass(frozen=True)
class CapacityProjection:
    """The result of :func:`capacity_projection`."""

    limit_bytes: float
    current_bytes: float
    bytes_per_day: float
    first_day: Any  # pandas Timestamp (UTC), or None with no dated rows
    last_day: Any
    days_observed: int
    days_to_limit: float | None  # None: not growing
    reaches_limit_on: Any  # pandas Timestamp, or None
    bytes_method: str  # "dbstat" or "length"
    index_share: float | None  # share of bytes in SQLite indexes (dbstat only)
    search_share: float | None  # share in full-text and vector structures (dbstat only)
    per_kind: Any  # DataFrame: kind, rows, bytes, bytes_per_row, *_bytes_per_row
    daily: Any  # DataFrame: day, bytes (added that day), cumulative_bytes
    span_hours: float = 0.0  # from the first timestamp to the last

    @property
    def reliable(self) -> bool:
        """Whether the data spans at least :data:`MIN_SPAN_DAYS` days."""
        return self.span_hours >= MIN_SPAN_DAYS * 24

    @property
    def warning(self) -> str | None:
        """Why the projection is not to be trusted, or None."""
        if self.reliable:
            return None
        return (f"unreliable: only {_duration(self.span_hours)} of data "
                f"(a projection needs at least {MIN_SPAN_DAYS:g} days)")

    def when(self) -> str:
        """When the limit is reached, in words (or why no date is given)."""
        if self.days_to_limit is None:
            return "never at this rate (not growing)"
        if self.warning is not None:
            return f"not projected, {self.warning}"
        if self.reaches_limit_on is None:
            return f"in {self.days_to_limit:,.0f} days"
        return f"on {self.reaches_limit_on.date()} (in {self.days_to_limit:,.0f} days)"

    def outlook(self) -> str:
        """The sentence of the summary: ``reaches 10 GB on ...``, or the warning."""
        separator = ": " if self.days_to_limit is not None and not self.reliable else " "
        return f"reaches {self.limit_bytes / GB:g} GB{separator}{self.when()}"

    def bytes_per(self, kind: str) -> float:
        """Bytes one ``kind`` (memory, event, document_chunk, audit, ...) costs; NaN if none."""
        match = self.per_kind[self.per_kind["kind"] == kind]
        return float(match["bytes_per_row"].iloc[0]) if len(match) else math.nan

    @property
    def bytes_per_memory(self) -> float:
        return self.bytes_per("memory")

    @property
    def bytes_per_event(self) -> float:
        return self.bytes_per("event")

    @property
    def bytes_per_document_chunk(self) -> float:
        return self.bytes_per("document_chunk")

    def projected(self, days_ahead: int | None = None) -> Any:
        """Projected cumulative bytes per day from the last day observed.

        Runs until the limit (or ``days_ahead`` days; 365 when not growing).
        """
        pd = pandas()
        if self.last_day is None:
            return pd.DataFrame(columns=["day", "cumulative_bytes"])
        if days_ahead is None:
            days_ahead = 365 if self.days_to_limit is None else math.ceil(self.days_to_limit)
        days = pd.date_range(self.last_day, periods=max(days_ahead, 1) + 1, freq="D")
        values = [self.current_bytes + self.bytes_per_day * i for i in range(len(days))]
        return pd.DataFrame({"day": days, "cumulative_bytes": values})

    def to_dict(self) -> dict[str, Any]:
        """The scalars, JSON-serializable (dates as ISO strings)."""
        def iso(value: Any) -> str | None:
            return None if value is None else value.date().isoformat()

        return {
            "limit_bytes": self.limit_bytes,
            "current_bytes": self.current_bytes,
            "bytes_per_day": self.bytes_per_day,
            "first_day": iso(self.first_day),
            "last_day": iso(self.last_day),
            "days_observed": self.days_observed,
            "span_hours": self.span_hours,
            "reliable": self.reliable,
            "days_to_limit": self.days_to_limit,
            "reaches_limit_on": iso(self.reaches_limit_on),
            "bytes_method": self.bytes_method,
            "index_share": self.index_share,
            "search_share": self.search_share,
            "bytes_per_row": {r["kind"]: r["bytes_per_row"]
                              for r in self.per_kind.to_dict("records")},
        }

    def summary(self) -> str:
        lines = [
            f"current data: {self.current_bytes / 1e6:,.2f} MB ({self.bytes_method}); "
            f"growth {self.bytes_per_day / 1e6:,.3f} MB/day over {self.days_observed} day(s)",
            self.outlook(),
        ]
        for kind in ("memory", "event", "document_chunk"):
            value = self.bytes_per(kind)
            if not math.isnan(value):
                lines.append(f"bytes per {kind.replace('_', ' ')}: {value:,.0f}")
        if self.index_share is not None:
            lines.append(f"index overhead: {self.index_share:.1%} of the bytes; "
                         f"search structures: {self.search_share or 0:.1%}")
        return "\n".join(lines)


def _duration(hours: float) -> str:
    if hours >= 1:
        return f"{hours:,.1f} hours"
    if hours * 60 >= 1:
        return f"{hours * 60:,.0f} minutes"
    return f"{hours * 3600:,.1f} seconds"


def _slope(cumulative: list[float]) -> float:
    n = len(cumulative)
    if n == 1:
        return cumulative[0]  # one day observed: that day's growth is the rate
    mean_x = (n - 1) / 2
    mean_y = sum(cumulative) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(cumulative))
    den = sum((x - mean_x) ** 2 for x in range(n))
    return num / den


def capacity_projection(growth: Any, limit_gb: float = 10, *,
                        window_days: int | None = None) -> CapacityProjection:
    """When the data reaches ``limit_gb`` GB, and what each item costs.

    ``growth`` is a ``memory_growth`` frame. ``window_days`` fits the growth
    rate on the last N days observed only (default: all of them). The current
    size is the bytes of every row in the frame; the schema page, registries
    and free pages are not in it. With less than :data:`MIN_SPAN_DAYS` days
    between the first and the last timestamp, ``reliable`` is False.
    """
    pd = pandas()
    if not isinstance(limit_gb, int | float) or isinstance(limit_gb, bool) or limit_gb <= 0:
        raise InvalidInputError(f"Invalid limit_gb: {limit_gb!r} (expected a number > 0)")
    missing = {"day", "kind", "rows", "bytes", "bytes_method"} - set(growth.columns)
    if missing:
        raise InvalidInputError(
            f"Invalid growth frame: missing columns {sorted(missing)} (pass memory_growth(...))")
    limit = float(limit_gb) * GB
    method = str(growth["bytes_method"].iloc[0]) if len(growth) else "length"
    current = float(growth["bytes"].sum())

    per_kind = growth.groupby("kind", sort=False)[
        ["rows", "bytes", "data_bytes", "index_bytes", "search_bytes"]].sum(min_count=1)
    per_kind = per_kind.reset_index()
    for column in ("bytes", "data_bytes", "index_bytes", "search_bytes"):
        name = "bytes_per_row" if column == "bytes" else f"{column}_per_row"
        per_kind[name] = per_kind[column] / per_kind["rows"]
    per_kind = per_kind.sort_values("bytes", ascending=False, ignore_index=True)

    dated = growth.dropna(subset=["day"])
    added = dated.groupby("day")["bytes"].sum()
    if added.empty:
        daily = pd.DataFrame(columns=["day", "bytes", "cumulative_bytes"])
        first = last = None
        rate = 0.0
    else:
        days = pd.date_range(added.index.min(), added.index.max(), freq="D")
        added = added.reindex(days, fill_value=0.0)
        undated = current - float(added.sum())
        cumulative = added.cumsum() + undated
        daily = pd.DataFrame({"day": days, "bytes": added.to_numpy(),
                              "cumulative_bytes": cumulative.to_numpy()})
        window = cumulative if window_days is None else cumulative.iloc[-window_days:]
        rate = max(_slope([float(v) for v in window]), 0.0)
        first, last = days[0], days[-1]
    days_to_limit: float | None = None
    reaches = None
    if rate > 0 and last is not None:
        days_to_limit = max(limit - current, 0.0) / rate
        # pandas dates end in 2262: past that there is a number of days, no date.
        if days_to_limit < (pd.Timestamp.max.tz_localize("UTC") - last).days:
            reaches = last + timedelta(days=days_to_limit)
    if "first_time" in dated.columns and dated["first_time"].notna().any():
        span = dated["last_time"].max() - dated["first_time"].min()
        span_hours = span.total_seconds() / 3600
    else:  # a frame without timestamps: whole days observed
        span_hours = 24.0 * len(daily)
    if method == "dbstat" and current:
        index_share: float | None = float(growth["index_bytes"].sum()) / current
        search_share: float | None = float(growth["search_bytes"].sum()) / current
    else:
        index_share = search_share = None
    return CapacityProjection(
        limit_bytes=limit, current_bytes=current, bytes_per_day=rate, first_day=first,
        last_day=last, days_observed=len(daily), days_to_limit=days_to_limit,
        reaches_limit_on=reaches, bytes_method=method, index_share=index_share,
        search_share=search_share, per_kind=per_kind, daily=daily, span_hours=span_hours,
    )
