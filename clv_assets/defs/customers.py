"""Customer-level metrics and historical CLV."""

import dagster as dg
from pydantic import Field
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clv_assets import cohorts, metrics
from clv_assets.automation import REFRESH_AFTER_UPSTREAM


class CustomerMetricsConfig(dg.Config):
    as_of_date: str | None = Field(
        default=None, description="Measure recency and tenure as of this date (YYYY-MM-DD); default: last transaction date."
    )


class HistoricalClvConfig(dg.Config):
    profit_margin: float = Field(default=0.2, gt=0, le=1, description="Share of net revenue that is profit.")


@dg.asset(group_name="customers", kinds={"spark", "parquet"}, automation_condition=REFRESH_AFTER_UPSTREAM)
def customer_metrics(context: dg.AssetExecutionContext, config: CustomerMetricsConfig, transactions: DataFrame) -> DataFrame:
    """One row per customer: first and last purchase, orders and purchase days, gross, refunded and net revenue,
    average order value, lifespan, recency, purchase frequency per month of tenure, how regularly they buy
    (mean and spread of days between purchases), and when and through which channel they were acquired."""
    as_of = metrics.resolve_as_of(transactions, config.as_of_date)
    context.add_output_metadata({"as_of_date": as_of.isoformat()})
    return metrics.customer_metrics(transactions, as_of)


@dg.asset(group_name="customers", kinds={"spark", "parquet"}, automation_condition=REFRESH_AFTER_UPSTREAM)
def historical_clv(context: dg.AssetExecutionContext, config: HistoricalClvConfig, customer_metrics: DataFrame) -> DataFrame:
    """The profit each customer has brought so far: profit margin x net revenue (refunds netted)."""
    clv = metrics.historical_clv(customer_metrics, config.profit_margin)
    summary = metrics.distribution_summary(clv, "historical_clv")
    context.add_output_metadata(
        {
            "profit_margin": config.profit_margin,
            "customers": int(summary["count"]),
            "total_historical_clv": dg.MetadataValue.float(summary["total"]),
            "mean_historical_clv": dg.MetadataValue.float(summary["mean"]),
            "median_historical_clv": dg.MetadataValue.float(summary["p50"]),
            "distribution": dg.MetadataValue.json({k: round(v, 4) for k, v in summary.items()}),
        }
    )
    return clv


@dg.asset(group_name="customers", kinds={"spark", "parquet"}, automation_condition=REFRESH_AFTER_UPSTREAM)
def customer_monthly_activity(
    context: dg.AssetExecutionContext, transactions: DataFrame, customer_metrics: DataFrame
) -> DataFrame:
    """One row per customer and calendar month in which they bought or returned something, up to the customer
    metrics' as-of date: orders, gross and net revenue of the month, and the month of the customer's first
    purchase (their cohort). The monthly, quarterly and yearly cohorts are built from it."""
    as_of = customer_metrics.agg(F.max("as_of_date")).first()[0]  # None without customers: an empty table
    context.add_output_metadata({"as_of_date": as_of.isoformat() if as_of else "none (no customer)"})
    return cohorts.monthly_activity(transactions, as_of)
