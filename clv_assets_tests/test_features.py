"""Predictive features: by hand on the tiny fixture, no leakage past the cutoff, and against pandas on a sample."""

import math

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from clv_assets import features
from clv_assets_tests.conftest import d


pytestmark = pytest.mark.usefixtures("interpreted_plans")


def by_customer(df):
    return {r["customer_id"]: r.asDict() for r in df.collect()}


def test_levels_come_from_purchases_up_to_the_cutoff(tiny_transactions):
    # books: A 120 + B 40 = 160; toys: A 80; games is refund-only (not a purchase)
    assert features.top_levels(tiny_transactions, d("2023-03-31"), "category", 5) == ["books", "toys"]
    assert features.top_levels(tiny_transactions, d("2023-01-31"), "category", 5) == ["books"]
    assert features.top_levels(tiny_transactions, d("2023-03-31"), "category", 1) == ["books"]
    assert features.feature_levels(tiny_transactions, d("2023-03-31"))["channels"] == ["email", "social"]


def test_features_by_hand(tiny_transactions):
    f = by_customer(features.build_features(tiny_transactions, d("2023-03-31")))
    assert set(f) == {"A", "B"}  # C only has a refund: no first purchase, not in the population

    a = f["A"]  # purchase days Jan 5 (100 + 20), Feb 10 (50), Mar 17 (30); refund of 20 on Feb 15
    assert (a["frequency"], a["recency"], a["T"]) == (2.0, 71.0, 85.0)
    assert a["monetary"] == pytest.approx((50 + 30) / 2)  # repeat purchase days only
    assert a["days_since_last_purchase"] == 14.0 and a["is_one_time_buyer"] == 0.0
    assert (a["n_purchase_days"], a["n_orders"]) == (3.0, 4.0)  # same-day orders: one purchase day
    assert a["orders_per_purchase_day"] == pytest.approx(4 / 3)
    assert a["purchase_days_per_year"] == pytest.approx(3 * 365.25 / 86)
    assert (a["gross_revenue"], a["refund_amount"], a["net_revenue"], a["n_refunds"]) == (200.0, 20.0, 180.0, 1.0)
    assert a["refund_share"] == pytest.approx(0.1)
    assert a["average_order_value"] == pytest.approx(50.0)
    assert (a["first_purchase_spend"], a["max_day_spend"]) == (120.0, 120.0)
    # windows (cutoff - N days, cutoff]: 30 days back is after Mar 1 -> only Mar 17
    assert (a["net_revenue_30d"], a["orders_30d"], a["purchase_days_30d"]) == (30.0, 1.0, 1.0)
    assert (a["net_revenue_90d"], a["orders_90d"], a["purchase_days_90d"]) == (180.0, 4.0, 3.0)
    assert a["net_revenue_prev_180d"] == 0.0 and a["spend_trend"] == 1.0  # all spend is recent
    assert a["mean_gap_days"] == pytest.approx(35.5)  # gaps 36 and 35 days
    assert a["std_gap_days"] == pytest.approx(math.sqrt(0.5))
    assert a["max_gap_days"] == 36.0
    assert a["overdue_ratio"] == pytest.approx(14 / 35.5)
    assert a["holiday_spend_share"] == 0.0
    assert (a["cat_share_books"], a["cat_share_toys"], a["cat_share_other"], a["cat_share_unknown"]) == (0.6, 0.4, 0.0, 0.0)
    assert a["n_categories"] == 2.0
    assert (a["channel_email"], a["channel_social"], a["acquisition_channel"]) == (1.0, 0.0, "email")
    assert a["cutoff_date"] == d("2023-03-31") and a["first_purchase_date"] == d("2023-01-05")

    b = f["B"]  # Jan 20 (30), Mar 31 (10): a purchase on the cutoff day counts
    assert (b["frequency"], b["recency"], b["T"], b["monetary"]) == (1.0, 70.0, 70.0, 10.0)
    assert b["std_gap_days"] == 0.0  # one gap: no spread
    assert b["days_since_last_purchase"] == 0.0 and b["overdue_ratio"] == 0.0


def test_one_time_buyer_and_unknown_category(tiny_transactions):
    extra = tiny_transactions.sparkSession.createDataFrame(
        [("X1", "D", d("2023-03-20"), 40.0, None, None), ("X2", "D", d("2023-03-20"), 10.0, "toys", None)],
        "transaction_id string, customer_id string, transaction_date date, amount double, category string, channel string",
    ).withColumn("transaction_month", F.trunc("transaction_date", "month")).withColumn("source_file", F.lit("x"))
    f = by_customer(features.build_features(tiny_transactions.unionByName(extra), d("2023-03-31"),
                                            categories=["books"], channels=["email"]))
    dd = f["D"]  # two orders on one day: one purchase occasion, no repeat
    assert (dd["frequency"], dd["recency"], dd["T"], dd["monetary"], dd["is_one_time_buyer"]) == (0.0, 0.0, 11.0, 0.0, 1.0)
    assert dd["n_orders"] == 2.0 and dd["mean_gap_days"] == 0.0 and dd["overdue_ratio"] == 0.0
    assert (dd["cat_share_unknown"], dd["cat_share_other"], dd["cat_share_books"]) == (0.8, 0.2, 0.0)
    assert dd["acquisition_channel"] == "unknown" and dd["channel_email"] == 0.0
    assert "cat_share_toys" not in dd  # the fixed list of levels decides the columns


def test_no_leakage_after_the_cutoff(tiny_transactions):
    cutoff = d("2023-02-28")
    levels = {"categories": ["books", "toys"], "channels": ["email", "social"]}
    before = features.build_features(tiny_transactions, cutoff, **levels)
    later = tiny_transactions.sparkSession.createDataFrame(
        [("L1", "A", d("2023-03-01"), 500.0, "books", "email"), ("L2", "B", d("2023-04-01"), -30.0, "books", "social"),
         ("L3", "E", d("2023-03-05"), 80.0, "toys", "organic")],
        "transaction_id string, customer_id string, transaction_date date, amount double, category string, channel string",
    ).withColumn("transaction_month", F.trunc("transaction_date", "month")).withColumn("source_file", F.lit("x"))
    after = features.build_features(tiny_transactions.unionByName(later), cutoff, **levels)
    assert sorted(map(tuple, before.collect())) == sorted(map(tuple, after.collect()))
    # Without fixed levels the levels too are chosen from the history up to the cutoff only.
    assert features.build_features(tiny_transactions.unionByName(later), cutoff).columns == \
        features.build_features(tiny_transactions, cutoff).columns


@pytest.fixture(scope="module")
def sample(spark):
    from clv_assets.sample_data import SampleSpec, simulate

    tx, _ = simulate(SampleSpec(n_customers=1500, seed=7))
    tx["transaction_date"] = tx["transaction_date"].dt.date
    sdf = spark.createDataFrame(tx).withColumn("transaction_month", F.trunc("transaction_date", "month")).withColumn(
        "source_file", F.lit("sample"))
    return tx, sdf


def test_rfm_and_windows_match_pandas(sample):
    tx, sdf = sample
    cutoff = d("2024-06-30")
    got = features.build_features(sdf, cutoff).toPandas().set_index("customer_id").sort_index()

    t = tx[tx["transaction_date"] <= cutoff].copy()
    t["date"] = pd.to_datetime(t["transaction_date"])
    c = pd.Timestamp(cutoff)
    days = t[t["amount"] > 0].groupby(["customer_id", "date"])["amount"].sum().reset_index()
    first = days.groupby("customer_id")["date"].transform("min")
    per = days.groupby("customer_id").agg(first=("date", "min"), last=("date", "max"), n=("date", "size"))
    per["repeat_spend"] = days[days["date"] > first].groupby("customer_id")["amount"].sum().reindex(per.index).fillna(0.0)
    expected = pd.DataFrame({
        "frequency": per["n"] - 1.0,
        "recency": (per["last"] - per["first"]).dt.days.astype(float),
        "T": (c - per["first"]).dt.days.astype(float),
    })
    expected["monetary"] = np.where(expected["frequency"] > 0, per["repeat_spend"] / expected["frequency"].clip(lower=1), 0.0)
    recent = t[t["date"] > c - pd.Timedelta(days=90)].groupby("customer_id")["amount"].sum()
    expected["net_revenue_90d"] = recent.reindex(expected.index).fillna(0.0)
    expected = expected.sort_index()

    assert list(got.index) == list(expected.index)
    for col in expected.columns:
        np.testing.assert_allclose(got[col].to_numpy(), expected[col].to_numpy(), rtol=1e-9, atol=1e-9, err_msg=col)
    numeric = got[features.feature_columns(features.build_features(sdf, cutoff))]
    assert not numeric.isna().any().any()


def test_window_revenue_is_net_and_half_open(tiny_transactions):
    rev = {r["customer_id"]: r["revenue"] for r in features.window_revenue(tiny_transactions, d("2023-02-10"), d("2023-03-17")).collect()}
    # (Feb 10, Mar 17]: A's refund on Feb 15 and order on Mar 17; C's refund on Mar 2; not A's Feb 10 order
    assert rev == {"A": 10.0, "C": -15.0}


def test_window_revenues_in_one_pass(tiny_transactions):
    windows = {"to_feb_10": (d("2022-12-31"), d("2023-02-10")), "to_mar_17": (d("2023-02-10"), d("2023-03-17"))}
    got = {r["customer_id"]: (r["to_feb_10"], r["to_mar_17"]) for r in features.window_revenues(tiny_transactions, windows).collect()}
    # A: 100 + 20 + 50, then -20 + 30; B: 30, then nothing (Mar 31 is outside); C: nothing, then the -15 refund
    assert got == {"A": (170.0, 10.0), "B": (30.0, 0.0), "C": (0.0, -15.0)}


def test_categories_counted_the_same_beyond_the_bit_mask(sample, monkeypatch):
    # Up to MAX_MASKED_CATEGORIES categories are counted with a bit mask, beyond with a distinct set.
    _, sdf = sample
    cutoff = d("2024-06-30")
    levels = {"categories": ["books_media"], "channels": []}
    masked = features.build_features(sdf, cutoff, **levels).select("customer_id", "n_categories").toPandas()
    monkeypatch.setattr(features, "MAX_MASKED_CATEGORIES", 1)
    as_set = features.build_features(sdf, cutoff, **levels).select("customer_id", "n_categories").toPandas()
    tx, _ = sample
    expected = tx[(tx["transaction_date"] <= cutoff) & (tx["amount"] > 0)].groupby("customer_id")["category"].nunique(dropna=False)
    for got in (masked, as_set):
        got = got.set_index("customer_id")["n_categories"].sort_index()
        assert list(got.index) == list(expected.sort_index().index)
        np.testing.assert_array_equal(got.to_numpy(), expected.sort_index().to_numpy(dtype=float))
    assert expected.max() > 1 and tx["category"].nunique() > 1  # the data has several categories to count
