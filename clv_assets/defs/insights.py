"""RFM-integrated CLV insights per customer, and the business summary built on them."""

import base64

import dagster as dg
from pydantic import Field
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clv_assets import insights
from clv_assets.automation import refresh_once_present

_ALL_TRANSACTIONS = {"transactions": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())}


class ClvInsightsConfig(dg.Config):
    tier_basis: str = Field(default="predicted_clv", description="Value the tiers rank on: predicted_clv, historical_clv or total_clv.")
    tier_quantiles: list[float] = Field(
        default=[0.9, 0.7, 0.4], description="Quantiles where Platinum, Gold and Silver start (Platinum = top 10% by default)."
    )
    tier_thresholds: list[float] | None = Field(
        default=None, description="Fixed amounts where Platinum, Gold and Silver start (descending); replaces the quantiles."
    )
    churn_threshold: float = Field(default=0.5, description="Churn probability from which a customer counts as likely to churn.")
    segment_value_levels: dict[str, str] = Field(
        default={}, description="Value level (High, Medium, Low) of segments from your own RFM system, for the alignment."
    )

    def rules(self) -> insights.InsightRules:
        return insights.InsightRules(
            tier_basis=self.tier_basis,
            tier_quantiles=tuple(self.tier_quantiles),
            tier_thresholds=tuple(self.tier_thresholds) if self.tier_thresholds else None,
            churn_threshold=self.churn_threshold,
            segment_value_levels=dict(self.segment_value_levels),
        )


class ClvSummaryConfig(dg.Config):
    top_customers: int = Field(default=10, ge=1, description="How many top customers (by predicted CLV) to list.")


def _counts(df: DataFrame, column: str) -> dict:
    return {r[column]: r["count"] for r in df.groupBy(column).count().orderBy(F.desc("count"), column).collect()}


@dg.asset(
    ins=_ALL_TRANSACTIONS,
    group_name="insights",
    kinds={"spark", "parquet"},
    automation_condition=refresh_once_present("clv_predictions", "rfm_segments"),
)
def clv_insights(
    context: dg.AssetExecutionContext,
    config: ClvInsightsConfig,
    transactions: DataFrame,
    customer_metrics: DataFrame,
    historical_clv: DataFrame,
    clv_predictions: DataFrame,
    rfm_segments: DataFrame,
) -> DataFrame:
    """One row per customer joining historical CLV, predicted CLV and the RFM segment: the CLV tier
    (Platinum/Gold/Silver/Bronze), whether the tier agrees with the RFM segment, how urgent retention is
    (predicted CLV x churn risk), the recommended action, recency, acquisition channel and main category.
    Rules: ``clv_assets/insights.py``."""
    table = insights.customer_insights(
        historical_clv, customer_metrics, clv_predictions, rfm_segments, insights.primary_categories(transactions), config.rules()
    ).cache()
    tiers = table.groupBy("clv_tier").agg(F.count(F.lit(1)).alias("customers"), F.min(config.tier_basis).alias("from_value"))
    alignment = table.withColumn(
        "alignment", F.regexp_extract("clv_segment_alignment", r"^(Aligned|Mismatch: CLV (above|below)|Not assessed)", 1)
    )
    context.add_output_metadata({
        "customers": table.count(),
        "tier_basis": config.tier_basis,
        "tiers": dg.MetadataValue.json({r["clv_tier"]: {"customers": r["customers"], "from_value": round(float(r["from_value"]), 2)}
                                        for r in tiers.orderBy(F.desc("from_value")).collect()}),
        "alignment": dg.MetadataValue.json(_counts(alignment, "alignment")),
        "retention_priority": dg.MetadataValue.json(_counts(table, "retention_priority")),
        "recommended_actions": dg.MetadataValue.json(_counts(table, "recommended_action")),
    })
    return table


@dg.asset(
    ins=_ALL_TRANSACTIONS,
    group_name="insights",
    kinds={"spark", "parquet"},
    automation_condition=refresh_once_present("clv_insights"),
)
def clv_summary(
    context: dg.AssetExecutionContext, config: ClvSummaryConfig, transactions: DataFrame, historical_clv: DataFrame,
    clv_insights: DataFrame,
) -> DataFrame:
    """The business view: total customers, average historical and predicted CLV, total business value, the
    top customers, value by tier, acquisition channel and product category, revenue at risk (predicted CLV of
    customers likely to churn), and a CLV distribution chart. One long table: ``section``, ``name``, values."""
    margin_row = historical_clv.select("profit_margin").first()
    table = insights.summary_table(clv_insights, transactions, float(margin_row[0]) if margin_row else 0.0, config.top_customers)
    # A few dozen rows, but each costs a pass over every transaction: computed once, for the metadata and the output.
    table = table.cache()
    local = table.toPandas()
    basis_row = clv_insights.select("tier_basis").first()
    basis = basis_row[0] if basis_row else "predicted_clv"
    from clv_assets.predictive import to_pandas

    values = to_pandas(clv_insights.select(F.coalesce(basis, F.lit(0.0)).alias("v")))["v"].to_numpy()
    thresholds = {r["clv_tier"]: float(r["from_value"]) for r in clv_insights.filter(F.col(basis) > 0).groupBy("clv_tier")
                  .agg(F.min(basis).alias("from_value")).collect() if r["clv_tier"] != "Bronze"}
    total = local[local.section == "total"].iloc[0] if (local.section == "total").any() else None
    at_risk = local[local.section == "revenue_at_risk"].iloc[0]

    def section(name: str, columns=("name", "customers", "historical_clv", "predicted_clv", "share_of_predicted_clv")) -> str:
        return insights.markdown_table(local[local.section == name], list(columns))

    png = insights.clv_distribution_png(values, thresholds, basis)
    context.add_output_metadata({
        "total_customers": int(total["customers"]) if total is not None else 0,
        "avg_historical_clv": dg.MetadataValue.float(float(total["avg_historical_clv"] or 0.0)) if total is not None else 0.0,
        "avg_predicted_clv": dg.MetadataValue.float(float(total["avg_predicted_clv"] or 0.0)) if total is not None else 0.0,
        "total_business_value": dg.MetadataValue.float(float(total["total_value"])) if total is not None else 0.0,
        "revenue_at_risk": dg.MetadataValue.float(float(at_risk["predicted_clv"])),
        "customers_at_risk": int(at_risk["customers"]),
        "tiers": dg.MetadataValue.md(section("tier")),
        "by_acquisition_channel": dg.MetadataValue.md(section("acquisition_channel")),
        "by_category": dg.MetadataValue.md(section("category")),
        "top_customers": dg.MetadataValue.md(section("top_customer", ("rank", "name", "historical_clv", "predicted_clv"))),
        "clv_distribution": dg.MetadataValue.md(f"![CLV distribution](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"),
    })
    return table
