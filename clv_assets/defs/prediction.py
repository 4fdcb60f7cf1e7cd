"""Predictive CLV: customer features, backtested models (with a champion) and per-customer predictions."""

import base64
import os
import tempfile
from urllib.parse import urlparse

import dagster as dg
from pydantic import Field
from pyspark.sql import DataFrame

from clv_assets import metrics
from clv_assets.artifacts import ArtifactStore
from clv_assets.automation import REFRESH_AFTER_UPSTREAM, refresh_once_present
from clv_assets.storage import SparkParquetIOManager

DRIFT_REFERENCE = "drift_reference.json"


class ClvFeaturesConfig(dg.Config):
    as_of_date: str | None = Field(
        default=None, description="Predict from the history up to this date (YYYY-MM-DD); default: last transaction date."
    )
    horizon_months: int = Field(default=12, description="Prediction horizon in months: 3, 6, 12 or 24.")


class ClvModelConfig(dg.Config):
    model_type: str = Field(
        default="champion",
        description="Model to serve: champion (best backtest) or linear_regression, random_forest, gradient_boosting, "
        "bgnbd_gamma_gamma, ensemble.",
    )
    interval_coverage: float = Field(default=0.8, gt=0, lt=1, description="Coverage of the prediction intervals.")
    log_target: bool = Field(default=False, description="ML models learn log1p(revenue) instead of revenue.")
    rf_num_trees: int = Field(default=40, ge=1, description="Trees of the random forest.")
    gbt_max_iter: int = Field(default=20, ge=1, description="Boosting rounds of the gradient-boosted trees.")
    gbt_step_size: float = Field(default=0.2, gt=0, le=1, description="Learning rate of the gradient-boosted trees.")
    seed: int = Field(default=42, description="Seed of the tree models.")
    max_training_rows: int = Field(default=250_000, ge=100, description="ML models learn from a random sample of at "
                                   "most this many customers (every customer gets a prediction).")
    max_backtest_customers: int = Field(default=250_000, ge=0, description="The backtest scores a random sample of "
                                        "about this many customers (0: all; never fewer than max_training_rows).")


class ClvPredictionsConfig(dg.Config):
    profit_margin: float = Field(default=0.2, gt=0, le=1, description="Share of revenue that is profit.")
    discount_rate_monthly: float = Field(default=0.01, ge=0, lt=1, description="Monthly discount rate of future profit.")


def artifact_store(io_manager: SparkParquetIOManager) -> ArtifactStore:
    """Where the model's files live: ``CLV_ARTIFACTS_URI``, by default ``<warehouse>/_artifacts``."""
    return ArtifactStore.from_env(io_manager.base_uri)


@dg.asset(group_name="prediction", kinds={"spark", "parquet"}, automation_condition=REFRESH_AFTER_UPSTREAM)
def clv_features(context: dg.AssetExecutionContext, config: ClvFeaturesConfig, transactions: DataFrame) -> DataFrame:
    """What we know about each customer on the as-of date, from their history only: how often, how recently
    and how much they buy, recent spend and orders (30 to 365 days), rhythm between purchases, spend trend,
    holiday share, category mix, channel and refunds. One row per customer who has bought by then."""
    from clv_assets import features, predictive

    as_of = metrics.resolve_as_of(transactions, config.as_of_date)
    plan = predictive.plan_backtest(transactions, as_of, predictive.check_horizon(config.horizon_months))
    levels = features.feature_levels(transactions, plan.levels_cutoff)
    from pyspark.sql import functions as F

    table = features.build_features(transactions, as_of, **levels).withColumn(
        "horizon_months", F.lit(config.horizon_months).cast("int")
    )
    if plan.mode != "full":
        context.log.warning(plan.reason)
    context.add_output_metadata(
        {
            "as_of_date": as_of.isoformat(),
            "horizon_months": config.horizon_months,
            "backtest_mode": plan.mode,
            "backtest_plan": plan.reason,
            "categories_encoded": dg.MetadataValue.json(levels["categories"]),
            "channels_encoded": dg.MetadataValue.json(levels["channels"]),
            "feature_count": len(features.feature_columns(table)),
        }
    )
    return table


@dg.asset(group_name="prediction", kinds={"spark", "sparkml", "parquet"})
def clv_model(
    context: dg.AssetExecutionContext,
    config: ClvModelConfig,
    io_manager: dg.ResourceParam[SparkParquetIOManager],
    transactions: DataFrame,
    clv_features: DataFrame,
) -> DataFrame:
    """Which model predicts next-horizon revenue best, judged on a period none of them has seen: linear
    regression, random forest, gradient boosting, BG/NBD + Gamma-Gamma, their average and a naive baseline.
    One row per model with its backtest scores; the champion (best ranks on Gini and MAE) serves predictions
    unless a model is chosen. The served model is refit on the latest data and saved next to the warehouse, or
    under CLV_ARTIFACTS_URI."""
    from clv_assets import drift, features, predictive

    spark = transactions.sparkSession
    store = artifact_store(io_manager)
    root = store.for_writing(spark)  # before training: s3:// artifacts fail early on a remote cluster
    first = clv_features.select("cutoff_date", "horizon_months").first()
    if first is None:
        raise ValueError("clv_features is empty: no customer has a purchase by the as-of date.")
    as_of, horizon = first["cutoff_date"], int(first["horizon_months"])
    plan = predictive.plan_from_first_purchases(clv_features, as_of, horizon)  # = plan_backtest, without a pass over tx
    if plan.mode != "full":
        context.log.warning(plan.reason)
    params = predictive.MLParams(log_target=config.log_target, rf_num_trees=config.rf_num_trees,
                                 gbt_max_iter=config.gbt_max_iter, gbt_step_size=config.gbt_step_size, seed=config.seed,
                                 max_training_rows=config.max_training_rows)
    levels = features.feature_levels(transactions, plan.levels_cutoff)
    backtest, training_set = predictive.run_backtest(transactions, plan, params=params, coverage=config.interval_coverage,
                                                     levels=levels, max_customers=config.max_backtest_customers)
    feature_cols = backtest.feature_cols or [*features.feature_columns(clv_features), *predictive.BTYD_FEATURES]
    missing = set(feature_cols) - set(features.feature_columns(clv_features)) - set(predictive.BTYD_FEATURES)
    if missing:
        raise ValueError(f"clv_features lacks {sorted(missing)}: re-materialize clv_features with clv_model.")
    served, warning = predictive.served_model(config.model_type, backtest.champion, plan)
    if warning:
        context.log.warning(warning)
    # Only what serves is refit (the other models' backtest scores stay in the table).
    production = predictive.fit_production(clv_features, plan, training_set, feature_cols, levels, params, serve=served)
    paths = predictive.save_artifacts(spark, root, backtest, production, served, config.interval_coverage)
    # What the model was trained on, for the drift check (clv_drift): the features' bins, shares and means.
    reference = {"model_version": context.run_id, "as_of_date": as_of.isoformat(),
                 "features": drift.profile(clv_features, list(drift.DRIFT_FEATURES))}
    predictive.write_json(spark, reference, f"{root}/{DRIFT_REFERENCE}")
    png = _lift_chart(backtest, served, root, horizon, plan.score_cutoff) if len(backtest.predictions) else None
    location = store.publish()  # s3://: uploaded as the new served version

    def published(path: str) -> str:
        return path.replace(f"{root}/", f"{location}/")

    table = predictive.metrics_table(backtest, served, {name: published(path) for name, path in paths.items()})

    metadata = {
        "as_of_date": as_of.isoformat(),
        "horizon_months": horizon,
        "backtest_mode": plan.mode,
        "backtest_plan": plan.reason,
        "train_cutoff": str(plan.train_cutoff),
        "score_cutoff": str(plan.score_cutoff),
        "backtest_customers": _backtest_population(backtest),
        "champion": str(backtest.champion),
        "model_version": context.run_id,
        "served_model": served,
        "champion_rule": "lowest rank sum of normalized Gini (desc) and MAE (asc); ties: higher Gini, then lower MAE",
        "artifact_root": dg.MetadataValue.path(location),
        "backtest_metrics": dg.MetadataValue.md(_markdown(table)),
        "bgnbd_params_as_of": dg.MetadataValue.json(production.btyd.to_dict()),
        "timings_seconds": dg.MetadataValue.json({k: round(v, 2) for k, v in backtest.timings.items()}),
    }
    for name, importances in backtest.importances.items():
        metadata[f"feature_importance_{name}"] = dg.MetadataValue.json(dict(list(importances.items())[:20]))
    if png:
        encoded = base64.b64encode(open(png, "rb").read()).decode("ascii")
        metadata["lift_chart"] = dg.MetadataValue.md(f"![lift](data:image/png;base64,{encoded})")
        metadata["lift_chart_path"] = dg.MetadataValue.path(published(png))
    context.add_output_metadata(metadata)
    # An explicit schema: with a short history the backtest windows (and some metrics) are all null.
    schema = ", ".join(
        ["model string", *[f"{c} double" for c in predictive.METRIC_COLUMNS], "backtest_customers long", "coverage_customers long",
         "rank_sum double", "is_champion boolean", "is_served boolean", "artifact_path string", "mode string",
         "horizon_months long", "train_cutoff date", "score_cutoff date", "as_of date"]
    )
    return spark.createDataFrame(table.astype(object).where(table.notna(), None), schema)


def _backtest_population(backtest) -> str:
    """Whom the backtest scored, in words: every customer of A - H, or how many of them in a random sample."""
    plan, scored = backtest.plan, len(backtest.predictions)
    if backtest.sample_share < 1.0:
        return f"a random sample of {scored:,} of the {plan.score_customers:,} customers who bought by {plan.score_cutoff}"
    return f"all {scored:,} customers who bought by {plan.score_cutoff}" if scored else "none (no backtest)"


def _lift_chart(backtest, served: str, root: str, horizon: int, score_cutoff) -> str:
    """The backtest lift chart of the champion, the served model, BG/NBD and the naive baseline, as a PNG file."""
    from clv_assets import evaluation, predictive

    preds = backtest.predictions
    shown = list(dict.fromkeys([backtest.champion, served, predictive.BTYD_MODEL, predictive.NAIVE]))
    tables = {m: evaluation.decile_table(preds["actual"], preds[m]) for m in shown if m in preds.columns}
    png = _chart_path(root)
    evaluation.lift_chart_png(tables, png, title=f"Backtest lift chart, {horizon}-month revenue as of {score_cutoff}")
    return png


def _chart_path(root: str) -> str:
    """The lift chart goes beside the models when they are on a local disk, else into a temporary folder."""
    if urlparse(root).scheme in ("", "file"):
        folder = root.removeprefix("file://")
    else:
        folder = tempfile.mkdtemp(prefix="clv_model_")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, "lift_chart.png")


def _markdown(table) -> str:
    cols = ["model", "normalized_gini", "mae", "rmse", "r2", "spearman", "top_decile_capture", "decile_mape",
            "total_predicted", "total_actual", "coverage", "mean_interval_width", "is_champion", "is_served"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in table[cols].itertuples(index=False):
        cells = [f"{v:,.4f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dg.asset(group_name="prediction", kinds={"spark", "parquet"}, automation_condition=refresh_once_present("clv_model"))
def clv_predictions(
    context: dg.AssetExecutionContext,
    config: ClvPredictionsConfig,
    io_manager: dg.ResourceParam[SparkParquetIOManager],
    transactions: DataFrame,
    clv_features: DataFrame,
    clv_model: DataFrame,
) -> DataFrame:
    """Per customer, for the next horizon: predicted revenue with a prediction interval (80% by default),
    predicted CLV (profit, discounted to today), how sure we are, the chance they are still active (and of
    churn) and their expected number of purchase days, from the served model."""
    import numpy as np
    import pandas as pd

    from clv_assets import drift, predictive

    spark = transactions.sparkSession
    store = artifact_store(io_manager)
    manifest, production, calibration = predictive.load_artifacts(spark, store.for_reading(spark))
    served = manifest["served"]
    out = predictive.predict_production(production, clv_features, transactions, served)
    revenue = out["predicted_revenue"].to_numpy(dtype=float)
    if calibration is not None and served in calibration.columns:
        pred_cal, actual_cal = predictive.calibration_predictions(calibration, served)
        lower, upper = predictive.conformal_bounds(pred_cal, actual_cal, revenue, manifest["coverage"])
    else:
        context.log.warning("No backtest to calibrate prediction intervals on: prediction_lower/upper are null.")
        lower = upper = np.full(revenue.size, np.nan)
    factors = predictive.discount_factors(np.vstack(out["discount_shares"].to_numpy()), config.discount_rate_monthly)
    alive = out["probability_alive"].to_numpy(dtype=float)
    result = pd.DataFrame({
        "customer_id": out["customer_id"],
        "predicted_revenue": revenue,
        "predicted_clv": config.profit_margin * revenue * factors,
        "prediction_lower": lower,
        "prediction_upper": upper,
        "clv_confidence": predictive.clv_confidence(revenue, lower, upper),
        "probability_alive": alive,
        "churn_probability": 1.0 - alive,
        "expected_purchases": out["expected_purchases"].to_numpy(dtype=float),
        "model_name": served,
        "horizon_months": production.horizon_months,
        "as_of_date": production.as_of,
    })
    schema = ("customer_id string, predicted_revenue double, predicted_clv double, prediction_lower double, "
              "prediction_upper double, clv_confidence double, probability_alive double, churn_probability double, "
              "expected_purchases double, model_name string, horizon_months int, as_of_date date")
    coverage_row = clv_model.filter(clv_model.model == served).select("coverage").first()
    # No interval: null, not NaN. Arrow hands Spark one partition per 10,000 rows: merged into one per core, so the
    # table is a few files, not a hundred.
    table = predictive.from_pandas(spark, result, schema, nan_as_null=True).coalesce(predictive.task_slots(spark) or 8)
    reference = record_prediction_reference(spark, store, result[drift.PREDICTION].to_numpy(dtype=float))
    context.add_output_metadata(
        {
            "model_name": served,
            "as_of_date": production.as_of.isoformat(),
            "horizon_months": production.horizon_months,
            "profit_margin": config.profit_margin,
            "discount_rate_monthly": config.discount_rate_monthly,
            "customers": len(result),
            "total_predicted_revenue": dg.MetadataValue.float(float(revenue.sum())),
            "total_predicted_clv": dg.MetadataValue.float(float(result["predicted_clv"].sum())),
            "mean_probability_alive": dg.MetadataValue.float(float(alive.mean())) if alive.size else 0.0,
            "interval_coverage_target": manifest["coverage"],
            "interval_coverage_backtest": dg.MetadataValue.float(float(coverage_row[0])) if coverage_row and coverage_row[0] is not None else "n/a",
            "mean_predicted_clv": dg.MetadataValue.float(float(result["predicted_clv"].mean())) if len(result) else 0.0,
            "model_version": str(reference.get("model_version")) if reference else "unknown",
        }
    )
    return table


def record_prediction_reference(spark, store: ArtifactStore, predicted_clv) -> dict | None:
    """The first predictions of a newly trained model (``predicted_clv``: an array) become its reference for the
    drift check."""
    from pyspark.errors import AnalysisException

    from clv_assets import drift, predictive

    try:
        reference = predictive.read_json(spark, f"{store.folder}/{DRIFT_REFERENCE}")
    except AnalysisException:  # a model trained before drift references existed: nothing to record
        return None
    if drift.PREDICTION not in reference:
        reference[drift.PREDICTION] = drift.profile_values(predicted_clv)
        predictive.write_json(spark, reference, f"{store.folder}/{DRIFT_REFERENCE}")
        store.push(DRIFT_REFERENCE)
    return reference
