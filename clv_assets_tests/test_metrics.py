"""Customer metrics and historical CLV against hand-computed values on the tiny fixture."""

import math

import pytest
from pyspark.sql import functions as F

from clv_assets import metrics
from clv_assets_tests.conftest import d


def by_customer(df):
    return {r["customer_id"]: r.asDict() for r in df.collect()}


def test_customer_metrics_by_hand(tiny_transactions):
    as_of = metrics.resolve_as_of(tiny_transactions)
    assert as_of == d("2023-03-31")
    m = by_customer(metrics.customer_metrics(tiny_transactions, as_of))

    a = m["A"]
    assert (a["first_purchase_date"], a["last_purchase_date"]) == (d("2023-01-05"), d("2023-03-17"))
    assert a["num_orders"] == 4  # 100, 20 (same day), 50, 30; the refund is not an order
    assert a["num_purchase_days"] == 3
    assert a["total_revenue"] == pytest.approx(200.0)
    assert a["refund_amount"] == pytest.approx(20.0)
    assert a["net_revenue"] == pytest.approx(180.0)
    assert a["average_order_value"] == pytest.approx(50.0)
    assert a["lifespan_days"] == 71  # Jan 5 -> Mar 17
    assert a["recency_days"] == 14  # Mar 17 -> Mar 31
    assert a["tenure_days"] == 85  # Jan 5 -> Mar 31
    assert a["purchase_frequency_per_month"] == pytest.approx(4 / (85 / (365.25 / 12)))
    # purchase days Jan 5, Feb 10, Mar 17: gaps 36 and 35 days
    assert a["mean_days_between_purchases"] == pytest.approx(35.5)
    assert a["std_days_between_purchases"] == pytest.approx(math.sqrt(0.5))
    assert a["acquisition_month"] == d("2023-01-01")
    assert a["acquisition_channel"] == "email"

    b = m["B"]
    assert (b["num_orders"], b["num_purchase_days"], b["recency_days"]) == (2, 2, 0)
    assert b["mean_days_between_purchases"] == pytest.approx(70.0)
    assert b["std_days_between_purchases"] is None  # one gap: no spread to measure
    # tenure under a month counts as one month of tenure
    assert b["purchase_frequency_per_month"] == pytest.approx(2 / (70 / (365.25 / 12)))

    c = m["C"]  # refund only: kept, with its negative net revenue and no purchase dates
    assert c["num_orders"] == 0 and c["first_purchase_date"] is None and c["recency_days"] is None
    assert c["net_revenue"] == pytest.approx(-15.0)
    assert c["average_order_value"] is None
    assert c["acquisition_channel"] == "organic"


def test_frequency_uses_at_least_one_month_of_tenure(tiny_transactions):
    m = by_customer(metrics.customer_metrics(tiny_transactions, d("2023-01-06")))
    assert m["A"]["tenure_days"] == 1
    assert m["A"]["purchase_frequency_per_month"] == pytest.approx(2.0)  # 2 orders / 1 month minimum


def test_as_of_date_ignores_later_transactions(tiny_transactions):
    m = by_customer(metrics.customer_metrics(tiny_transactions, d("2023-02-28")))
    assert set(m) == {"A", "B"}
    assert m["A"]["net_revenue"] == pytest.approx(150.0)
    assert m["A"]["recency_days"] == 18  # Feb 10 -> Feb 28
    assert m["B"]["num_orders"] == 1


def test_historical_clv_is_margin_times_net_revenue(tiny_transactions):
    m = metrics.customer_metrics(tiny_transactions, d("2023-03-31"))
    clv = by_customer(metrics.historical_clv(m, 0.25))
    assert clv["A"]["historical_clv"] == pytest.approx(45.0)
    assert clv["B"]["historical_clv"] == pytest.approx(10.0)
    assert clv["C"]["historical_clv"] == pytest.approx(-3.75)
    with pytest.raises(ValueError, match="profit_margin"):
        metrics.historical_clv(m, 1.5)


def test_distribution_summary(tiny_transactions):
    m = metrics.customer_metrics(tiny_transactions, d("2023-03-31"))
    s = metrics.distribution_summary(metrics.historical_clv(m, 0.2), "historical_clv")
    assert s["count"] == 3 and s["total"] == pytest.approx(0.2 * (180 + 40 - 15))
    assert s["min"] == pytest.approx(-3.0) and s["max"] == pytest.approx(36.0) and s["p50"] == pytest.approx(8.0)


def test_acquisition_channel_is_the_first_purchase_channel(spark):
    rows = [
        ("t1", "A", d("2023-01-02"), -5.0, None, "web"),     # a refund first: not a purchase
        ("t2", "A", d("2023-01-03"), 10.0, None, "store"),   # first purchase day: store and email ...
        ("t3", "A", d("2023-01-03"), 12.0, None, "email"),   # ... alphabetical order: email
        ("t4", "A", d("2023-01-09"), 12.0, None, "affiliate"),
        ("t5", "B", d("2023-01-04"), 7.0, None, None),       # missing channel and a known one on the first day
        ("t6", "B", d("2023-01-04"), 8.0, None, "web"),
        ("t7", "C", d("2023-01-05"), 9.0, None, None),       # only missing channels
        ("t8", "D", d("2023-01-06"), -4.0, None, "store"),   # only refunds: the first refund's channel
        ("t9", "D", d("2023-01-07"), -3.0, None, "email"),
    ]
    tx = spark.createDataFrame(rows, "transaction_id string, customer_id string, transaction_date date, amount double, "
                               "category string, channel string")
    m = by_customer(metrics.customer_metrics(tx, d("2023-01-31")))
    assert {k: v["acquisition_channel"] for k, v in m.items()} == {"A": "email", "B": "web", "C": "unknown", "D": "store"}
    from clv_assets import features

    f = by_customer(features.build_features(tx, d("2023-01-31"), categories=[], channels=["email", "web"]))
    assert {k: v["acquisition_channel"] for k, v in f.items()} == {"A": "email", "B": "web", "C": "unknown"}
    assert (f["A"]["channel_email"], f["B"]["channel_web"], f["C"]["channel_web"]) == (1.0, 1.0, 0.0)


def test_a_customer_who_returned_everything_nets_exactly_zero(spark):
    # 0.1 + 0.2 - 0.1 - 0.2 is 2.8e-17 in floating point, in the order the rows are summed here.
    rows = [("t1", "R", d("2023-01-02"), 0.1), ("t2", "R", d("2023-01-03"), 0.2),
            ("t3", "R", d("2023-01-09"), -0.1), ("t4", "R", d("2023-01-10"), -0.2)]
    tx = spark.createDataFrame(rows, "transaction_id string, customer_id string, transaction_date date, amount double").withColumn(
        "category", F.lit(None).cast("string")).withColumn("channel", F.lit(None).cast("string"))
    m = by_customer(metrics.customer_metrics(tx, d("2023-01-31")))["R"]
    assert (m["net_revenue"], m["total_revenue"], m["refund_amount"]) == (0.0, 0.3, 0.3)
    assert (m["num_orders"], m["num_purchase_days"], m["mean_days_between_purchases"]) == (2, 2, 1.0)
    from clv_assets import features

    f = by_customer(features.build_features(tx, d("2023-01-31"), categories=[], channels=[]))["R"]
    assert (f["net_revenue"], f["has_negative_net_revenue"], f["spend_trend"]) == (0.0, 0.0, 0.0)
