"""Acquisition cohorts by month, quarter and year (one factory), and the monthly retention report.

A cohort partition holds the customers whose first purchase falls in that period; their later purchases
fall in later months, so every cohort partition reads the whole ``customer_monthly_activity`` (one row per
customer and month, tagged with the customer's cohort). The math and the definitions (retention, period
numbers, table shape) are in ``clv_assets/cohorts.py``.
"""

import base64

import dagster as dg
from pyspark.sql import DataFrame

from clv_assets import cohorts
from clv_assets.automation import refresh_after_update_of
from clv_assets.partitions import monthly_partitions, quarterly_partitions, yearly_partitions


def _num(value):
    return None if value is None else round(float(value), 6)


def cohort_asset(period: str, partitions_def: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
    """The ``<period>_cohorts`` asset: one partition per acquisition period (see ``clv_assets.cohorts``)."""
    cohorts.PERIOD_MONTHS[period]  # noqa: B018 - fail at load time on an unknown period

    @dg.asset(
        name=f"{period}_cohorts",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={"partition_expr": "cohort_start"},
        group_name="cohorts",
        kinds={"spark", "parquet"},
        automation_condition=refresh_after_update_of("customer_monthly_activity", "historical_clv"),
        description=(
            f"Customers acquired (first purchase) in each {period.removesuffix('ly')} period: cohort size, net revenue, "
            "average historical CLV, retention and churn rate, orders and order value, and the retention and "
            "revenue curve by periods since acquisition. One row per (cohort, period number); the cohort-level "
            "figures repeat on each row, period_number = 0 is the cohort summary. A backfill of many periods is "
            "one run; a period without new customers is an empty partition."
        ),
    )
    def _cohorts(
        context: dg.AssetExecutionContext,
        customer_monthly_activity: DataFrame,
        customer_metrics: DataFrame,
        historical_clv: DataFrame,
    ) -> DataFrame:
        window = context.partition_time_window
        table = cohorts.cohort_table(
            customer_monthly_activity, customer_metrics, historical_clv, period, window.start.date(), window.end.date()
        )
        summary = {r["cohort_start"].isoformat(): r for r in cohorts.cohort_summary(table).collect()}
        for key in context.partition_keys:
            row = summary.get(key)
            context.add_asset_metadata(
                {
                    "cohort_size": int(row["cohort_size"]) if row else 0,
                    "total_revenue": dg.MetadataValue.float(_num(row["total_revenue"]) if row else 0.0),
                    "avg_clv": _num(row["avg_clv"]) if row else None,
                    "retention_rate": _num(row["retention_rate"]) if row else None,
                    "repeat_rate": _num(row["repeat_rate"]) if row else None,
                    "months_tracked": int(row["months_tracked"]) if row else 0,
                    "as_of_date": row["as_of_date"].isoformat() if row else None,
                },
                partition_key=key,
            )
        context.log.info(
            f"{period} cohorts {context.partition_keys[0]}..{context.partition_keys[-1]}: "
            f"{len(summary)} with customers, {sum(r['cohort_size'] for r in summary.values())} customers"
        )
        return table

    return _cohorts


monthly_cohorts = cohort_asset("monthly", monthly_partitions)
quarterly_cohorts = cohort_asset("quarterly", quarterly_partitions)
yearly_cohorts = cohort_asset("yearly", yearly_partitions)


@dg.asset(
    ins={"monthly_cohorts": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
    group_name="cohorts",
    kinds={"spark", "parquet"},
    automation_condition=refresh_after_update_of("monthly_cohorts"),
)
def cohort_retention(context: dg.AssetExecutionContext, monthly_cohorts: DataFrame) -> DataFrame:
    """The retention matrix of the monthly cohorts: one row per cohort, ``period_0 .. period_N`` = share of the
    cohort active N months after acquisition (null where the cohort is younger). The materialization shows it
    as a heatmap and compares the best and worst cohorts by average CLV and by retention."""
    matrix = cohorts.retention_matrix(monthly_cohorts)
    local = matrix.toPandas()  # cohorts x periods: small
    metadata: dict = {"cohorts": len(local)}
    if len(local):
        png = cohorts.retention_heatmap_png(local)
        metadata["retention_heatmap"] = dg.MetadataValue.md(
            f"![retention](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
        )
    metadata["cohort_comparison"] = dg.MetadataValue.md(cohorts.cohort_comparison_markdown(local))
    context.add_output_metadata(metadata)
    return matrix
