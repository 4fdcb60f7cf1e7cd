"""Schema checks: failing counts and samples, and blocking checks that stop downstream assets in a real run."""

import datetime as dt

import dagster as dg

from clv_assets import quality
from clv_assets.landing import LandingZone
from clv_assets.storage import SparkParquetIOManager

PREDICTION_SCHEMA = ("customer_id string, predicted_revenue double, predicted_clv double, prediction_lower double, "
                     "prediction_upper double, clv_confidence double, probability_alive double, churn_probability double, "
                     "expected_purchases double, model_name string, horizon_months int, as_of_date date")


def test_check_table_counts_failures_by_rule_and_samples_rows(spark):
    df = spark.createDataFrame(
        [("A", 0.2, 10.0, 2.0, "x"), ("A", 0.2, 5.0, 1.0, "y"), ("B", 1.5, None, 3.0, "z"), ("C", 0.2, 1.0, 0.2, "w")],
        "customer_id string, profit_margin double, net_revenue double, historical_clv double, extra string",
    )
    report = quality.check_table(df, "historical_clv", unique_key="customer_id")
    assert not report.passed
    assert report.rows == 4
    assert {k: v for k, v in report.failing.items() if v} == {
        "profit_margin_<=_1": 1, "net_revenue_not_null": 1, "duplicate_customer_id": 2}
    assert {r["customer_id"] for r in report.sample} == {"A", "B"}
    assert "SCHEMA" in report.pandera_errors or "DATA" in report.pandera_errors


def test_check_table_passes_clean_data(spark):
    df = spark.createDataFrame([("A", 10.0, 0.2, 2.0)], "customer_id string, net_revenue double, profit_margin double, historical_clv double")
    report = quality.check_table(df, "historical_clv", unique_key="customer_id")
    assert report.passed and report.sample == []


def test_clean_table_costs_a_few_spark_jobs_not_one_per_column(spark):
    """pandera alone would run one job per non-nullable column (9 here); the counts already saw no null."""
    day = dt.date(2025, 12, 31)
    rows = [(f"C{i}", 10.0, 2.0, 1.0, 20.0, 0.5, 0.9, 0.1, 1.5, "ensemble", 12, day) for i in range(20)]
    df = spark.createDataFrame(rows, PREDICTION_SCHEMA)
    tracker = spark.sparkContext.statusTracker()
    spark.sparkContext.setJobGroup("clean_check", "clean_check")
    try:
        assert quality.check_table(df, "clv_predictions", unique_key="customer_id").passed
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    # The counts and the duplicate-key pass: 7 jobs; with pandera's null checks it was 25 (two per non-nullable column).
    assert len(tracker.getJobIdsForGroup("clean_check")) < 9


def test_wrong_type_fails_the_schema(spark):
    df = spark.createDataFrame([("A", "10", 0.2, 2.0)], "customer_id string, net_revenue string, profit_margin double, historical_clv double")
    assert not quality.check_table(df, "historical_clv").passed


class DuplicatingIOManager(SparkParquetIOManager):
    """Serves customer_metrics with every row twice, as a buggy upstream would."""

    def load_input(self, context):
        df = super().load_input(context)
        return df.unionByName(df) if context.asset_key.path == ["customer_metrics"] else df


def test_blocking_check_stops_downstream_assets(spark_resource, tiny_csv, tmp_path):
    from clv_assets.definitions import defs

    definitions = defs()
    resources = {
        "spark": spark_resource,
        "landing": LandingZone(path=str(tiny_csv), customer_id_col="cust", transaction_date_col="order_date",
                               amount_col="value", date_format="dd/MM/yyyy"),
        "io_manager": DuplicatingIOManager(spark=spark_resource, base_uri=str(tmp_path / "wh")),
    }
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            definitions.assets + list(definitions.asset_checks),
            selection=dg.AssetSelection.assets("transactions", "customer_metrics", "historical_clv"),
            resources=resources, instance=instance, raise_on_error=False,
            tags={"dagster/asset_partition_range_start": "2023-01-01", "dagster/asset_partition_range_end": "2023-03-01"},
        )
        evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert evaluations["transactions_schema"].passed
        failed = evaluations["customer_metrics_schema"]
        assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
        assert failed.metadata["failing_rows_by_rule"].value == {"duplicate_customer_id": 6}
        materialized = {e.asset_key.path[0] for e in result.get_asset_materialization_events()}
        assert "customer_metrics" in materialized and "historical_clv" not in materialized


def test_prediction_rules_catch_negative_null_and_out_of_range(spark):
    schema = PREDICTION_SCHEMA
    day = dt.date(2025, 12, 31)
    ok = ("A", 10.0, 2.0, 1.0, 20.0, 0.5, 0.9, 0.1, 1.5, "ensemble", 12, day)
    rows = [ok, ("B", -1.0, 2.0, None, None, None, 1.2, -0.2, 1.0, "ensemble", 12, day),
            ("C", None, 2.0, 0.0, 5.0, 0.4, 0.5, 0.5, 1.0, "ensemble", 12, day)]
    report = quality.check_table(spark.createDataFrame(rows, schema), "clv_predictions", unique_key="customer_id")
    assert {k: v for k, v in report.failing.items() if v} == {
        "predicted_revenue_>=_0": 1, "predicted_revenue_not_null": 1, "probability_alive_<=_1": 1, "churn_probability_>=_0": 1}
    assert quality.check_table(spark.createDataFrame([ok], schema), "clv_predictions", unique_key="customer_id").passed


def test_model_check_warns_when_served_model_loses_to_naive(spark):
    from clv_assets.defs.quality import clv_model_beats_naive_baseline

    table = lambda gini, mae: spark.createDataFrame(  # noqa: E731
        [("ensemble", gini, mae, True), ("naive_baseline", 0.5, 100.0, False)],
        "model string, normalized_gini double, mae double, is_served boolean")
    assert clv_model_beats_naive_baseline(table(0.7, 90.0)).passed
    worse = clv_model_beats_naive_baseline(table(0.4, 90.0))
    assert not worse.passed and worse.severity == dg.AssetCheckSeverity.WARN


def test_every_stored_asset_has_a_schema_and_a_schema_check():
    from clv_assets.definitions import defs

    definitions = defs()
    assets = {spec.key.to_user_string() for spec in definitions.resolve_all_asset_specs()}
    checks = {key.name for key in definitions.resolve_asset_graph().asset_check_keys}
    assert assets - set(quality.TABLE_RULES) == set(), "add the new table's rules to clv_assets/quality.py"
    assert {f"{a}_schema" for a in assets} - checks == set(), "add a <asset>_schema check in clv_assets/defs/quality.py"
