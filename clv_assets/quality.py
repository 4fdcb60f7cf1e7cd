"""Data-quality rules for every stored table, run as Dagster asset checks.

Each table's rules are declared once (:data:`TABLE_RULES`) and give both a ``pandera.pyspark`` schema
(the verdict, with pandera's own error report) and Spark expressions that count the failing rows and pull a
sample of them, so a check result tells a user how many rows broke which rule and shows some.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

SAMPLE_ROWS = 5


@dataclass(frozen=True)
class Rule:
    """What one column must satisfy."""

    column: str
    dtype: T.DataType
    nullable: bool = False
    ge: float | None = None
    le: float | None = None
    isin: tuple[str, ...] | None = None

    def violations(self) -> dict[str, F.Column]:
        """Rule name -> a Spark condition true for each failing row."""
        col = F.col(self.column)
        out: dict[str, F.Column] = {}
        if not self.nullable:
            out[f"{self.column}_not_null"] = col.isNull()
        if self.ge is not None:
            out[f"{self.column}_>=_{self.ge:g}"] = col < F.lit(self.ge)
        if self.le is not None:
            out[f"{self.column}_<=_{self.le:g}"] = col > F.lit(self.le)
        if self.isin is not None:
            out[f"{self.column}_in_allowed_values"] = ~col.isin(list(self.isin))
        return out


def _r(column: str, dtype: T.DataType, **kw: Any) -> Rule:
    return Rule(column, dtype, **kw)


S, D, DT, L, I, B = T.StringType(), T.DoubleType(), T.DateType(), T.LongType(), T.IntegerType(), T.BooleanType()
_COHORT_RULES = [
    _r("cohort_period", S), _r("cohort_start", DT), _r("cohort_label", S), _r("cohort_size", L, ge=1),
    _r("total_revenue", D), _r("avg_clv", D, nullable=True), _r("retention_rate", D, nullable=True, ge=0, le=1),
    _r("churn_rate", D, nullable=True, ge=0, le=1), _r("repeat_rate", D, nullable=True, ge=0, le=1),
    _r("avg_orders_per_customer", D, ge=0), _r("avg_order_value", D, nullable=True, ge=0), _r("months_tracked", I, ge=1),
    _r("period_number", I, ge=0), _r("period_start", DT), _r("active_customers", L, ge=0),
    _r("retention", D, ge=0, le=1), _r("revenue", D), _r("cumulative_revenue_per_customer", D),
]

TABLE_RULES: dict[str, list[Rule]] = {
    "transactions": [
        _r("transaction_id", S), _r("customer_id", S), _r("transaction_date", DT), _r("amount", D),
        _r("category", S, nullable=True), _r("channel", S, nullable=True), _r("transaction_month", DT),
        _r("source_file", S, nullable=True),
    ],
    "quarantined_transactions": [
        _r("source_file", S), _r("source_row", L, ge=1), _r("reject_reason", S, isin=None),
        _r("raw_customer_id", S, nullable=True), _r("raw_transaction_date", S, nullable=True),
        _r("raw_amount", S, nullable=True), _r("raw_transaction_id", S, nullable=True),
    ],
    "customer_metrics": [
        _r("customer_id", S), _r("num_orders", L, ge=0), _r("num_purchase_days", L, ge=0),
        _r("total_revenue", D, ge=0), _r("refund_amount", D, ge=0), _r("net_revenue", D),
        _r("average_order_value", D, nullable=True, ge=0), _r("lifespan_days", I, nullable=True, ge=0),
        _r("recency_days", I, nullable=True, ge=0), _r("tenure_days", I, nullable=True, ge=0),
        _r("purchase_frequency_per_month", D, nullable=True, ge=0),
        _r("mean_days_between_purchases", D, nullable=True, ge=1), _r("std_days_between_purchases", D, nullable=True, ge=0),
        _r("acquisition_channel", S), _r("as_of_date", DT),
    ],
    "historical_clv": [
        _r("customer_id", S), _r("net_revenue", D), _r("profit_margin", D, ge=0, le=1), _r("historical_clv", D),
    ],
    "customer_monthly_activity": [
        _r("customer_id", S), _r("activity_month", DT), _r("first_purchase_month", DT, nullable=True), _r("orders", L, ge=0),
        _r("gross_revenue", D, ge=0), _r("net_revenue", D), _r("as_of_date", DT),
    ],
    "clv_predictions": [
        _r("customer_id", S), _r("predicted_revenue", D, ge=0), _r("predicted_clv", D, ge=0),
        _r("prediction_lower", D, nullable=True, ge=0), _r("prediction_upper", D, nullable=True, ge=0),
        _r("clv_confidence", D, nullable=True, ge=0, le=1), _r("probability_alive", D, ge=0, le=1),
        _r("churn_probability", D, ge=0, le=1), _r("expected_purchases", D, ge=0), _r("model_name", S),
        _r("horizon_months", I, ge=1), _r("as_of_date", DT),
    ],
    "clv_features": [
        _r("customer_id", S), _r("cutoff_date", DT), _r("first_purchase_date", DT), _r("frequency", D, ge=0),
        _r("recency", D, ge=0), _r("T", D, ge=0), _r("monetary", D), _r("n_purchase_days", D, ge=1),
        _r("n_orders", D, ge=1), _r("gross_revenue", D, ge=0), _r("net_revenue", D), _r("refund_amount", D, ge=0),
    ],
    "clv_model": [
        _r("model", S), _r("rmse", D, nullable=True, ge=0), _r("mae", D, nullable=True, ge=0),
        _r("normalized_gini", D, nullable=True, ge=-1, le=1), _r("top_decile_capture", D, nullable=True),
        _r("coverage", D, nullable=True, ge=0, le=1), _r("is_champion", B), _r("is_served", B), _r("mode", S),
        _r("horizon_months", L, ge=1),
    ],
    "monthly_cohorts": _COHORT_RULES,
    "quarterly_cohorts": _COHORT_RULES,
    "yearly_cohorts": _COHORT_RULES,
    "cohort_retention": [
        _r("cohort_start", DT), _r("cohort_label", S), _r("cohort_size", L, ge=1), _r("avg_clv", D, nullable=True),
        _r("retention_rate", D, nullable=True, ge=0, le=1), _r("period_0", D, nullable=True, ge=0, le=1),
    ],
    "clv_drift": [
        _r("measure", S), _r("psi", D, ge=0), _r("reference_mean", D, nullable=True), _r("current_mean", D, nullable=True),
        _r("relative_mean_shift", D, nullable=True), _r("model_version", S),
    ],
    "clv_insights": [
        _r("customer_id", S), _r("acquisition_channel", S), _r("primary_category", S), _r("recency_days", I, nullable=True, ge=0),
        _r("num_orders", L, ge=0), _r("historical_clv", D), _r("predicted_clv", D, nullable=True, ge=0), _r("total_clv", D),
        _r("churn_probability", D, nullable=True, ge=0, le=1), _r("segment", S, nullable=True),
        _r("clv_tier", S, isin=("Platinum", "Gold", "Silver", "Bronze")), _r("clv_segment_alignment", S),
        _r("retention_priority_score", D, ge=0), _r("retention_priority", S, isin=("High", "Medium", "Low")),
        _r("likely_to_churn", B), _r("recommended_action", S),
    ],
    "clv_summary": [
        _r("section", S, isin=("total", "tier", "acquisition_channel", "category", "revenue_at_risk", "top_customer")),
        _r("name", S), _r("rank", I, ge=1), _r("customers", L, ge=0), _r("historical_clv", D), _r("predicted_clv", D, ge=0),
        _r("total_value", D), _r("share_of_predicted_clv", D, nullable=True, ge=0, le=1 + 1e-9),
    ],
    "rfm_segments": [
        # Refund-only customers are scored too (worst R): no recency, zero purchases.
        _r("customer_id", S), _r("recency_days", I, nullable=True, ge=0), _r("frequency", L, ge=0), _r("monetary", D),
        _r("r_score", I, ge=1, le=5), _r("f_score", I, ge=1, le=5), _r("m_score", I, ge=1, le=5), _r("rfm_score", S),
        _r("computed_segment", S), _r("segment", S, nullable=True), _r("segment_source", S, isin=("computed", "supplied")),
    ],
}


def _with_reasons() -> None:
    from clv_assets.ingest import REJECT_REASONS

    rules = TABLE_RULES["quarantined_transactions"]
    TABLE_RULES["quarantined_transactions"] = [
        Rule(r.column, r.dtype, r.nullable, r.ge, r.le, tuple(REJECT_REASONS)) if r.column == "reject_reason" else r for r in rules
    ]


_with_reasons()


def pandera_schema(table: str, nulls_counted: bool = False):
    """The ``pandera.pyspark`` schema of a table (imported lazily: loading definitions stays light).

    ``nulls_counted``: every column nullable, for a table whose nulls :func:`check_table` has already counted (none
    where the rules forbid them). pandera checks a non-nullable column with a Spark job of its own, even when it
    validates the schema only: 119 columns per graph run, each job under 0.1 s on a warm session, to learn nothing new.
    """
    import pandera.pyspark as pa

    columns = {}
    for rule in TABLE_RULES[table]:
        checks = []
        if rule.ge is not None:
            checks.append(pa.Check.ge(rule.ge))
        if rule.le is not None:
            checks.append(pa.Check.le(rule.le))
        if rule.isin is not None:
            checks.append(pa.Check.isin(list(rule.isin)))
        columns[rule.column] = pa.Column(rule.dtype, checks=checks, nullable=rule.nullable or nulls_counted)
    return pa.DataFrameSchema(columns, name=table)


@dataclass
class QualityReport:
    table: str
    rows: int
    failing: dict[str, int] = field(default_factory=dict)
    pandera_errors: dict[str, Any] = field(default_factory=dict)
    sample: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.pandera_errors and not any(self.failing.values())

    def metadata(self) -> dict[str, Any]:
        return {
            "rows_checked": self.rows,
            "failing_rows_by_rule": dg.MetadataValue.json({k: v for k, v in self.failing.items() if v}),
            "pandera_errors": dg.MetadataValue.json(self.pandera_errors),
            "failing_rows_sample": dg.MetadataValue.json(self.sample),
        }


def check_table(df: DataFrame, table: str, unique_key: str | None = None) -> QualityReport:
    """Validate a table against its schema and count failing rows per rule (and duplicate keys).

    The rule counts take one pass over the table. pandera then checks the schema (columns, types); its data
    checks (the same rules, not-null included, one pass each) run only when the counts found failing rows, for its
    error report: on clean data they could only agree with the counts.
    """
    from pandera.config import ValidationDepth, config_context

    conditions = {name: cond for rule in TABLE_RULES[table] if rule.column in df.columns for name, cond in rule.violations().items()}
    aggregates = [F.count(F.lit(1)).alias("__rows")] + [F.count_if(cond).alias(name) for name, cond in conditions.items()]
    counts = df.agg(*aggregates).first().asDict()
    rows = counts.pop("__rows")
    failing = {k: int(v) for k, v in counts.items()}
    bad = df.filter(F.greatest(*[c.cast("int") for c in conditions.values()]) > 0) if conditions else df.limit(0)
    if unique_key:
        dups = duplicate_keys(df, unique_key)
        failing[f"duplicate_{unique_key}"] = int(dups.agg(F.coalesce(F.sum("count"), F.lit(0))).first()[0])
        if failing[f"duplicate_{unique_key}"]:
            bad = bad.unionByName(df.join(dups.select(unique_key), unique_key).select(*df.columns))
    clean = not any(failing.values())
    with config_context(validation_depth=ValidationDepth.SCHEMA_ONLY if clean else ValidationDepth.SCHEMA_AND_DATA):
        errors = dict(pandera_schema(table, nulls_counted=clean).validate(df).pandera.errors)
    report = QualityReport(table, rows, failing, {k: {kk: [dict(e) for e in vv] for kk, vv in v.items()} for k, v in errors.items()})
    if not report.passed:
        report.sample = [{k: (str(v) if v is not None else None) for k, v in r.asDict().items()} for r in bad.limit(SAMPLE_ROWS).collect()]
    return report


def duplicate_keys(df: DataFrame, key: str) -> DataFrame:
    """``key, count`` of the key values found on more than one row.

    Keys are first compared through a 64-bit hash (a shuffle of 8 bytes per row, whatever the key); only the
    rows whose hash repeats, usually none, are then grouped by the key itself.
    """
    hashed = F.xxhash64(F.col(key))
    repeated = df.groupBy(hashed.alias("__hash")).count().filter("count > 1").select("__hash").localCheckpoint()
    n_repeated = repeated.count()
    if n_repeated == 0:
        return df.groupBy(key).count().limit(0)
    suspects = df.withColumn("__hash", hashed).join(F.broadcast(repeated) if n_repeated <= 1_000_000 else repeated, "__hash", "left_semi")
    return suspects.groupBy(key).count().filter("count > 1")


def check_result(report: QualityReport, check_name: str, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
                 asset_key: str | None = None) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=check_name, passed=report.passed, severity=severity, metadata=report.metadata(),
        **({"asset_key": asset_key} if asset_key else {}),
    )


def schema_check_result(table: DataFrame, asset: str, unique_key: str | None = None) -> dg.AssetCheckResult:
    """The result of an asset's schema check: passed or not, with failing counts per rule and sample rows."""
    return check_result(check_table(table, asset, unique_key), f"{asset}_schema")
