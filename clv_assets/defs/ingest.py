"""Raw landing files become the canonical, month-partitioned ``transactions`` table."""

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clv_assets.ingest import canonicalize, in_window, read_raw
from clv_assets.landing import LandingZone
from clv_assets.partitions import monthly_partitions
from clv_assets.spark import SparkResource


@dg.asset(
    partitions_def=monthly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"partition_expr": "transaction_month"},
    group_name="ingest",
    kinds={"spark", "parquet"},
    tags={"domain": "transactions"},
)
def transactions(context: dg.AssetExecutionContext, spark: SparkResource, landing: LandingZone) -> DataFrame:
    """Every purchase and refund from the landing files, in one canonical schema, one partition per month.

    A backfill of many months reads the landing files once and writes all its months in one Spark job;
    re-running one month rewrites only that month.
    """
    window = context.partition_time_window
    start, end = window.start.date().isoformat(), window.end.date().isoformat()
    files = landing.list_files()
    raw = read_raw(spark.spark_session, files, landing.detect_format(files), landing.delimiter)
    good, rejected = canonicalize(raw, landing.mapping, where=landing.path)

    rejected_by_reason = {r["reject_reason"]: r["count"] for r in rejected.groupBy("reject_reason").count().collect()}
    first, last = monthly_partitions.get_first_partition_window(), monthly_partitions.get_last_partition_window()
    stats = good.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_if(F.col("transaction_date") < F.lit(first.start.date()).cast("date")).alias("before"),
        F.count_if(F.col("transaction_date") >= F.lit(last.end.date()).cast("date")).alias("after"),
        F.min("transaction_date").alias("first_date"),
        F.max("transaction_date").alias("last_date"),
    ).first()
    if rejected_by_reason:
        context.log.warning(f"{sum(rejected_by_reason.values())} landing rows could not be read: {rejected_by_reason}")
    if stats["before"] or stats["after"]:
        context.log.warning(
            f"{stats['before']} rows dated before {first.start.date()} and {stats['after']} after "
            f"{last.end.date()} fall outside the month partitions: set CLV_HISTORY_START / CLV_HISTORY_END."
        )
    context.add_output_metadata(
        {
            "months": f"{start} .. {end} (exclusive)",
            "landing_path": landing.path,
            "landing_files": len(files),
            "landing_rows_valid": stats["rows"],
            "landing_rows_rejected": sum(rejected_by_reason.values()),
            "rejected_by_reason": rejected_by_reason,
            "rows_outside_partitions": stats["before"] + stats["after"],
            "landing_date_range": f"{stats['first_date']} .. {stats['last_date']}",
        }
    )
    return in_window(good, start, end)
