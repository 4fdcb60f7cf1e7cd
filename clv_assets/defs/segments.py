"""RFM scores and named customer segments (computed, or supplied by an existing RFM system)."""

import os

import dagster as dg
from pydantic import Field
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clv_assets import rfm
from clv_assets.automation import REFRESH_AFTER_UPSTREAM


class RfmConfig(dg.Config):
    segments_path: str | None = Field(
        default=None,
        description=(
            "Segments from an existing RFM system: CSV or parquet with customer_id and segment columns; used "
            f"instead of the computed segments. Default: the {rfm.SEGMENTS_PATH_ENV} environment variable (unset: compute)."
        ),
    )
    strict: bool = Field(
        default=False,
        description="Fail when the supplied file has unknown customers or blank segments or misses customers (default: report them).",
    )
    recency_thresholds_days: list[float] | None = Field(
        default=None, description="4 ascending recency cut points in days (R=5 up to the first); default quintiles."
    )
    frequency_thresholds: list[float] | None = Field(
        default=None, description="4 ascending order-count cut points (F = 1 + cut points reached); default quintiles."
    )
    monetary_thresholds: list[float] | None = Field(
        default=None, description="4 ascending net-revenue cut points (M = 1 + cut points reached); default quintiles."
    )


@dg.asset(group_name="segments", kinds={"spark", "parquet"}, automation_condition=REFRESH_AFTER_UPSTREAM)
def rfm_segments(context: dg.AssetExecutionContext, config: RfmConfig, customer_metrics: DataFrame) -> DataFrame:
    """Per customer: recency, frequency and monetary value, their 1-5 scores (quintiles, ties never split; or
    configured thresholds) and the named segment (Champions, Loyal, ..., Lost) from the R and F scores - or the
    segment supplied by an existing RFM system (``segment_source`` says which). Rules: ``clv_assets/rfm.py``."""
    scores = rfm.rfm_scores(
        customer_metrics, config.recency_thresholds_days, config.frequency_thresholds, config.monetary_thresholds
    )
    path = config.segments_path or os.environ.get(rfm.SEGMENTS_PATH_ENV) or None
    metadata: dict = {"scoring": "thresholds" if any(
        (config.recency_thresholds_days, config.frequency_thresholds, config.monetary_thresholds)) else "quintiles"}
    if path:
        scores, report = rfm.apply_supplied_segments(
            scores, rfm.read_supplied_segments(customer_metrics.sparkSession, path), path, strict=config.strict
        )
        metadata["supplied_segments"] = dg.MetadataValue.json(report.as_dict())
        metadata["supplied_segments_path"] = dg.MetadataValue.path(path)
        for key in ("unknown_customers", "rows_without_segment", "customers_without_supplied_segment"):
            if getattr(report, key):
                context.log.warning(f"{path}: {key.replace('_', ' ')}: {getattr(report, key)} (e.g. {report.examples.get(key, [])})")
    counts = scores.groupBy("segment", "segment_source").count().collect()
    by_segment: dict = {}
    for r in counts:
        by_segment[r["segment"]] = by_segment.get(r["segment"], 0) + r["count"]
    metadata["segment_counts"] = dg.MetadataValue.json(dict(sorted(by_segment.items(), key=lambda kv: (-kv[1], str(kv[0])))))
    metadata["segment_source_counts"] = dg.MetadataValue.json(
        {src: sum(r["count"] for r in counts if r["segment_source"] == src) for src in ("computed", "supplied")}
    )
    cells = scores.groupBy("r_score", "f_score").count().orderBy(F.desc("r_score"), "f_score").collect()
    metadata["customers_by_r_f_score"] = dg.MetadataValue.json({f"R{r['r_score']}F{r['f_score']}": r["count"] for r in cells})
    context.add_output_metadata(metadata)
    return scores
