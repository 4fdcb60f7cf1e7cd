"""Time partitions shared by the assets.

The monthly partitions of ``transactions`` start at ``CLV_HISTORY_START`` (default 2023-01-01, where the
sample data starts) and run to the current month, or up to ``CLV_HISTORY_END`` (exclusive) when set.
Rows dated outside the partitions are not ingested: they are quarantined as ``outside_partitions`` and counted
in the metadata of ``transactions`` (``quarantined_by_reason``).
"""

from __future__ import annotations

import os

import dagster as dg

DEFAULT_HISTORY_START = "2023-01-01"


def history_start() -> str:
    return os.environ.get("CLV_HISTORY_START") or DEFAULT_HISTORY_START


def history_end() -> str | None:
    return os.environ.get("CLV_HISTORY_END") or None


def _time_partitions(cls: type, **kwargs) -> dg.TimeWindowPartitionsDefinition:
    end = history_end()
    return cls(start_date=history_start(), end_date=end, end_offset=0 if end else 1, **kwargs)


monthly_partitions = _time_partitions(dg.MonthlyPartitionsDefinition)


def _period_partitions(months: int, cron_schedule: str):
    """A factory for ``_time_partitions``: calendar quarters or years covering every month partition.

    The start is moved back to the start of its quarter/year and an exclusive end (after the month
    partitions' own rounding down to a month) forward to the next quarter/year boundary, so a history starting or ending mid-period still has a cohort partition for every
    month partition (the first/last one then covers only part of its period).
    """

    def build(start_date: str, end_date: str | None, end_offset: int) -> dg.TimeWindowPartitionsDefinition:
        def floor(text: str) -> tuple[int, int]:
            year, month = int(text[:4]), int(text[5:7])
            return year, month - (month - 1) % months

        year, month = floor(start_date)
        end = None
        if end_date:
            # The month partitions end at the last whole month before end_date; round that up to a boundary.
            end_year, end_month = floor(end_date)
            if end_date[5:7] != f"{end_month:02d}":
                end_month += months
                end_year, end_month = end_year + (end_month - 1) // 12, (end_month - 1) % 12 + 1
            end = f"{end_year:04d}-{end_month:02d}-01"
        return dg.TimeWindowPartitionsDefinition(
            start=f"{year:04d}-{month:02d}-01", end=end, end_offset=end_offset, cron_schedule=cron_schedule, fmt="%Y-%m-%d"
        )

    return build


quarterly_partitions = _time_partitions(_period_partitions(3, "0 0 1 1,4,7,10 *"))
"""Calendar quarters (keys ``YYYY-MM-01`` of the quarter's first month), covering the monthly partitions."""

yearly_partitions = _time_partitions(_period_partitions(12, "0 0 1 1 *"))
"""Calendar years (keys ``YYYY-01-01``), covering the monthly partitions."""
