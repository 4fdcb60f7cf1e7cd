"""Customer-level metrics and historical CLV (pure Spark functions, testable without Dagster).

Conventions, stated once:
- A *purchase* is a transaction with a positive amount; a negative amount is a *refund*; zero counts as
  neither. Revenue is gross of refunds (``total_revenue``) or net of them (``net_revenue``).
- A *purchase day* is a calendar day with at least one purchase: two orders on one day are two orders but
  one purchase day (the unit the probabilistic models count).
- Dates are measured in days up to the *as-of date*: the last transaction date in the data unless given.
  Transactions after the as-of date are ignored.
- Customers whose only transactions are refunds keep their (negative) net revenue, with no purchase dates.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window, WindowSpec

DAYS_PER_MONTH = 365.25 / 12


def resolve_as_of(transactions: DataFrame, as_of: str | dt.date | None = None) -> dt.date:
    """The as-of date: the given one, or the last transaction date in the data."""
    if as_of is not None:
        return as_of if isinstance(as_of, dt.date) else dt.date.fromisoformat(str(as_of))
    last = transactions.agg(F.max("transaction_date")).first()[0]
    if last is None:
        raise ValueError("There are no transactions: nothing to compute customer metrics from.")
    return last


#: Above this many distinct channels the acquisition channel falls back to a sort-based aggregation.
MAX_ENCODED_CHANNELS = 10_000
_EPOCH = "1900-01-01"  # earlier dates are quarantined at ingest


class AcquisitionChannel:
    """The acquisition channel of a customer: the channel of their first purchase (a refund is not a purchase;
    a customer with only refunds gets the channel of their first refund). When the first purchase day has
    purchases through several channels, the first in alphabetical order wins, a known channel before a
    missing one.

    Computed with a hash aggregation: each row gets a sortable 64-bit key (refund flag, day, channel code) and
    the minimum key per customer names the channel. The channel codes come from the distinct channels in the
    data (one small aggregation).
    """

    def __init__(self, transactions: DataFrame):
        rows = transactions.select("channel").where(F.col("channel").isNotNull()).distinct().limit(MAX_ENCODED_CHANNELS + 1).collect()
        self.channels = sorted(r[0] for r in rows)
        self.encoded = len(self.channels) <= MAX_ENCODED_CHANNELS

    def key(self) -> F.Column:
        """Aggregate expression: the minimum key per group (decode it with :meth:`decode`)."""
        refund = F.when(F.col("amount") > 0, 0).otherwise(1).cast("long")
        if not self.encoded:
            return F.min(F.struct(refund.alias("refund"), F.col("transaction_date").alias("day"),
                                  F.coalesce("channel", F.lit("\uffff")).alias("order"), F.col("channel").alias("channel")))
        codes = F.array(*[F.lit(c) for c in self.channels]) if self.channels else F.array().cast("array<string>")
        code = F.coalesce(F.array_position(codes, F.col("channel")), F.lit(len(self.channels) + 1)).cast("long")
        day = F.datediff(F.col("transaction_date"), F.lit(_EPOCH).cast("date")).cast("long")
        return F.min(F.shiftleft(refund, 62) + F.shiftleft(day, 32) + code)

    def decode(self, key: F.Column) -> F.Column:
        """The channel named by a minimum key ("unknown" when it is missing)."""
        if not self.encoded:
            return F.coalesce(key.getField("channel"), F.lit("unknown"))
        names = F.array(*[F.lit(c) for c in self.channels], F.lit("unknown"))
        return F.element_at(names, key.bitwiseAND(F.lit(0xFFFFFFFF)).cast("int"))


class PurchaseDays(NamedTuple):
    """Transactions up to a date, shuffled by customer and sorted by (customer, refund or not, date)."""

    rows: DataFrame
    in_order: WindowSpec  # the sort order as a window: further columns over it need no second sort
    new_day: F.Column  # true on the first purchase row of each purchase day
    gap: F.Column  # days since the previous purchase day on those rows, else null


def purchase_days(transactions: DataFrame, until: dt.date) -> PurchaseDays:
    """Purchase days and the gaps between them without grouping by (customer, day): purchases sort before
    refunds, so each purchase row's previous row (a window ``lag``) is the previous purchase. One shuffle and
    one sort serve every per-customer aggregation over the rows."""
    is_purchase = F.col("amount") > 0
    date = F.col("transaction_date")
    rows = (transactions.filter(date <= F.lit(until).cast("date")).repartition("customer_id")
            .withColumn("_refund", F.when(is_purchase, 0).otherwise(1)))
    in_order = Window.partitionBy("customer_id").orderBy("_refund", "transaction_date")
    rows = rows.withColumn("_previous", F.lag(date).over(in_order))
    previous = F.col("_previous")
    new_day = is_purchase & (previous.isNull() | (previous != date))
    return PurchaseDays(rows, in_order, new_day, F.when(new_day, F.datediff(date, previous)))


def money_sum(amounts: F.Column) -> F.Column:
    """Aggregate: the sum rounded to 1e-6, so that a customer who returned everything nets exactly 0 whatever
    the order of the additions (0.1 + 0.2 - 0.1 - 0.2 is 2.8e-17 in floating point)."""
    return F.round(F.sum(amounts), 6)


def customer_metrics(transactions: DataFrame, as_of: dt.date) -> DataFrame:
    """One row per customer: dates, order and purchase-day counts, revenue, recency, frequency, consistency."""
    as_of_col = F.lit(as_of).cast("date")
    is_purchase = F.col("amount") > 0
    date = F.col("transaction_date")
    purchase_date = F.when(is_purchase, date)
    days = purchase_days(transactions, as_of)
    tx, new_day, gap = days.rows, days.new_day, days.gap

    channel = AcquisitionChannel(transactions)  # not tx: its distinct channels need no shuffle by customer
    totals = tx.groupBy("customer_id").agg(
        F.min(purchase_date).alias("first_purchase_date"),
        F.max(purchase_date).alias("last_purchase_date"),
        F.count(purchase_date).alias("num_orders"),
        F.count_if(new_day).alias("num_purchase_days"),
        money_sum(F.when(is_purchase, F.col("amount")).otherwise(0.0)).alias("total_revenue"),
        money_sum(F.when(F.col("amount") < 0, -F.col("amount")).otherwise(0.0)).alias("refund_amount"),
        money_sum(F.col("amount")).alias("net_revenue"),
        F.avg(gap).alias("mean_days_between_purchases"),
        F.stddev_samp(gap).alias("std_days_between_purchases"),
        channel.key().alias("acquisition_channel"),
    )

    tenure_days = F.datediff(as_of_col, "first_purchase_date")
    return (
        totals
        .withColumn("average_order_value", F.when(F.col("num_orders") > 0, F.col("total_revenue") / F.col("num_orders")))
        .withColumn("lifespan_days", F.datediff("last_purchase_date", "first_purchase_date"))
        .withColumn("recency_days", F.datediff(as_of_col, "last_purchase_date"))
        .withColumn("tenure_days", tenure_days)
        .withColumn(
            "purchase_frequency_per_month",
            F.col("num_orders") / F.greatest(tenure_days / F.lit(DAYS_PER_MONTH), F.lit(1.0)),
        )
        .withColumn("acquisition_month", F.trunc("first_purchase_date", "month"))
        .withColumn("acquisition_channel", channel.decode(F.col("acquisition_channel")))
        .withColumn("as_of_date", as_of_col)
        .select(
            "customer_id",
            "first_purchase_date",
            "last_purchase_date",
            "num_orders",
            "num_purchase_days",
            "total_revenue",
            "refund_amount",
            "net_revenue",
            "average_order_value",
            "lifespan_days",
            "recency_days",
            "tenure_days",
            "purchase_frequency_per_month",
            "mean_days_between_purchases",
            "std_days_between_purchases",
            "acquisition_month",
            "acquisition_channel",
            "as_of_date",
        )
    )


def historical_clv(metrics: DataFrame, profit_margin: float) -> DataFrame:
    """Historical CLV: the profit a customer has brought so far, ``profit_margin x net_revenue``."""
    if not 0 < profit_margin <= 1:
        raise ValueError(f"profit_margin must be in (0, 1], got {profit_margin}")
    return metrics.select(
        "customer_id",
        "acquisition_month",
        "acquisition_channel",
        "num_orders",
        "total_revenue",
        "net_revenue",
        F.lit(float(profit_margin)).alias("profit_margin"),
        (F.col("net_revenue") * F.lit(float(profit_margin))).alias("historical_clv"),
    )


def distribution_summary(df: DataFrame, column: str) -> dict[str, float]:
    """Count, total, mean, standard deviation, min, max and percentiles (p10..p99) of one column."""
    probs = [0.1, 0.25, 0.5, 0.75, 0.9, 0.99]
    row = df.agg(
        F.count(column).alias("count"),
        F.sum(column).alias("total"),
        F.avg(column).alias("mean"),
        F.stddev_samp(column).alias("std"),
        F.min(column).alias("min"),
        F.max(column).alias("max"),
        F.percentile_approx(column, probs, 10_000).alias("pct"),
    ).first()
    summary = {k: (float(row[k]) if row[k] is not None else float("nan")) for k in ("count", "total", "mean", "std", "min", "max")}
    summary.update({f"p{int(p * 100)}": float(v) for p, v in zip(probs, row["pct"] or [float("nan")] * len(probs))})
    return summary
