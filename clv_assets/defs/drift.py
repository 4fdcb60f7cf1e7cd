"""Model drift: how far today's customers and predictions are from what the served model was trained on."""

import dagster as dg
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame

from clv_assets import drift
from clv_assets.automation import refresh_once_present
from clv_assets.defs.prediction import DRIFT_REFERENCE, artifact_store
from clv_assets.storage import SparkParquetIOManager

DRIFT_SCHEMA = ("measure string, psi double, reference_mean double, current_mean double, relative_mean_shift double, "
                "model_version string, reference_as_of date, as_of_date date")


@dg.asset(
    deps=["clv_model"],
    group_name="prediction",
    kinds={"spark", "parquet"},
    automation_condition=refresh_once_present("clv_model", "clv_predictions"),
)
def clv_drift(
    context: dg.AssetExecutionContext,
    io_manager: dg.ResourceParam[SparkParquetIOManager],
    clv_features: DataFrame,
    clv_predictions: DataFrame,
) -> DataFrame:
    """Population stability index of each behavioural feature and of predicted CLV, and the shift of mean
    predicted CLV, against the served model's training data. The ``model_drift`` sensor reads these figures
    and requests a retrain when one crosses its threshold (rules: ``clv_assets/drift.py``)."""
    import datetime as dt

    from clv_assets import predictive

    spark = clv_features.sparkSession
    try:
        reference = predictive.read_json(spark, f"{artifact_store(io_manager).for_reading(spark)}/{DRIFT_REFERENCE}")
    except AnalysisException as exc:
        raise FileNotFoundError("No drift reference beside the served model: re-materialize clv_model.") from exc
    rows = drift.compare(reference["features"], clv_features)
    if reference.get(drift.PREDICTION):
        rows += drift.compare({drift.PREDICTION: reference[drift.PREDICTION]}, clv_predictions)
    thresholds = drift.DriftThresholds.from_env()
    drifted, reasons = drift.verdict(rows, thresholds)
    figures = drift.summary(rows)
    as_of_row = clv_features.select("cutoff_date").first()
    as_of = as_of_row[0] if as_of_row else None
    context.add_output_metadata({
        **{k: (dg.MetadataValue.float(float(v)) if isinstance(v, float) else (v or "n/a")) for k, v in figures.items()},
        "drifted": drifted,
        "reasons": "; ".join(reasons) or "none",
        "model_version": reference["model_version"],
        "reference_as_of": reference["as_of_date"],
        "as_of_date": as_of.isoformat() if as_of else "n/a",
        "threshold_mean_shift": thresholds.mean_shift,
        "threshold_max_psi": thresholds.max_psi,
    })
    if drifted:
        context.log.warning(f"Drift against model {reference['model_version']}: {'; '.join(reasons)}")
    records = [(r["measure"], float(r["psi"]), r["reference_mean"], r["current_mean"], r["relative_mean_shift"],
                reference["model_version"], dt.date.fromisoformat(reference["as_of_date"]), as_of) for r in rows]
    return spark.createDataFrame(records, DRIFT_SCHEMA)
