"""CLV insights per customer and the business summary (pure Spark functions, testable without Dagster).

One row per customer joins historical CLV, the predictions and the RFM segment, and adds:

- **clv_tier** (Platinum / Gold / Silver / Bronze) on ``tier_basis`` (default ``predicted_clv``; or
  ``historical_clv``, or ``total_clv`` = historical + predicted). By default a tier starts above a value
  quantile: Platinum above the 0.9 quantile (the top 10%), Gold above 0.7 (next 20%), Silver above 0.4
  (next 30%), Bronze the rest; quantiles as in ``numpy.quantile(method="inverted_cdf")``, ties share a tier.
  Configured amounts instead: a tier starts at (>=) its amount. A value <= 0 is always Bronze; a missing
  prediction counts as 0.
- **clv_segment_alignment**: each RFM segment implies a value level (High: Champions, Loyal, Cannot Lose
  Them; Medium: Potential Loyalists, Promising, Need Attention, At Risk; Low: New, About to Sleep,
  Hibernating, Lost), as does the tier (Platinum/Gold High, Silver Medium, Bronze Low). "Aligned" when they
  agree, else "Mismatch: CLV above its RFM segment (Gold tier, Hibernating)" or "... below ...". Segments
  supplied by another RFM system get a level through ``segment_value_levels``; without one they are "Not
  assessed".
- **retention_priority_score** = predicted CLV x churn probability: the expected value lost if nothing is
  done. **retention_priority** High when the score is above the 0.8 quantile of the positive scores (the
  top 20%), Medium above their median, else Low (score 0: Low).
- **recommended_action**: from the tier and whether the customer is likely to churn (churn probability >=
  ``churn_threshold``, default 0.5); see :func:`recommended_action`.
- **primary_category**: the category with the customer's largest purchase amount (ties: alphabetical).

The summary is a long table (``section``, ``name``, customers and value columns) with sections ``total``,
``tier``, ``acquisition_channel``, ``category``, ``revenue_at_risk`` and ``top_customer``. Value by
category: historical CLV = profit margin x the category's net revenue (refunds included) and predicted CLV
allocated to categories by each customer's share of purchases, so the categories add up to the totals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

TIERS = ["Platinum", "Gold", "Silver", "Bronze"]
TIER_BASES = ("predicted_clv", "historical_clv", "total_clv")
TIER_LEVEL = {"Platinum": "High", "Gold": "High", "Silver": "Medium", "Bronze": "Low"}
SEGMENT_LEVEL = {
    "Champions": "High", "Loyal": "High", "Cannot Lose Them": "High",
    "Potential Loyalists": "Medium", "Promising": "Medium", "Need Attention": "Medium", "At Risk": "Medium",
    "New": "Low", "About to Sleep": "Low", "Hibernating": "Low", "Lost": "Low",
}
LEVEL_RANK = {"Low": 1, "Medium": 2, "High": 3}
PRIORITY_LEVELS = ["High", "Medium", "Low"]
SECTIONS = ["total", "tier", "acquisition_channel", "category", "revenue_at_risk", "top_customer"]
UNKNOWN_CATEGORY = "unknown"

INSIGHT_COLUMNS = [
    "customer_id", "acquisition_channel", "primary_category", "recency_days", "num_orders", "net_revenue",
    "historical_clv", "predicted_revenue", "predicted_clv", "total_clv", "probability_alive", "churn_probability",
    "segment", "segment_source", "rfm_score", "clv_tier", "tier_basis", "clv_segment_alignment",
    "retention_priority_score", "retention_priority", "likely_to_churn", "recommended_action", "as_of_date",
]
SUMMARY_COLUMNS = ["section", "name", "rank", "customers", "historical_clv", "predicted_clv", "total_value",
                   "share_of_predicted_clv", "avg_historical_clv", "avg_predicted_clv"]


@dataclass(frozen=True)
class InsightRules:
    """How tiers, priorities and actions are assigned (defaults as in the module docstring)."""

    tier_basis: str = "predicted_clv"
    tier_quantiles: tuple[float, float, float] = (0.9, 0.7, 0.4)
    tier_thresholds: tuple[float, float, float] | None = None
    churn_threshold: float = 0.5
    priority_quantiles: tuple[float, float] = (0.8, 0.5)
    segment_value_levels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tier_basis not in TIER_BASES:
            raise ValueError(f"tier_basis must be one of {', '.join(TIER_BASES)}, got {self.tier_basis!r}")
        for name, values in (("tier_quantiles", self.tier_quantiles), ("tier_thresholds", self.tier_thresholds),
                             ("priority_quantiles", self.priority_quantiles)):
            if values is not None and any(a <= b for a, b in zip(values, values[1:])):
                raise ValueError(f"{name} must be strictly descending, got {list(values)}")
        if not all(0 < q < 1 for q in (*self.tier_quantiles, *self.priority_quantiles)):
            raise ValueError("quantiles must lie strictly between 0 and 1")
        if not 0 < self.churn_threshold < 1:
            raise ValueError(f"churn_threshold must lie strictly between 0 and 1, got {self.churn_threshold}")
        bad = {k: v for k, v in self.segment_value_levels.items() if v not in LEVEL_RANK}
        if bad:
            raise ValueError(f"segment_value_levels must map segments to High, Medium or Low, got {bad}")


# ------------------------------------------------------------------------------------------------ per customer
def primary_categories(transactions: DataFrame) -> DataFrame:
    """``customer_id, primary_category``: the category with the customer's largest purchase amount."""
    # One shuffle by customer serves the sums per category and the window per customer (else: two shuffles).
    spend = (
        transactions.filter(F.col("amount") > 0).repartition("customer_id")
        .groupBy("customer_id", F.coalesce("category", F.lit(UNKNOWN_CATEGORY)).alias("category"))
        .agg(F.sum("amount").alias("spend"))
    )
    first = Window.partitionBy("customer_id").orderBy(F.desc("spend"), "category")
    return spend.withColumn("_n", F.row_number().over(first)).filter("_n = 1").select(
        "customer_id", F.col("category").alias("primary_category")
    )


def quantile_thresholds(df: DataFrame, column: str, quantiles: tuple[float, ...], where: F.Column | None = None) -> list[float]:
    """The values at the given quantiles of ``column`` (exact up to 1 in a million ranks; 0 when empty)."""
    rows = df if where is None else df.filter(where)
    values = rows.agg(F.percentile_approx(column, list(quantiles), 1_000_000)).first()[0]
    return [float(v) for v in values] if values else [0.0] * len(quantiles)


def _tier(value: F.Column, thresholds: list[float], strict: bool) -> F.Column:
    tier = F.when(value <= 0, "Bronze")
    for name, threshold in zip(TIERS, thresholds):
        tier = tier.when(value > F.lit(threshold) if strict else value >= F.lit(threshold), name)
    return tier.otherwise("Bronze")


def _level(mapping: dict, column: str) -> F.Column:
    from itertools import chain

    return F.create_map(*chain.from_iterable((F.lit(k), F.lit(v)) for k, v in mapping.items()))[F.col(column)]


def _alignment() -> F.Column:
    tier_level, segment_level = F.col("_tier_level"), F.col("_segment_level")
    rank = _level(LEVEL_RANK, "_tier_level") - _level(LEVEL_RANK, "_segment_level")
    which = F.concat(F.lit(" ("), F.col("clv_tier"), F.lit(" tier, "), F.col("segment"), F.lit(")"))
    return (
        F.when(F.col("segment").isNull(), F.lit("Not assessed: no RFM segment (no purchase)"))
        .when(segment_level.isNull(), F.concat(F.lit("Not assessed: no value level for segment '"), F.col("segment"), F.lit("'")))
        .when(tier_level == segment_level, F.lit("Aligned"))
        .when(rank > 0, F.concat(F.lit("Mismatch: CLV above its RFM segment"), which))
        .otherwise(F.concat(F.lit("Mismatch: CLV below its RFM segment"), which))
    )


def recommended_action() -> F.Column:
    """The next best action for a customer, from tier, churn risk and segment (first rule that applies)."""
    tier, churn, segment = F.col("clv_tier"), F.col("likely_to_churn"), F.col("segment")
    new = segment.isin("New", "Promising", "Potential Loyalists")
    return (
        F.when(F.col("num_orders") == 0, "No purchase yet (refunds only): review the refunds")
        .when(churn & tier.isin("Platinum", "Gold"), "Win back now: personal outreach and a retention offer")
        .when(churn & (tier == "Silver"), "Reactivate: targeted win-back campaign with an incentive")
        .when(churn, "Low-cost automated win-back; avoid deep discounts")
        .when(tier == "Platinum", "Retain and reward: VIP programme, early access, dedicated service")
        .when(tier == "Gold", "Grow: upsell and cross-sell premium products")
        .when((tier == "Silver") & new, "Nurture: onboarding journey and a second-purchase incentive")
        .when(tier == "Silver", "Develop: personalised recommendations to raise purchase frequency")
        .when(new, "Onboard: welcome series and a second-purchase incentive")
        .otherwise("Maintain at low cost: automated newsletters")
    )


def customer_insights(historical_clv: DataFrame, customer_metrics: DataFrame, predictions: DataFrame,
                      rfm_segments: DataFrame, categories: DataFrame, rules: InsightRules = InsightRules()) -> DataFrame:
    """One row per customer of ``historical_clv`` with tier, alignment, retention priority and action."""
    base = (
        historical_clv.select("customer_id", "acquisition_channel", "num_orders", "net_revenue", "historical_clv")
        .join(customer_metrics.select("customer_id", "recency_days", "as_of_date"), "customer_id", "left")
        .join(predictions.select("customer_id", "predicted_revenue", "predicted_clv", "probability_alive", "churn_probability"),
              "customer_id", "left")
        .join(rfm_segments.select("customer_id", "segment", "segment_source", "rfm_score"), "customer_id", "left")
        .join(categories, "customer_id", "left")
        .withColumn("primary_category", F.coalesce("primary_category", F.lit(UNKNOWN_CATEGORY)))
        .withColumn("total_clv", F.col("historical_clv") + F.coalesce("predicted_clv", F.lit(0.0)))
        .withColumn("_basis", F.coalesce(rules.tier_basis, F.lit(0.0)))
    ).cache()
    thresholds = list(rules.tier_thresholds) if rules.tier_thresholds else quantile_thresholds(base, "_basis", rules.tier_quantiles)
    score = F.coalesce(F.col("predicted_clv") * F.col("churn_probability"), F.lit(0.0))
    scored = base.withColumn("retention_priority_score", score)
    high, medium = quantile_thresholds(scored, "retention_priority_score", rules.priority_quantiles, where=score > 0)
    segment_levels = {**SEGMENT_LEVEL, **rules.segment_value_levels}
    out = (
        scored.withColumn("clv_tier", _tier(F.col("_basis"), thresholds, strict=not rules.tier_thresholds))
        .withColumn("tier_basis", F.lit(rules.tier_basis))
        .withColumn("_tier_level", _level(TIER_LEVEL, "clv_tier"))
        .withColumn("_segment_level", _level(segment_levels, "segment"))
        .withColumn("clv_segment_alignment", _alignment())
        .withColumn("retention_priority", F.when(score <= 0, "Low").when(score > F.lit(high), "High")
                    .when(score > F.lit(medium), "Medium").otherwise("Low"))
        .withColumn("likely_to_churn", F.coalesce(F.col("churn_probability") >= F.lit(rules.churn_threshold), F.lit(False)))
        .withColumn("recommended_action", recommended_action())
        .select(*INSIGHT_COLUMNS)
    )
    return out


# ------------------------------------------------------------------------------------------------- summary
def _value_aggregates() -> list[F.Column]:
    return [
        F.count(F.lit(1)).cast("long").alias("customers"),
        F.sum("historical_clv").alias("historical_clv"),
        F.sum(F.coalesce("predicted_clv", F.lit(0.0))).alias("predicted_clv"),
    ]


def category_values(transactions: DataFrame, insights: DataFrame, profit_margin: float) -> DataFrame:
    """Per category: customers who bought in it, historical CLV (margin x the category's net revenue) and the
    predicted CLV allocated by each customer's share of purchase amount (so categories add up to the total)."""
    category = F.coalesce("category", F.lit(UNKNOWN_CATEGORY)).alias("name")
    # One shuffle by customer serves the sums per category, the window per customer and the join.
    per_customer = transactions.repartition("customer_id").groupBy("customer_id", category).agg(
        F.sum("amount").alias("net"), F.sum(F.when(F.col("amount") > 0, F.col("amount")).otherwise(0.0)).alias("spend"),
    )
    customer_spend = F.sum("spend").over(Window.partitionBy("customer_id"))
    share = F.when(customer_spend > 0, F.col("spend") / customer_spend)
    allocated = per_customer.join(insights.select("customer_id", "predicted_clv"), "customer_id", "left").withColumn(
        "allocated", F.coalesce(share * F.col("predicted_clv"), F.lit(0.0))
    )
    return allocated.groupBy("name").agg(
        F.count_if(F.col("spend") > 0).cast("long").alias("customers"),
        (F.sum("net") * F.lit(float(profit_margin))).alias("historical_clv"),
        F.sum("allocated").alias("predicted_clv"),
    )


def summary_table(insights: DataFrame, transactions: DataFrame, profit_margin: float, top_n: int = 10) -> DataFrame:
    """The business summary as one long table (see the module docstring)."""
    total_predicted = insights.agg(F.sum(F.coalesce("predicted_clv", F.lit(0.0)))).first()[0] or 0.0
    top = (insights.orderBy(F.desc_nulls_last("predicted_clv"), "customer_id").limit(top_n)
           .select(F.lit("top_customer").alias("section"), F.col("customer_id").alias("name"), F.lit(1).cast("long").alias("customers"), "historical_clv",
                   F.coalesce("predicted_clv", F.lit(0.0)).alias("predicted_clv")))
    parts = [
        insights.agg(*_value_aggregates()).select(F.lit("total").alias("section"), F.lit("all customers").alias("name"), "*"),
        insights.groupBy(F.col("clv_tier").alias("name")).agg(*_value_aggregates()).select(F.lit("tier").alias("section"), "*"),
        insights.groupBy(F.col("acquisition_channel").alias("name")).agg(*_value_aggregates())
        .select(F.lit("acquisition_channel").alias("section"), "*"),
        category_values(transactions, insights, profit_margin).select(F.lit("category").alias("section"), "*"),
        insights.filter("likely_to_churn").agg(*_value_aggregates())
        .select(F.lit("revenue_at_risk").alias("section"), F.lit("likely to churn").alias("name"), "*"),
        top,
    ]
    table = parts[0]
    for part in parts[1:]:
        table = table.unionByName(part)
    order = F.create_map(*[x for i, s in enumerate(SECTIONS) for x in (F.lit(s), F.lit(i))])
    rank = F.row_number().over(Window.partitionBy("section").orderBy(F.desc("predicted_clv"), "name"))
    share = F.col("predicted_clv") / F.lit(total_predicted) if total_predicted else F.lit(None).cast("double")
    return (
        table.withColumn("historical_clv", F.coalesce("historical_clv", F.lit(0.0)))
        .withColumn("predicted_clv", F.coalesce("predicted_clv", F.lit(0.0)))
        .withColumn("rank", rank.cast("int"))
        .withColumn("total_value", F.col("historical_clv") + F.col("predicted_clv"))
        .withColumn("share_of_predicted_clv", share)
        .withColumn("avg_historical_clv", F.when(F.col("customers") > 0, F.col("historical_clv") / F.col("customers")))
        .withColumn("avg_predicted_clv", F.when(F.col("customers") > 0, F.col("predicted_clv") / F.col("customers")))
        .withColumn("_order", order[F.col("section")])
        .orderBy("_order", "rank")
        .select(*SUMMARY_COLUMNS)
    )


def clv_distribution_png(values, thresholds: dict[str, float], basis: str) -> bytes:
    """Histogram of customer CLV (tier thresholds marked; tail beyond the 99th percentile in the last bar)
    and the Pareto curve (share of total CLV held by the top x% of customers)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    values = np.asarray(values, dtype=float)
    fig, (hist, pareto) = plt.subplots(1, 2, figsize=(11, 4), dpi=80)
    try:
        cap = float(np.quantile(values, 0.99)) if values.size else 1.0
        cap = cap if cap > 0 else max(float(values.max(initial=1.0)), 1.0)
        hist.hist(np.clip(values, None, cap), bins=40, color="#4C72B0")
        for name, threshold in thresholds.items():
            if 0 < threshold <= cap:
                hist.axvline(threshold, color="#C44E52", linestyle="--", linewidth=1)
                hist.text(threshold, hist.get_ylim()[1] * 0.92, f" {name}", color="#C44E52", fontsize=8)
        hist.set_yscale("log")
        hist.set_xlabel(f"{basis.replace('_', ' ')} per customer (last bar: top 1%)")
        hist.set_ylabel("customers (log scale)")
        hist.set_title("CLV distribution and tier thresholds")
        ordered = np.sort(np.clip(values, 0, None))[::-1]
        total = ordered.sum()
        if total > 0:
            x = np.arange(1, ordered.size + 1) / ordered.size
            y = np.cumsum(ordered) / total
            pareto.plot(x * 100, y * 100, color="#4C72B0")
            top20 = float(y[max(int(np.ceil(0.2 * ordered.size)) - 1, 0)])
            pareto.axvline(20, color="grey", linestyle=":", linewidth=1)
            pareto.set_title(f"Top 20% of customers hold {top20:.0%} of {basis.replace('_', ' ')}")
        pareto.set_xlabel("customers, highest value first (%)")
        pareto.set_ylabel(f"cumulative share of {basis.replace('_', ' ')} (%)")
        pareto.grid(alpha=0.3)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)


def markdown_table(rows, columns: list[str]) -> str:
    """A pandas slice of the summary as a markdown table (amounts with thousands separators, shares as %)."""
    def cell(column: str, value) -> str:
        if value is None or value != value:  # None or NaN
            return "-"
        if column.startswith("share"):
            return f"{value:.1%}"
        if isinstance(value, float):
            return f"{value:,.2f}"
        return str(value)

    lines = ["| " + " | ".join(c.replace("_", " ") for c in columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(c, r[c]) for c in columns) + " |" for _, r in rows.iterrows()]
    return "\n".join(lines) if len(rows) else "No rows."
