"""RFM scores and named segments (pure Spark functions), or segments supplied by an existing RFM system.

Inputs per customer (``customer_metrics``): recency = ``recency_days`` (days from the last purchase to the
as-of date), frequency = ``num_orders`` (purchases), monetary = ``net_revenue`` (refunds netted).

Scores 1-5, higher is better (R: more recent; F: more orders; M: more revenue).

- **Quintiles (default).** ``score = 1 + floor(5 x share of customers strictly worse)``. Equal values always
  get equal scores (ties are never split by row order or id): a tied group takes the score of the position
  where it starts, so e.g. all one-order customers share the lowest F score even when they are 60% of the
  base. Customers without a purchase (only refunds) have no recency and rank worst on R.
- **Thresholds (optional).** Four ascending cut points per measure. R: recency_days <= t1 -> 5, <= t2 -> 4,
  <= t3 -> 3, <= t4 -> 2, else 1 (no purchase -> 1). F and M: ``1 + number of cut points <= value``
  (e.g. F thresholds 2, 3, 5, 10: 1 order -> 1, 2 -> 2, 3-4 -> 3, 5-9 -> 4, 10+ -> 5).

Named segments from the R and F scores (the widely used RFM segment map; M is reported, not used):

======  ================  ====================  ====================  ================  ================
        F=1               F=2                   F=3                   F=4               F=5
======  ================  ====================  ====================  ================  ================
R=5     New               Potential Loyalists   Potential Loyalists   Champions         Champions
R=4     Promising         Potential Loyalists   Potential Loyalists   Loyal             Loyal
R=3     About to Sleep    About to Sleep        Need Attention        Loyal             Loyal
R=2     Hibernating       Hibernating           At Risk               At Risk           Cannot Lose Them
R=1     Lost              Hibernating           At Risk               At Risk           Cannot Lose Them
======  ================  ====================  ====================  ================  ================

Supplied segments: a CSV (with header) or parquet file/folder with ``customer_id`` and ``segment`` columns
(names matched case-insensitively). Missing file or columns, duplicate customer ids (ambiguous) and a file
matching none of the customers are errors naming the file. File rows for unknown customers, rows without a
segment and customers the file does not cover are counted and reported; the uncovered customers keep their
computed segment (``segment_source = "computed"``; supplied ones are ``"supplied"``). ``strict=True`` makes
any of those counts an error instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from itertools import chain
from urllib.parse import urlparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

SEGMENTS_PATH_ENV = "CLV_RFM_SEGMENTS_PATH"

#: SEGMENT_GRID[r][f - 1]: the named segment of R score r and F score f (see the table above).
SEGMENT_GRID: dict[int, list[str]] = {
    5: ["New", "Potential Loyalists", "Potential Loyalists", "Champions", "Champions"],
    4: ["Promising", "Potential Loyalists", "Potential Loyalists", "Loyal", "Loyal"],
    3: ["About to Sleep", "About to Sleep", "Need Attention", "Loyal", "Loyal"],
    2: ["Hibernating", "Hibernating", "At Risk", "At Risk", "Cannot Lose Them"],
    1: ["Lost", "Hibernating", "At Risk", "At Risk", "Cannot Lose Them"],
}
SEGMENTS = ["Champions", "Loyal", "Potential Loyalists", "New", "Promising", "Need Attention", "About to Sleep",
            "At Risk", "Cannot Lose Them", "Hibernating", "Lost"]

RFM_COLUMNS = ["customer_id", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm_score",
               "computed_segment", "segment", "segment_source", "as_of_date"]


def segment_of(r: int, f: int) -> str:
    return SEGMENT_GRID[r][f - 1]


class SuppliedSegmentsError(ValueError):
    """The supplied segments file cannot be used; the message names the file and what is wrong."""


# ---------------------------------------------------------------------------------------------------- scores
def _check_thresholds(name: str, cuts: list[float] | None) -> None:
    if cuts is not None and (len(cuts) != 4 or any(a >= b for a, b in zip(cuts, cuts[1:]))):
        raise ValueError(f"{name} thresholds must be 4 strictly ascending cut points, got {cuts}")


def _quintile_score(better_last: F.Column) -> F.Column:
    """1 + floor(5 x share strictly worse); ``better_last`` orders worst first (ties share a rank)."""
    rank = F.rank().over(Window.orderBy(better_last))
    n = F.count(F.lit(1)).over(Window.partitionBy())
    return (F.lit(1) + F.floor(F.lit(5) * (rank - 1) / n)).cast("int")


def _threshold_score(value: F.Column, cuts: list[float]) -> F.Column:
    return (F.lit(1) + sum(F.when(value >= F.lit(float(c)), 1).otherwise(0) for c in cuts)).cast("int")


def rfm_scores(
    customer_metrics: DataFrame,
    recency_thresholds: list[float] | None = None,
    frequency_thresholds: list[float] | None = None,
    monetary_thresholds: list[float] | None = None,
) -> DataFrame:
    """Per customer: recency, frequency, monetary, their 1-5 scores, ``rfm_score`` ("545") and the named
    ``computed_segment`` (also in ``segment``, with ``segment_source = "computed"``)."""
    for name, cuts in (("recency", recency_thresholds), ("frequency", frequency_thresholds), ("monetary", monetary_thresholds)):
        _check_thresholds(name, cuts)
    base = customer_metrics.select(
        "customer_id",
        "recency_days",
        F.col("num_orders").cast("long").alias("frequency"),
        F.col("net_revenue").alias("monetary"),
        "as_of_date",
    )
    recency, frequency, monetary = F.col("recency_days"), F.col("frequency"), F.col("monetary")
    if recency_thresholds:
        days_over = sum(F.when(recency > F.lit(float(c)), 1).otherwise(0) for c in recency_thresholds)
        r = F.when(recency.isNull(), 1).otherwise(F.lit(5) - days_over)
    else:
        r = _quintile_score(recency.desc_nulls_first())
    f = _threshold_score(frequency, frequency_thresholds) if frequency_thresholds else _quintile_score(frequency.asc())
    m = _threshold_score(monetary, monetary_thresholds) if monetary_thresholds else _quintile_score(monetary.asc())
    grid = F.create_map(*chain.from_iterable(
        (F.lit(rs * 10 + fs), F.lit(segment_of(rs, fs))) for rs in SEGMENT_GRID for fs in range(1, 6)
    ))
    scored = (
        base.withColumn("r_score", r.cast("int"))
        .withColumn("f_score", f.cast("int"))
        .withColumn("m_score", m.cast("int"))
        .withColumn("rfm_score", F.concat(*[F.col(c).cast("string") for c in ("r_score", "f_score", "m_score")]))
        .withColumn("computed_segment", grid[F.col("r_score") * 10 + F.col("f_score")])
        .withColumn("segment", F.col("computed_segment"))
        .withColumn("segment_source", F.lit("computed"))
    )
    return scored.select(*RFM_COLUMNS)


# -------------------------------------------------------------------------------------------- supplied file
def read_supplied_segments(spark: SparkSession, path: str) -> DataFrame:
    """The file's ``customer_id`` and ``segment`` (strings, trimmed; blank segment -> null)."""
    local = urlparse(path).scheme in ("", "file")
    local_path = path.removeprefix("file://")
    if local and not os.path.exists(local_path):
        raise SuppliedSegmentsError(f"{path}: supplied RFM segments file not found (set by config segments_path or {SEGMENTS_PATH_ENV}).")
    lower = path.lower().rstrip("/")
    is_csv = lower.endswith((".csv", ".csv.gz", ".txt"))
    if not is_csv and local and os.path.isdir(local_path):
        is_csv = any(name.lower().endswith(".csv") for name in os.listdir(local_path))
    try:
        df = spark.read.option("header", True).csv(path) if is_csv else spark.read.parquet(path)
        columns = df.columns
    except Exception as exc:  # noqa: BLE001 - any reader failure is the file's problem
        kind = "CSV" if is_csv else "parquet"
        raise SuppliedSegmentsError(f"{path}: cannot read the supplied RFM segments as {kind} ({str(exc).splitlines()[0]}).") from exc
    by_name = {c.strip().lstrip("\ufeff").lower(): c for c in columns}
    missing = [c for c in ("customer_id", "segment") if c not in by_name]
    if missing:
        raise SuppliedSegmentsError(
            f"{path}: the supplied RFM segments need columns customer_id and segment; missing {', '.join(missing)} "
            f"(columns found: {', '.join(columns) or 'none'})."
        )
    segment = F.trim(F.col(f"`{by_name['segment']}`").cast("string"))
    return df.select(
        F.trim(F.col(f"`{by_name['customer_id']}`").cast("string")).alias("customer_id"),
        F.when(segment != "", segment).alias("segment"),
    )


@dataclass
class SuppliedReport:
    """What was found in a supplied segments file."""

    path: str
    rows: int = 0
    rows_without_customer_id: int = 0
    rows_without_segment: int = 0
    unknown_customers: int = 0
    customers_supplied: int = 0
    customers_without_supplied_segment: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "examples"} | {"examples": self.examples}


def apply_supplied_segments(scores: DataFrame, supplied: DataFrame, path: str, strict: bool = False) -> tuple[DataFrame, SuppliedReport]:
    """``scores`` with ``segment`` replaced by the supplied one where given (``segment_source = "supplied"``)."""
    report = SuppliedReport(path=path)
    dupes = supplied.filter(F.col("customer_id").isNotNull()).groupBy("customer_id").count().filter("count > 1")
    dupe_rows = dupes.orderBy("customer_id").limit(5).collect()
    if dupe_rows:
        n = dupes.count()
        raise SuppliedSegmentsError(
            f"{path}: {n} customer id(s) appear more than once in the supplied RFM segments, e.g. "
            + ", ".join(f"{r.customer_id} ({r[1]}x)" for r in dupe_rows) + ". Keep one segment per customer."
        )

    known = scores.select("customer_id", F.lit(True).alias("_known"))
    flagged = supplied.join(known, "customer_id", "left")
    counts = flagged.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_if(F.col("customer_id").isNull()).alias("no_id"),
        F.count_if(F.col("customer_id").isNotNull() & F.col("segment").isNull()).alias("no_segment"),
        F.count_if(F.col("customer_id").isNotNull() & F.col("_known").isNull()).alias("unknown"),
        F.count_if(F.col("_known") & F.col("segment").isNotNull()).alias("matched"),
    ).first()
    report.rows, report.rows_without_customer_id = counts["rows"], counts["no_id"]
    report.rows_without_segment, report.unknown_customers = counts["no_segment"], counts["unknown"]
    report.customers_supplied = counts["matched"]

    usable = supplied.filter(F.col("customer_id").isNotNull() & F.col("segment").isNotNull()).withColumnRenamed("segment", "_supplied")
    if report.rows == 0 or report.customers_supplied == 0:
        sample = [r.customer_id for r in supplied.filter("customer_id is not null").limit(3).collect()]
        ours = [r.customer_id for r in scores.limit(3).collect()]
        raise SuppliedSegmentsError(
            f"{path}: none of its {report.rows} rows gives a segment for a known customer "
            f"(file ids e.g. {sample}, customer ids e.g. {ours}): wrong file, or ids formatted differently?"
        )
    merged = scores.join(usable, "customer_id", "left")
    report.customers_without_supplied_segment = merged.filter(F.col("_supplied").isNull()).count()
    if report.unknown_customers:
        unknown = flagged.filter(F.col("customer_id").isNotNull() & F.col("_known").isNull()).orderBy("customer_id").limit(5)
        report.examples["unknown_customers"] = [r.customer_id for r in unknown.collect()]
    if report.customers_without_supplied_segment:
        uncovered = merged.filter(F.col("_supplied").isNull()).orderBy("customer_id").limit(5)
        report.examples["customers_without_supplied_segment"] = [r.customer_id for r in uncovered.collect()]
    problems = {k: getattr(report, k) for k in ("rows_without_customer_id", "rows_without_segment", "unknown_customers",
                                                "customers_without_supplied_segment") if getattr(report, k)}
    if strict and problems:
        raise SuppliedSegmentsError(
            f"{path}: the supplied RFM segments do not match the customers one to one (strict): "
            + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in problems.items())
            + f"; examples {report.examples}."
        )
    result = merged.withColumn("segment_source", F.when(F.col("_supplied").isNotNull(), "supplied").otherwise("computed")).withColumn(
        "segment", F.coalesce("_supplied", "computed_segment")
    )
    return result.select(*RFM_COLUMNS), report
