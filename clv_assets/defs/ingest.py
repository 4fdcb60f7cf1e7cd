"""Raw landing files become the canonical, month-partitioned ``transactions`` table; rows that cannot be
used go to ``quarantined_transactions`` with a reason, so input = accepted + quarantined."""

import dagster as dg
from pyspark.sql import DataFrame

from clv_assets import ingest
from clv_assets.landing import LandingZone
from clv_assets.partitions import monthly_partitions
from clv_assets.spark import SparkResource


def _partition_window():
    first, last = monthly_partitions.get_first_partition_window(), monthly_partitions.get_last_partition_window()
    return first.start.date(), last.end.date()


def _count_metadata(counts: dict[str, int]) -> dict:
    return {
        "landing_input_rows": counts["input_rows"],
        "landing_accepted_rows": counts["accepted_rows"],
        "landing_quarantined_rows": counts["quarantined_rows"],
        "quarantined_by_reason": dg.MetadataValue.json(
            {k.removeprefix("quarantined_"): v for k, v in counts.items() if k.startswith("quarantined_") and k != "quarantined_rows"}
        ),
    }


@dg.asset(
    partitions_def=monthly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"partition_expr": "transaction_month"},
    group_name="ingest",
    kinds={"spark", "parquet"},
)
def transactions(context: dg.AssetExecutionContext, spark: SparkResource, landing: LandingZone) -> DataFrame:
    """Every purchase and refund from the landing files, in one canonical schema, one partition per month.

    A backfill of many months reads the landing files once and writes all its months in one Spark job;
    re-running one month rewrites only that month. Unusable rows are left to ``quarantined_transactions``.
    """
    window = context.partition_time_window
    flagged, counts = landing.load(spark.spark_session, _partition_window())
    if counts["quarantined_rows"]:
        context.log.warning(f"{counts['quarantined_rows']} of {counts['input_rows']} landing rows are quarantined: see quarantined_transactions")
    context.add_output_metadata({"landing_path": landing.path, **_count_metadata(counts)})
    return ingest.in_window(ingest.accepted(flagged), window.start.date().isoformat(), window.end.date().isoformat())


@dg.asset(group_name="ingest", kinds={"spark", "parquet"})
def quarantined_transactions(context: dg.AssetExecutionContext, spark: SparkResource, landing: LandingZone) -> DataFrame:
    """Landing rows that could not be used, each with its source file, row number and reason code
    (missing customer id, unparseable or implausible date, non-numeric amount, duplicate, outside the months...)."""
    flagged, counts = landing.load(spark.spark_session, _partition_window())
    context.add_output_metadata(
        {**_count_metadata(counts), "reason_codes": dg.MetadataValue.json(ingest.REJECT_REASONS)}
    )
    return ingest.quarantined(flagged, expected_rows=counts["quarantined_rows"])
