"""Acquisition cohorts: size, value and the retention and revenue curves (pure Spark functions).

Definitions, stated once:

- A customer's *cohort* is the calendar period (month, quarter or year) of their first purchase
  (``customer_metrics.first_purchase_date``). Customers whose only transactions are refunds have no first
  purchase and belong to no cohort.
- *Period number* ``k`` counts whole periods since the cohort's period: 0 is the acquisition period itself,
  1 the next one, ... up to the period holding the as-of date (``customer_metrics.as_of_date``; later
  transactions are ignored, as in ``customer_metrics``). Every period in that range has a row, also when nobody
  bought in it. A refund dated before its customer's first purchase counts in period 0.
- A customer is *active* in a period with at least one purchase (positive amount) in it. ``retention`` of
  period ``k`` = active customers / cohort size (1.0 in period 0 by construction). ``revenue`` of a period is
  net (purchases minus refunds dated in it); ``cumulative_revenue_per_customer`` divides the running total by
  the cohort size, so its last value is the cohort's ``total_revenue / cohort_size``.
- A period is *complete* when the as-of date is on or after its last day.
- ``retention_rate`` (cohort level) = the ``retention`` of the most recent complete period, provided that
  period comes after the acquisition period (``retention_period_number`` >= 1) - i.e. the share of the cohort
  who bought in the last full period observed. It is null for a cohort too young to have one.
  ``churn_rate`` = 1 - ``retention_rate``. ``repeat_rate`` = share of the cohort with any purchase after their
  acquisition period (any ``k`` >= 1, also the incomplete last period).
- ``total_revenue`` = net revenue of the cohort's customers; ``avg_clv`` = mean ``historical_clv``;
  ``avg_orders_per_customer`` = orders / cohort size; ``avg_order_value`` = gross purchase revenue / orders
  (order-weighted); ``months_tracked`` = calendar months from the cohort's first month through the as-of
  month (inclusive).

Table shape: one row per (cohort, period number). The cohort-level figures are repeated on each of a
cohort's rows; ``period_number = 0`` gives exactly one row per cohort (the cohort summary).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from clv_assets.metrics import money_sum

#: Months per cohort period, and Spark's ``trunc`` unit for it.
PERIOD_MONTHS = {"monthly": 1, "quarterly": 3, "yearly": 12}
_TRUNC_UNIT = {"monthly": "month", "quarterly": "quarter", "yearly": "year"}

COHORT_COLUMNS = [
    "cohort_period", "cohort_start", "cohort_label", "cohort_size", "total_revenue", "avg_clv", "retention_rate",
    "churn_rate", "retention_period_number", "repeat_rate", "avg_orders_per_customer", "avg_order_value",
    "months_tracked", "as_of_date",
    "period_number", "period_start", "period_complete", "active_customers", "retention", "revenue",
    "cumulative_revenue", "cumulative_revenue_per_customer",
]
SUMMARY_COLUMNS = COHORT_COLUMNS[: COHORT_COLUMNS.index("period_number")]


def _check_period(period: str) -> int:
    if period not in PERIOD_MONTHS:
        raise ValueError(f"cohort period must be one of {sorted(PERIOD_MONTHS)}, got {period!r}")
    return PERIOD_MONTHS[period]


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def period_start(day: dt.date, period: str) -> dt.date:
    """First day of the calendar period holding ``day``."""
    months = _check_period(period)
    return dt.date(day.year, day.month - (day.month - 1) % months, 1)


def last_complete_period_start(as_of: dt.date, period: str) -> dt.date:
    """Start of the most recent period whose last day is on or before ``as_of``."""
    months = _check_period(period)
    start = period_start(as_of, period)
    if as_of == _add_months(start, months) - dt.timedelta(days=1):
        return start
    return _add_months(start, -months)


def cohort_label(col: F.Column | str, period: str) -> F.Column:
    """``2024-03`` (monthly), ``2024-Q1`` (quarterly), ``2024`` (yearly) for a period's start date."""
    col = F.col(col) if isinstance(col, str) else col
    if period == "monthly":
        return F.date_format(col, "yyyy-MM")
    if period == "quarterly":
        return F.concat(F.year(col).cast("string"), F.lit("-Q"), F.quarter(col).cast("string"))
    return F.year(col).cast("string")


def _periods_between(later: F.Column, earlier: F.Column, months: int) -> F.Column:
    """Whole periods from the period starting ``earlier`` to the one holding ``later``."""
    return F.floor(F.months_between(F.trunc(later, "month"), earlier) / F.lit(months)).cast("int")


ACTIVITY_COLUMNS = ["customer_id", "activity_month", "first_purchase_month", "orders", "gross_revenue", "net_revenue",
                    "as_of_date"]


def monthly_activity(transactions: DataFrame, as_of: dt.date | None) -> DataFrame:
    """One row per customer and calendar month with a transaction on or before ``as_of``: ``orders`` (purchases),
    ``gross_revenue`` (purchases) and ``net_revenue`` (refunds netted) of the month, and the customer's
    ``first_purchase_month`` (their monthly cohort; null for a customer with refunds only). Empty when ``as_of``
    is None.

    Every cohort table reads this instead of the transactions: fewer rows (a customer's purchases of one month are
    one row; half the rows for the 10M benchmark data), each already tagged with its cohort, so no cohort table
    shuffles the transactions or joins them to the customers.
    """
    is_purchase = F.col("amount") > 0
    # One shuffle by customer serves the sums per (customer, month) and the first purchase month per customer.
    per_month = (
        transactions.filter(F.col("transaction_date") <= F.lit(as_of).cast("date"))
        .repartition("customer_id")
        .groupBy("customer_id", F.trunc("transaction_date", "month").alias("activity_month"))
        .agg(
            F.count_if(is_purchase).cast("long").alias("orders"),
            money_sum(F.when(is_purchase, F.col("amount")).otherwise(0.0)).alias("gross_revenue"),
            money_sum(F.col("amount")).alias("net_revenue"),
        )
    )
    first = F.min(F.when(F.col("orders") > 0, F.col("activity_month"))).over(Window.partitionBy("customer_id"))
    return (per_month.withColumn("first_purchase_month", first)
            .withColumn("as_of_date", F.lit(as_of).cast("date")).select(*ACTIVITY_COLUMNS))


def cohort_table(
    activity: DataFrame,
    customer_metrics: DataFrame,
    historical_clv: DataFrame,
    period: str,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> DataFrame:
    """The cohorts of ``period`` starting in ``[start, end)`` (all when not given), in the module's shape.

    ``customer_metrics`` supplies the cohort size, orders and revenue and the as-of date; ``historical_clv`` the
    CLV; ``activity`` (:func:`monthly_activity` as of the same date) the purchases per period since acquisition.
    """
    months = _check_period(period)
    unit = _TRUNC_UNIT[period]
    as_of = customer_metrics.agg(F.max("as_of_date")).first()[0]
    activity_as_of = activity.agg(F.max("as_of_date")).first()[0]
    if as_of is not None and activity_as_of is not None and activity_as_of != as_of:
        raise ValueError(f"The monthly activity is as of {activity_as_of} but the customer metrics as of {as_of}: "
                         "re-materialize customer_monthly_activity.")
    as_of_col = F.lit(as_of).cast("date")
    last_complete = F.lit(last_complete_period_start(as_of, period) if as_of else None).cast("date")

    customers = (
        customer_metrics.filter(F.col("first_purchase_date").isNotNull())
        .select("customer_id", "num_orders", "total_revenue", "net_revenue", "last_purchase_date",
                F.trunc("first_purchase_date", unit).alias("cohort_start"))
        .join(historical_clv.select("customer_id", "historical_clv"), "customer_id", "left")
    )
    rows = activity.filter(F.col("first_purchase_month").isNotNull()).withColumn(
        "cohort_start", F.trunc("first_purchase_month", unit))
    if start is not None:
        customers = customers.filter(F.col("cohort_start") >= F.lit(start).cast("date"))
        rows = rows.filter(F.col("cohort_start") >= F.lit(start).cast("date"))
    if end is not None:
        customers = customers.filter(F.col("cohort_start") < F.lit(end).cast("date"))
        rows = rows.filter(F.col("cohort_start") < F.lit(end).cast("date"))

    summary = customers.groupBy("cohort_start").agg(
        F.count("*").alias("cohort_size"),
        F.sum("net_revenue").alias("total_revenue"),
        F.avg("historical_clv").alias("avg_clv"),
        F.sum("num_orders").alias("orders"),
        F.sum("total_revenue").alias("gross_revenue"),
        # A purchase after the acquisition period <=> the last purchase falls in a later period.
        F.count_if(F.trunc("last_purchase_date", unit) > F.col("cohort_start")).alias("repeat_customers"),
    )

    rows = rows.withColumn("period_number", F.greatest(F.lit(0), _periods_between(F.col("activity_month"), F.col("cohort_start"), months)))
    active = F.when(F.col("orders") > 0, 1).otherwise(0)
    if months > 1:  # a customer's months of one period become one row, so that active customers are a sum
        rows = rows.groupBy("customer_id", "cohort_start", "period_number").agg(
            F.max(active).alias("active"), F.sum("net_revenue").alias("net_revenue"))
    else:  # one month per period (months before the first purchase, refunds only, are never active)
        rows = rows.withColumn("active", active)
    observed = rows.groupBy("cohort_start", "period_number").agg(
        F.sum("active").cast("long").alias("active_customers"), F.sum("net_revenue").alias("revenue"))

    by_cohort = Window.partitionBy("cohort_start")
    running = by_cohort.orderBy("period_number").rowsBetween(Window.unboundedPreceding, Window.currentRow)
    retention_period = _periods_between(last_complete, F.col("cohort_start"), months)
    size = F.col("cohort_size")

    curve = (
        summary
        .withColumn("period_number", F.explode(F.sequence(F.lit(0), _periods_between(as_of_col, F.col("cohort_start"), months))))
        .join(observed, ["cohort_start", "period_number"], "left")
        .fillna({"active_customers": 0, "revenue": 0.0})
        .withColumn("period_start", F.add_months("cohort_start", F.col("period_number") * months))
        .withColumn("period_complete", F.date_sub(F.add_months("period_start", months), 1) <= as_of_col)
        .withColumn("retention", F.col("active_customers") / size)
        .withColumn("cumulative_revenue", F.sum("revenue").over(running))
        .withColumn("cumulative_revenue_per_customer", F.col("cumulative_revenue") / size)
        .withColumn("retention_period_number", F.when(retention_period >= 1, retention_period))
        .withColumn(
            "retention_rate",
            F.max(F.when(F.col("period_number") == F.col("retention_period_number"), F.col("retention"))).over(by_cohort),
        )
    )
    # Cached: the table is small (cohorts x periods) but costs a pass over every transaction, and a caller
    # typically reads it twice (the cohort summaries for metadata, then the write).
    return curve.select(
        F.lit(period).alias("cohort_period"),
        F.col("cohort_start"),
        cohort_label("cohort_start", period).alias("cohort_label"),
        size,
        F.col("total_revenue"),
        F.col("avg_clv"),
        F.col("retention_rate"),
        (F.lit(1.0) - F.col("retention_rate")).alias("churn_rate"),
        F.col("retention_period_number"),
        (F.col("repeat_customers") / size).alias("repeat_rate"),
        (F.col("orders") / size).alias("avg_orders_per_customer"),
        F.when(F.col("orders") > 0, F.col("gross_revenue") / F.col("orders")).alias("avg_order_value"),
        (F.months_between(F.trunc(as_of_col, "month"), F.col("cohort_start")).cast("int") + 1).alias("months_tracked"),
        as_of_col.alias("as_of_date"),
        "period_number",
        "period_start",
        "period_complete",
        "active_customers",
        "retention",
        "revenue",
        "cumulative_revenue",
        "cumulative_revenue_per_customer",
    ).cache()


def cohort_summary(cohorts: DataFrame) -> DataFrame:
    """One row per cohort: the cohort-level columns (the ``period_number = 0`` rows)."""
    return cohorts.filter(F.col("period_number") == 0).select(*SUMMARY_COLUMNS)


# ------------------------------------------------------------------------------------------ retention matrix
def retention_matrix(cohorts: DataFrame) -> DataFrame:
    """Cohort x period number: one row per cohort, columns ``period_0 .. period_N`` holding ``retention``
    (null where the cohort is not yet that old), after the cohort's size, avg CLV and retention rate."""
    last = cohorts.agg(F.max("period_number")).first()[0]
    periods = list(range((last or 0) + 1))
    keys = ["cohort_start", "cohort_label", "cohort_size", "avg_clv", "retention_rate", "repeat_rate"]
    wide = cohorts.groupBy(*keys).pivot("period_number", periods).agg(F.first("retention"))
    return wide.select(*keys, *[F.col(str(k)).alias(f"period_{k}") for k in periods]).orderBy("cohort_start")


def retention_heatmap_png(matrix, title: str = "Retention by monthly cohort") -> bytes:
    """A PNG heatmap of a ``retention_matrix`` (as pandas): cohorts down, periods since acquisition across."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    period_cols = [c for c in matrix.columns if c.startswith("period_")]
    values = matrix[period_cols].to_numpy(dtype=float)
    n_rows, n_cols = values.shape
    fig, ax = plt.subplots(figsize=(min(2 + 0.42 * n_cols, 18), min(1.5 + 0.3 * n_rows, 16)), dpi=80)
    try:
        image = ax.imshow(np.ma.masked_invalid(values), cmap="YlGnBu", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(n_cols), [c.removeprefix("period_") for c in period_cols], fontsize=7)
        ax.set_yticks(range(n_rows), [f"{lbl} (n={n})" for lbl, n in zip(matrix["cohort_label"], matrix["cohort_size"])], fontsize=7)
        ax.set_xlabel("periods since acquisition")
        ax.set_title(title)
        if n_rows * n_cols <= 600:
            for (i, j), v in np.ndenumerate(values):
                if not np.isnan(v):
                    ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=5.5, color="white" if v > 0.55 else "black")
        fig.colorbar(image, ax=ax, fraction=0.03, label="share of cohort active")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)


def cohort_comparison_markdown(summary, n: int = 3) -> str:
    """Best and worst cohorts (pandas ``cohort_summary``) by average CLV, by retention rate and by
    first-period retention (``period_1``, when present: the fairest comparison between old and young cohorts)."""
    if summary.empty:
        return "No cohorts yet."
    lines = []
    measures = [("avg_clv", "average historical CLV", "{:,.2f}"), ("retention_rate", "retention rate (last complete period)", "{:.1%}")]
    if "period_1" in summary.columns:
        measures.append(("period_1", "retention one period after acquisition", "{:.1%}"))
    for column, label, fmt in measures:
        known = summary[summary[column].notna()]
        if known.empty:
            lines.append(f"**{label}**: not measurable yet.\n")
            continue
        ranked = known.sort_values([column, "cohort_start"], ascending=[False, True])
        lines.append(f"**{label}**\n\n| | cohort | size | {column} |\n| --- | --- | ---: | ---: |")
        n_best = min(n, (len(ranked) + 1) // 2)  # best and worst never list the same cohort
        n_worst = min(n, len(ranked) - n_best)
        for tag, rows in (("best", ranked.head(n_best)), ("worst", ranked.tail(n_worst).iloc[::-1])):
            for _, r in rows.iterrows():
                lines.append(f"| {tag} | {r['cohort_label']} | {int(r['cohort_size'])} | {fmt.format(r[column])} |")
        lines.append("")
    lines.append("_Older cohorts have had longer to accumulate CLV; compare young and old cohorts by period-1 retention._")
    return "\n".join(lines)
