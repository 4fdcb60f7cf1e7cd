"""Time partitions shared by the assets.

The monthly partitions of ``transactions`` start at ``CLV_HISTORY_START`` (default 2023-01-01, where the
sample data starts) and run to the current month, or up to ``CLV_HISTORY_END`` (exclusive) when set.
Rows dated outside the partitions are not ingested; ``transactions`` reports how many there are.
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
