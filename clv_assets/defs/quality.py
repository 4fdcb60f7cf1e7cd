"""Asset checks: every stored table against its pandera schema, plus business sanity warnings.

Schema checks are blocking with ERROR severity, except on the tables nothing reads (quarantined_transactions,
cohort_retention, clv_summary, clv_drift): in a run, assets downstream of a failed table do not execute.
"""

import os

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clv_assets.partitions import monthly_partitions, quarterly_partitions, yearly_partitions
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


@dg.asset_check(asset="customer_monthly_activity", blocking=True,
                description="Orders and purchase revenue never negative; every row dated, as of one date.")
def customer_monthly_activity_schema(customer_monthly_activity: DataFrame) -> dg.AssetCheckResult:
    return schema_check_result(customer_monthly_activity, "customer_monthly_activity")


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


@dg.asset_check(asset="clv_predictions", blocking=True,
                description="One row per customer; no null or negative predictions; probabilities and confidence in [0, 1].")
def clv_predictions_schema(clv_predictions: DataFrame) -> dg.AssetCheckResult:
    return schema_check_result(clv_predictions, "clv_predictions", unique_key="customer_id")


@dg.asset_check(asset="clv_model", description="Warns when the served model does not beat the naive baseline on the backtest.")
def clv_model_beats_naive_baseline(clv_model: DataFrame) -> dg.AssetCheckResult:
    """A model that ranks customers worse (Gini) or errs more (MAE) than 'last period's spend again' is not worth serving."""
    rows = {r["model"]: r for r in clv_model.select("model", "normalized_gini", "mae", "is_served").collect()}
    served = next((name for name, r in rows.items() if r["is_served"]), None)
    naive = rows.get("naive_baseline")
    if served is None or naive is None or naive["mae"] is None or rows[served]["mae"] is None:
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"note": "no backtest to compare (short history)", "served_model": str(served)})
    s = rows[served]
    passed = s["normalized_gini"] > naive["normalized_gini"] and s["mae"] < naive["mae"]
    return dg.AssetCheckResult(
        passed=bool(passed), severity=dg.AssetCheckSeverity.WARN,
        metadata={"served_model": served, "served_gini": s["normalized_gini"], "naive_gini": naive["normalized_gini"],
                  "served_mae": s["mae"], "naive_mae": naive["mae"]},
    )


@dg.asset_check(asset="clv_features", description="Warns when repeat buyers' spend per purchase correlates with their "
                "purchase frequency beyond CLV_SPEND_FREQUENCY_MAX_CORRELATION (Gamma-Gamma assumes independence).")
def clv_features_spend_independent_of_frequency(clv_features: DataFrame) -> dg.AssetCheckResult:
    from clv_assets.btyd import spend_frequency_correlation

    limit = float(os.environ.get("CLV_SPEND_FREQUENCY_MAX_CORRELATION", "0.3"))
    stats = clv_features.filter(F.col("frequency") > 0).groupBy("frequency", "monetary").count().toPandas()
    corr = spend_frequency_correlation(stats["frequency"].to_numpy(), stats["monetary"].to_numpy(), stats["count"].to_numpy()) if len(stats) > 2 else float("nan")
    return dg.AssetCheckResult(
        passed=bool(corr != corr or abs(corr) <= limit), severity=dg.AssetCheckSeverity.WARN,
        metadata={"spend_frequency_correlation": float(corr), "max_abs_correlation": limit, "repeat_buyers": int(stats["count"].sum())},
    )


@dg.asset_check(asset="clv_features", blocking=True, description="One row per customer; RFM statistics in range.")
def clv_features_schema(clv_features: DataFrame) -> dg.AssetCheckResult:
    return schema_check_result(clv_features, "clv_features", unique_key="customer_id")


@dg.asset_check(asset="clv_model", blocking=True, description="One row per model; errors non-negative, Gini in [-1, 1], coverage in [0, 1].")
def clv_model_schema(clv_model: DataFrame) -> dg.AssetCheckResult:
    return schema_check_result(clv_model, "clv_model", unique_key="model")


_COHORT_CHECK = "Rates in [0, 1], sizes and counts non-negative, one row per (cohort, period number)."


def _cohort_result(table: DataFrame, asset: str) -> dg.AssetCheckResult:
    key = F.concat_ws("/", F.col("cohort_start").cast("string"), F.col("period_number").cast("string"))
    return schema_check_result(table.withColumn("cohort_and_period", key), asset, unique_key="cohort_and_period")


@dg.asset_check(asset="monthly_cohorts", blocking=True, partitions_def=monthly_partitions, description=_COHORT_CHECK)
def monthly_cohorts_schema(monthly_cohorts: DataFrame) -> dg.AssetCheckResult:
    return _cohort_result(monthly_cohorts, "monthly_cohorts")


@dg.asset_check(asset="quarterly_cohorts", blocking=True, partitions_def=quarterly_partitions, description=_COHORT_CHECK)
def quarterly_cohorts_schema(quarterly_cohorts: DataFrame) -> dg.AssetCheckResult:
    return _cohort_result(quarterly_cohorts, "quarterly_cohorts")


@dg.asset_check(asset="yearly_cohorts", blocking=True, partitions_def=yearly_partitions, description=_COHORT_CHECK)
def yearly_cohorts_schema(yearly_cohorts: DataFrame) -> dg.AssetCheckResult:
    return _cohort_result(yearly_cohorts, "yearly_cohorts")


@dg.asset_check(asset="cohort_retention", description="One row per monthly cohort; retention shares in [0, 1].")
def cohort_retention_schema(cohort_retention: DataFrame) -> dg.AssetCheckResult:
    return schema_check_result(cohort_retention, "cohort_retention", unique_key="cohort_start")


@dg.asset_check(asset="rfm_segments", blocking=True, description="One row per customer; R, F, M scores 1-5; a known segment source.")
def rfm_segments_schema(rfm_segments: DataFrame) -> dg.AssetCheckResult:
    return schema_check_result(rfm_segments, "rfm_segments", unique_key="customer_id")


@dg.asset_check(asset="clv_insights", blocking=True,
                description="One row per customer; known tiers and priority levels; non-negative priority scores.")
def clv_insights_schema(clv_insights: DataFrame) -> dg.AssetCheckResult:
    return schema_check_result(clv_insights, "clv_insights", unique_key="customer_id")


@dg.asset_check(asset="clv_summary", description="Known sections; non-negative customer counts and predicted CLV.")
def clv_summary_schema(clv_summary: DataFrame) -> dg.AssetCheckResult:
    return schema_check_result(clv_summary, "clv_summary")


@dg.asset_check(asset="clv_drift", description="One row per compared measure; non-negative PSI.")
def clv_drift_schema(clv_drift: DataFrame) -> dg.AssetCheckResult:
    return schema_check_result(clv_drift, "clv_drift", unique_key="measure")


@dg.asset_check(asset="clv_model", blocking=True,
                description="Fails when the served model's backtest normalized Gini is below CLV_MIN_BACKTEST_GINI (default 0.3): "
                "the model ranks customers too poorly to act on, and the predictions are not refreshed with it in that run.")
def clv_model_backtest_gini_floor(clv_model: DataFrame) -> dg.AssetCheckResult:
    floor = float(os.environ.get("CLV_MIN_BACKTEST_GINI", "0.3"))
    served = clv_model.filter("is_served").select("model", "normalized_gini", "mode").first()
    if served is None or served["normalized_gini"] is None:
        return dg.AssetCheckResult(passed=True, metadata={
            "floor": floor, "note": "no backtest to judge (short history): the BG/NBD model is served unscored"})
    gini = float(served["normalized_gini"])
    return dg.AssetCheckResult(
        passed=gini >= floor,
        metadata={"served_model": served["model"], "backtest_normalized_gini": gini, "floor": floor},
    )
