"""Asset checks: every stored table against its pandera schema, plus business sanity warnings.

Schema checks are blocking with ERROR severity: in a run, assets downstream of a failed table do not execute.
"""

import os

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clv_assets.partitions import monthly_partitions
from clv_assets.quality import schema_check_result


@dg.asset_check(asset="transactions", blocking=True, partitions_def=monthly_partitions,
                description="Canonical schema: typed, non-null ids, dates and amounts; unique transaction ids.")
def transactions_schema(transactions: DataFrame) -> dg.AssetCheckResult:
    return schema_check_result(transactions, "transactions", unique_key="transaction_id")


@dg.asset_check(asset="quarantined_transactions", description="Every quarantined row has a source, a row number and a known reason.")
def quarantined_transactions_schema(quarantined_transactions: DataFrame) -> dg.AssetCheckResult:
    return schema_check_result(quarantined_transactions, "quarantined_transactions")


@dg.asset_check(asset="customer_metrics", blocking=True, description="One row per customer; counts, revenue and days in range.")
def customer_metrics_schema(customer_metrics: DataFrame) -> dg.AssetCheckResult:
    return schema_check_result(customer_metrics, "customer_metrics", unique_key="customer_id")


@dg.asset_check(asset="historical_clv", blocking=True, description="One row per customer; margin in [0, 1].")
def historical_clv_schema(historical_clv: DataFrame) -> dg.AssetCheckResult:
    return schema_check_result(historical_clv, "historical_clv", unique_key="customer_id")


@dg.asset_check(asset="historical_clv", description="Warns about customers whose historical CLV exceeds CLV_EXTREME_CLV_THRESHOLD.")
def historical_clv_extreme_values(historical_clv: DataFrame) -> dg.AssetCheckResult:
    """Extreme CLV is worth a look (a B2B account in a B2C file, a unit error) but does not stop anything."""
    threshold = float(os.environ.get("CLV_EXTREME_CLV_THRESHOLD", "10000"))
    extreme = historical_clv.filter(F.col("historical_clv") > threshold)
    count = extreme.count()
    sample = [r.asDict() for r in extreme.orderBy(F.desc("historical_clv")).select("customer_id", "historical_clv").limit(5).collect()]
    return dg.AssetCheckResult(
        passed=count == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"threshold": threshold, "customers_above_threshold": count, "top_customers": dg.MetadataValue.json(sample)},
    )
