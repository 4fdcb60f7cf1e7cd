"""Customer features for predictive CLV, computed strictly from the history up to a cutoff date.

:func:`build_features` is a pure Spark function: one row per customer whose **first purchase is on or before
the cutoff**, built only from transactions dated on or before the cutoff (later rows are filtered out first,
so adding transactions after the cutoff never changes a feature). Every feature column is a non-null double,
ready for Spark MLlib.

Units and conventions (those of ``clv_assets.metrics`` and ``clv_assets.btyd``):

- A *purchase* is a positive amount, a *refund* a negative one (netted, never dropped; a refund is not a
  purchase, so a day with only refunds is not a purchase day). A *purchase day* is a day with at least one
  purchase: two orders on one day are two orders, one purchase occasion.
- RFM in BTYD units, in days: ``frequency`` x = repeat purchase days (purchase days after the first one),
  ``recency`` t_x = days from the first to the last purchase day, ``T`` = days from the first purchase to
  the cutoff, ``monetary`` = mean spend per repeat purchase day (the first day left out, as the Gamma-Gamma
  model wants; 0 for one-purchase customers).
- "Last N days" windows are ``(cutoff - N days, cutoff]``.
- Statistics that do not exist for a customer (gaps between purchases of a one-purchase customer, the spread
  of a single gap, shares of zero spend) are 0, and ``is_one_time_buyer`` says why.
- Categorical columns become shares (category mix, of gross spend) and indicators (acquisition channel)
  over a *fixed* list of levels, so feature tables at different cutoffs have the same columns: pass the
  levels chosen once (:func:`top_levels` at the earliest cutoff) to every call. A null category counts as
  ``unknown``; categories outside the list as ``other``.

Customers whose only transactions up to the cutoff are refunds (a purchase before the data starts) have no
first purchase and are not in the table.
"""

from __future__ import annotations

import datetime as dt
import re

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from clv_assets.metrics import AcquisitionChannel, money_sum, purchase_days

WINDOWS_DAYS = (30, 90, 180, 365)
TREND_DAYS = 180  # spend trend: last 180 days against the 180 days before
HOLIDAY_MONTHS = (11, 12)
DEFAULT_TOP_CATEGORIES = 6
DEFAULT_TOP_CHANNELS = 6

ID_COLUMNS = ("customer_id", "cutoff_date", "first_purchase_date", "acquisition_channel")


def level_name(value: str) -> str:
    """A column-name-safe version of a category or channel value (lowercase, ``_`` for anything else)."""
    name = re.sub(r"[^0-9a-z]+", "_", str(value).lower()).strip("_")
    return name or "blank"


def top_levels(transactions: DataFrame, cutoff: dt.date, column: str, k: int) -> list[str]:
    """The ``k`` non-null values of ``column`` with the most gross purchase spend up to ``cutoff`` (ties by
    name), so the feature columns are chosen without looking past the cutoff."""
    rows = (
        transactions.filter((F.col("transaction_date") <= F.lit(cutoff)) & (F.col("amount") > 0) & F.col(column).isNotNull())
        .groupBy(column)
        .agg(F.sum("amount").alias("spend"))
        .orderBy(F.desc("spend"), F.asc(column))
        .limit(k)
        .collect()
    )
    return [r[0] for r in rows]


def feature_levels(transactions: DataFrame, cutoff: dt.date, n_categories: int = DEFAULT_TOP_CATEGORIES,
                   n_channels: int = DEFAULT_TOP_CHANNELS) -> dict[str, list[str]]:
    """Category and channel levels to one-hot / share-encode, chosen from the history up to ``cutoff``."""
    return {
        "categories": top_levels(transactions, cutoff, "category", n_categories),
        "channels": top_levels(transactions, cutoff, "channel", n_channels),
    }


def build_features(transactions: DataFrame, cutoff: dt.date, *, categories: list[str] | None = None,
                   channels: list[str] | None = None) -> DataFrame:
    """One row per customer with a purchase on or before ``cutoff``: identifiers, then numeric features.

    ``categories`` / ``channels``: the levels to encode (default: the top ones up to ``cutoff``, see
    :func:`feature_levels`). Columns: ``customer_id, cutoff_date, first_purchase_date, acquisition_channel``
    and the numeric features listed by :func:`feature_columns`.
    """
    if categories is None or channels is None:
        levels = feature_levels(transactions, cutoff)
        categories = levels["categories"] if categories is None else categories
        channels = levels["channels"] if channels is None else channels
    c = F.lit(cutoff).cast("date")
    is_purchase = F.col("amount") > 0
    date = F.col("transaction_date")
    age = F.datediff(c, date)  # days before the cutoff: 0 on the cutoff day
    # One shuffle by customer and one sort (see metrics.purchase_days); over the same order each row also gets the
    # customer's first purchase day and its day's purchase total, and a single aggregation per customer computes
    # every feature. Grouping by (customer, day) first would cost a second aggregation over as many rows.
    days = purchase_days(transactions, cutoff)
    new_day, gap = days.new_day, days.gap
    same_day = days.in_order.rangeBetween(Window.currentRow, Window.currentRow)  # the rows of the same (kind of) day
    tx = (days.rows.withColumn("_first_day", F.first(date).over(days.in_order))  # purchases sort first
          .withColumn("_day_spend", F.sum("amount").over(same_day)))
    on_first_day = is_purchase & (date == F.col("_first_day"))

    category = F.col("category")
    in_list = category.isin(categories) if categories else F.lit(False)
    channel = AcquisitionChannel(transactions)  # not tx: its distinct channels need no shuffle by customer
    money = {
        "gross_revenue": F.when(is_purchase, F.col("amount")).otherwise(0.0),
        "refund_amount": F.when(~is_purchase, -F.col("amount")).otherwise(0.0),
        "net_revenue": F.col("amount"),
        **{f"net_revenue_{w}d": F.when(age < w, F.col("amount")).otherwise(0.0) for w in WINDOWS_DAYS},
        "net_revenue_prev_180d": F.when((age >= TREND_DAYS) & (age < 2 * TREND_DAYS), F.col("amount")).otherwise(0.0),
        "holiday_spend": F.when(is_purchase & F.month(date).isin(*HOLIDAY_MONTHS), F.col("amount")).otherwise(0.0),
        **{f"cat_spend_{i}": F.when(is_purchase & (category == level), F.col("amount")).otherwise(0.0)
           for i, level in enumerate(categories)},
        "cat_spend_unknown": F.when(is_purchase & category.isNull(), F.col("amount")).otherwise(0.0),
        "cat_spend_other": F.when(is_purchase & category.isNotNull() & ~in_list, F.col("amount")).otherwise(0.0),
        "repeat_spend": F.when(is_purchase & ~on_first_day, F.col("amount")),
        "first_purchase_spend": F.when(on_first_day, F.col("amount")),
    }
    purchase_date = F.when(is_purchase, date)
    feats = tx.groupBy("customer_id").agg(
        F.min(purchase_date).alias("first_purchase_date"),
        F.max(purchase_date).alias("last_purchase_date"),
        F.count_if(new_day).alias("n_purchase_days"),
        F.count_if(is_purchase).alias("n_orders"),
        F.count_if(F.col("amount") < 0).alias("n_refunds"),
        *[money_sum(expr).alias(name) for name, expr in money.items()],
        F.max(F.when(is_purchase, F.col("_day_spend"))).alias("max_day_spend"),
        F.avg(gap).alias("mean_gap_days"),
        F.stddev_samp(gap).alias("std_gap_days"),
        F.max(gap).alias("max_gap_days"),
        *[F.count_if(is_purchase & (age < w)).alias(f"orders_{w}d") for w in WINDOWS_DAYS],
        *[F.count_if(new_day & (age < w)).alias(f"purchase_days_{w}d") for w in WINDOWS_DAYS],
        purchased_categories(transactions, is_purchase).alias("n_categories"),
        channel.key().alias("first_channel_key"),
    ).filter(F.col("n_orders") > 0)  # population: customers with a purchase by the cutoff

    x = F.col("n_purchase_days") - 1
    T = F.datediff(c, "first_purchase_date").cast("double")
    tx_days = F.datediff("last_purchase_date", "first_purchase_date").cast("double")
    gross = F.col("gross_revenue")

    def share(numerator: F.Column) -> F.Column:
        return F.when(gross > 0, numerator / gross).otherwise(0.0)

    feats = feats.withColumn("acquisition_channel", channel.decode(F.col("first_channel_key")))
    recent, earlier = F.col("net_revenue_180d"), F.col("net_revenue_prev_180d")
    denominator = F.abs(recent) + F.abs(earlier)
    columns: dict[str, F.Column] = {
        "frequency": x.cast("double"),
        "recency": tx_days,
        "T": T,
        "monetary": F.when(x > 0, F.col("repeat_spend") / x).otherwise(0.0),
        "days_since_last_purchase": F.datediff(c, "last_purchase_date").cast("double"),
        "is_one_time_buyer": F.when(x == 0, 1.0).otherwise(0.0),
        "n_purchase_days": F.col("n_purchase_days").cast("double"),
        "n_orders": F.col("n_orders").cast("double"),
        "orders_per_purchase_day": F.col("n_orders") / F.col("n_purchase_days"),
        "purchase_days_per_year": F.col("n_purchase_days") * 365.25 / (T + 1.0),
        "gross_revenue": gross,
        "net_revenue": F.col("net_revenue"),
        "refund_amount": F.col("refund_amount"),
        "n_refunds": F.col("n_refunds").cast("double"),
        "refund_share": share(F.col("refund_amount")),
        "has_negative_net_revenue": F.when(F.col("net_revenue") < 0, 1.0).otherwise(0.0),
        "average_order_value": gross / F.col("n_orders"),
        "first_purchase_spend": F.col("first_purchase_spend"),
        "max_day_spend": F.col("max_day_spend"),
        "net_revenue_per_year": F.col("net_revenue") * 365.25 / (T + 1.0),
        **{f"net_revenue_{w}d": F.col(f"net_revenue_{w}d") for w in WINDOWS_DAYS},
        **{f"orders_{w}d": F.col(f"orders_{w}d").cast("double") for w in WINDOWS_DAYS},
        **{f"purchase_days_{w}d": F.col(f"purchase_days_{w}d").cast("double") for w in WINDOWS_DAYS},
        "net_revenue_prev_180d": earlier,
        "spend_trend": F.when(denominator > 0, (recent - earlier) / denominator).otherwise(0.0),
        "mean_gap_days": F.coalesce(F.col("mean_gap_days"), F.lit(0.0)),
        "std_gap_days": F.coalesce(F.col("std_gap_days"), F.lit(0.0)),
        "max_gap_days": F.coalesce(F.col("max_gap_days").cast("double"), F.lit(0.0)),
        "overdue_ratio": F.when(x > 0, F.datediff(c, "last_purchase_date") / F.col("mean_gap_days")).otherwise(0.0),
        "holiday_spend_share": share(F.col("holiday_spend")),
        "n_categories": F.col("n_categories").cast("double"),
        **{f"cat_share_{level_name(level)}": share(F.col(f"cat_spend_{i}")) for i, level in enumerate(categories)},
        "cat_share_other": share(F.col("cat_spend_other")),
        "cat_share_unknown": share(F.col("cat_spend_unknown")),
        **{f"channel_{level_name(level)}": F.when(F.col("acquisition_channel") == level, 1.0).otherwise(0.0) for level in channels},
    }
    return feats.select(
        "customer_id",
        c.alias("cutoff_date"),
        "first_purchase_date",
        "acquisition_channel",
        *[col.cast("double").alias(name) for name, col in columns.items()],
    )


#: A missing category and up to 62 named ones fit the 64-bit mask of :func:`purchased_categories`.
MAX_MASKED_CATEGORIES = 62


def purchased_categories(transactions: DataFrame, is_purchase: F.Column) -> F.Column:
    """Aggregate expression: how many distinct categories a customer bought from (a missing category counts as
    one, "unknown"). With at most :data:`MAX_MASKED_CATEGORIES` categories in the data (one small aggregation
    lists them), each has a bit and the count is that of the bits OR-ed together; beyond, a distinct set."""
    names = sorted(r[0] for r in transactions.select("category").where(F.col("category").isNotNull()).distinct()
                   .limit(MAX_MASKED_CATEGORIES + 1).collect())
    category = F.col("category")
    if len(names) > MAX_MASKED_CATEGORIES:
        return F.size(F.collect_set(F.when(is_purchase, F.coalesce(category, F.lit("\u0000")))))
    # array_position is 1-based and 0 when absent: bit 0 stands for the missing category.
    position = F.coalesce(F.array_position(F.array(*[F.lit(n) for n in names]), category), F.lit(0)) if names else F.lit(0)
    bits = F.array(*[F.lit(1 << i).cast("long") for i in range(len(names) + 1)])
    return F.bit_count(F.bit_or(F.when(is_purchase, F.element_at(bits, position.cast("int") + 1)).otherwise(F.lit(0).cast("long"))))


def feature_columns(features: DataFrame) -> list[str]:
    """The numeric feature columns of a :func:`build_features` table (everything but the identifiers)."""
    return [f.name for f in features.schema.fields if f.name not in ID_COLUMNS and f.dataType.simpleString() == "double"]


def window_revenue(transactions: DataFrame, start: dt.date, end: dt.date) -> DataFrame:
    """Net revenue (purchases minus refunds) per customer in ``(start, end]``: ``customer_id, revenue``.

    Customers with no transaction in the window are absent (their revenue is 0).
    """
    return window_revenues(transactions, {"revenue": (start, end)})


def window_revenues(transactions: DataFrame, windows: dict[str, tuple[dt.date, dt.date]]) -> DataFrame:
    """Net revenue per customer in each ``(start, end]`` window, one column per window name, in one pass.

    Customers with no transaction in any of the windows are absent; a customer present for one window has
    0.0 in the others.
    """
    date = F.col("transaction_date")

    def inside(start: dt.date, end: dt.date) -> F.Column:
        return (date > F.lit(start)) & (date <= F.lit(end))

    spans = list(windows.values())
    any_window = inside(*spans[0])
    for span in spans[1:]:
        any_window = any_window | inside(*span)
    if len(spans) == 1:
        sums = [F.sum("amount").alias(name) for name in windows]
    else:
        sums = [F.sum(F.when(inside(*span), F.col("amount")).otherwise(0.0)).alias(name) for name, span in windows.items()]
    return transactions.filter(any_window).groupBy("customer_id").agg(*sums)
