"""The sample data generator: reproducible, well-formed, and showing the behaviour the CLV models rely on."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from clv_assets.sample_data import CATEGORIES, CHANNELS, GROUND_TRUTH_COLUMNS, TRANSACTION_COLUMNS, SIZES, SampleSpec, simulate, write_sample

SPEC = SampleSpec(n_customers=1500, seed=7)
CSV_DTYPES = {"transaction_id": str, "customer_id": str, "category": str, "channel": str}


@pytest.fixture(scope="module")
def sample():
    return simulate(SPEC)


@pytest.fixture(scope="module")
def tx(sample):
    return sample[0]


@pytest.fixture(scope="module")
def gt(sample):
    return sample[1]


def orders_of(tx: pd.DataFrame) -> pd.DataFrame:
    return tx[tx["amount"] > 0]


def read_csvs(paths) -> pd.DataFrame:
    frames = [pd.read_csv(p, dtype=CSV_DTYPES, parse_dates=["transaction_date"], float_precision="round_trip") for p in paths]
    return pd.concat(frames, ignore_index=True)


# --- reproducibility ---------------------------------------------------------------------------------------


def test_same_spec_same_data_other_seed_other_data(sample):
    tx, gt = sample
    tx2, gt2 = simulate(SPEC)
    pd.testing.assert_frame_equal(tx, tx2, check_exact=True)
    pd.testing.assert_frame_equal(gt, gt2, check_exact=True)

    tx3, gt3 = simulate(SampleSpec(n_customers=SPEC.n_customers, seed=SPEC.seed + 1))
    assert len(tx3) != len(tx) or not tx3["amount"].equals(tx["amount"])
    assert not gt3["lambda_per_day"].equals(gt["lambda_per_day"])


def test_csv_files_are_byte_identical_across_runs(tmp_path):
    spec = SampleSpec(n_customers=300, seed=3)
    first = write_sample(spec, tmp_path / "a")
    second = write_sample(spec, tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in second]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second))


def test_sizes():
    assert SIZES == {"small": 1_000, "medium": 20_000, "large": 200_000}


def test_invalid_specs_are_rejected(tmp_path):
    with pytest.raises(ValueError):
        SampleSpec(n_customers=0)
    with pytest.raises(ValueError):
        SampleSpec(n_customers=10, start="2024-01-01", end="2023-01-01")
    with pytest.raises(ValueError, match="fmt"):
        write_sample(SampleSpec(n_customers=10), tmp_path, fmt="xlsx")


# --- shape of the data -------------------------------------------------------------------------------------


def test_transactions_schema_and_dtypes(tx):
    assert list(tx.columns) == TRANSACTION_COLUMNS
    assert tx["transaction_date"].dtype == "datetime64[ns]"
    assert (tx["transaction_date"] == tx["transaction_date"].dt.normalize()).all()
    assert tx["amount"].dtype == "float64"
    assert np.allclose(tx["amount"] * 100, np.round(tx["amount"] * 100), atol=1e-6)  # cents
    for col in ("transaction_id", "customer_id", "category", "channel"):
        assert tx[col].map(type).eq(str).all(), col
    assert tx["transaction_id"].str.fullmatch(r"T\d{8}").all()
    assert tx["customer_id"].str.fullmatch(r"C\d{6}").all()
    assert set(tx["category"]) == set(CATEGORIES) and len(CATEGORIES) >= 5
    assert set(tx["channel"]) == set(CHANNELS) and len(CHANNELS) >= 5


def test_ground_truth_schema(gt):
    assert list(gt.columns) == GROUND_TRUTH_COLUMNS
    assert len(gt) == SPEC.n_customers and gt["customer_id"].is_unique
    assert gt["acquisition_date"].dtype == "datetime64[ns]" and gt["dropout_date"].dtype == "datetime64[ns]"
    assert gt["alive_at_end"].dtype == bool
    for col in ("n_orders", "n_purchase_days", "n_refunds"):
        assert pd.api.types.is_integer_dtype(gt[col]), col
    assert (gt["lambda_per_day"] > 0).all()
    assert gt["p_dropout"].between(0, 1, inclusive="neither").all()
    assert (gt["true_mean_spend"] > 0).all()


def test_dates_in_window_ids_unique_and_sorted(tx):
    assert tx["transaction_date"].min() >= pd.Timestamp(SPEC.start)
    assert tx["transaction_date"].max() <= pd.Timestamp(SPEC.end)
    assert tx["transaction_id"].is_unique
    resorted = tx.sort_values(["transaction_date", "transaction_id"], ignore_index=True)
    pd.testing.assert_frame_equal(tx.reset_index(drop=True), resorted)


def test_history_covers_the_window(tx, gt):
    assert tx["transaction_date"].dt.to_period("M").nunique() == 36
    # The shop grows: later years bring more new customers than the first.
    by_year = gt["acquisition_date"].dt.year.value_counts()
    assert by_year[2025] > 1.3 * by_year[2023]
    # ... and holiday months bring more new customers than summer months.
    by_month = gt["acquisition_date"].dt.month.value_counts()
    assert by_month[[11, 12]].sum() > 1.2 * by_month[[6, 7]].sum()


def test_first_transaction_is_a_positive_order_on_the_acquisition_date(tx, gt):
    first_day = tx.groupby("customer_id")["transaction_date"].min()
    acquired = gt.set_index("customer_id")["acquisition_date"]
    assert first_day.index.sort_values().equals(acquired.index.sort_values())  # every customer bought
    pd.testing.assert_series_equal(first_day.sort_index(), acquired.sort_index(), check_names=False)
    on_first_day = tx.merge(first_day.rename("first_day"), left_on="customer_id", right_index=True)
    on_first_day = on_first_day[on_first_day["transaction_date"] == on_first_day["first_day"]]
    assert (on_first_day["amount"] > 0).all()


def test_orders_per_customer_and_values_are_realistic(tx, gt):
    orders = orders_of(tx)
    assert 3.5 <= len(orders) / len(gt) <= 8
    assert orders["amount"].between(5, 500).mean() >= 0.9
    assert orders["amount"].min() >= 1.0
    by_category = orders.groupby("category")["amount"].mean()
    assert by_category["electronics"] > 2 * by_category["books_media"]  # category price levels
    # Customers have preferences: their favourite category takes more than an equal share of their orders.
    regulars = orders.groupby("customer_id").filter(lambda g: len(g) >= 6)
    favourite_share = regulars.groupby("customer_id")["category"].agg(lambda c: c.value_counts().iloc[0] / len(c))
    assert favourite_share.mean() > 2 / len(CATEGORIES)


# --- refunds and same-day orders ---------------------------------------------------------------------------


def test_refunds_exist_at_a_plausible_rate(tx):
    refund_share = (tx["amount"] < 0).sum() / (tx["amount"] > 0).sum()
    assert 0.015 <= refund_share <= 0.045


def test_each_refund_follows_an_order_it_can_refund(tx):
    orders, refunds = orders_of(tx), tx[tx["amount"] < 0]
    pairs = refunds.merge(orders, on=["customer_id", "category"], suffixes=("_r", "_o"))
    delay = pairs["transaction_date_r"] - pairs["transaction_date_o"]
    ok = pairs[(delay >= pd.Timedelta(days=1)) & (delay <= pd.Timedelta(days=30)) & (pairs["amount_o"] >= -pairs["amount_r"])]
    assert set(ok["transaction_id_r"]) == set(refunds["transaction_id"])


def test_refunds_never_exceed_prior_spend(tx):
    daily = tx.assign(spend=tx["amount"].clip(lower=0), refunded=-tx["amount"].clip(upper=0))
    daily = daily.groupby(["customer_id", "transaction_date"])[["spend", "refunded"]].sum().sort_index()
    spent_before = daily.groupby(level="customer_id")["spend"].cumsum() - daily["spend"]
    refunded_so_far = daily.groupby(level="customer_id")["refunded"].cumsum()
    assert (refunded_so_far <= spent_before + 1e-6).all()
    assert (daily["refunded"] > 0).any()


def share_of_days_with_repeat_orders(tx: pd.DataFrame) -> float:
    return (orders_of(tx).groupby(["customer_id", "transaction_date"]).size() > 1).mean()


def test_some_purchase_days_have_a_second_order(tx):
    share = share_of_days_with_repeat_orders(tx)
    assert 0.012 <= share <= 0.05
    # Beyond the purchase process's own same-day orders, the extra-order knob adds some.
    without_extras, _ = simulate(SampleSpec(n_customers=SPEC.n_customers, seed=SPEC.seed, same_day_repeat_rate=0.0))
    assert share > share_of_days_with_repeat_orders(without_extras) + 0.004


# --- behaviour the models rely on --------------------------------------------------------------------------


def test_seasonality_raises_holiday_orders_over_summer_orders():
    """Same customers (same seed), with and without seasonality: holidays gain against summer."""

    def holiday_over_summer(strength: float) -> float:
        tx, _ = simulate(SampleSpec(n_customers=2000, seed=11, seasonality_strength=strength))
        months = orders_of(tx)["transaction_date"].dt.month
        days_in = pd.Series(pd.date_range(SPEC.start, SPEC.end).month).value_counts()
        rate = lambda ms: months.isin(ms).sum() / days_in[ms].sum()  # noqa: E731 - orders per day
        return rate([11, 12]) / rate([6, 7])

    seasonal, flat = holiday_over_summer(1.0), holiday_over_summer(0.0)
    assert seasonal > 1.2 * flat
    assert seasonal > 1.3


def test_channels_differ_in_orders_per_customer(gt):
    per_channel = gt.groupby("channel")["n_orders"].mean()
    assert per_channel["email"] > 1.3 * per_channel["social"]
    assert per_channel["referral"] > 1.3 * per_channel["social"]
    dropout = gt.groupby("channel")["p_dropout"].mean()
    assert dropout["social"] > 1.5 * dropout["referral"]


def test_ground_truth_matches_the_transactions(tx, gt):
    orders = orders_of(tx)
    truth = gt.set_index("customer_id")
    assert (truth["alive_at_end"] == truth["dropout_date"].isna()).all()
    assert 0.05 < (~truth["alive_at_end"]).mean() < 0.95  # some customers leave, some stay
    assert (truth["dropout_date"].dropna() >= truth.loc[truth["dropout_date"].notna(), "acquisition_date"]).all()

    # A customer who dropped out never orders after the dropout date, and dropped out right after an order.
    last_order = orders.groupby("customer_id")["transaction_date"].max()
    dropped = truth[truth["dropout_date"].notna()]
    assert (last_order[dropped.index] == dropped["dropout_date"]).all()

    counts = pd.DataFrame({
        "n_orders": orders.groupby("customer_id").size(),
        "n_purchase_days": orders.groupby("customer_id")["transaction_date"].nunique(),
        "n_refunds": tx[tx["amount"] < 0].groupby("customer_id").size(),
    }).reindex(truth.index).fillna(0).astype("int64")
    pd.testing.assert_frame_equal(counts, truth[["n_orders", "n_purchase_days", "n_refunds"]])


def test_true_parameters_drive_behaviour(gt):
    """Faster buyers buy more; big spenders spend more per order."""
    long_lived = gt[gt["acquisition_date"] < "2023-07-01"]
    fast = long_lived["lambda_per_day"] > long_lived["lambda_per_day"].median()
    assert long_lived.loc[fast, "n_purchase_days"].mean() > 1.5 * long_lived.loc[~fast, "n_purchase_days"].mean()


def test_true_mean_spend_matches_order_values(tx, gt):
    mean_value = orders_of(tx).groupby("customer_id")["amount"].mean()
    truth = gt.set_index("customer_id")["true_mean_spend"].reindex(mean_value.index)
    assert np.corrcoef(np.log(mean_value), np.log(truth))[0, 1] > 0.6
    assert 0.7 < mean_value.sum() / truth.sum() < 1.4


# --- landing files -----------------------------------------------------------------------------------------


def test_write_sample_csv_one_file_per_month_round_trips(tmp_path, sample):
    tx, gt = sample
    landing, gt_path = tmp_path / "landing", tmp_path / "truth" / "gt.parquet"
    paths = write_sample(SPEC, landing, ground_truth_path=gt_path)
    months = [f"{y}-{m:02d}" for y in (2023, 2024, 2025) for m in range(1, 13)]
    assert [p.name for p in paths[:-1]] == [f"transactions_{m}.csv" for m in months]
    assert paths[-1] == gt_path and gt_path.exists()
    assert sorted(p.name for p in landing.iterdir()) == [f"transactions_{m}.csv" for m in months]

    text = paths[0].read_text(encoding="utf-8")
    assert text.splitlines()[0] == ",".join(TRANSACTION_COLUMNS)
    assert re.fullmatch(r"T\d{8},C\d{6},2023-01-\d\d,-?\d+\.\d\d,\w+,\w+", text.splitlines()[1])

    for path, month in zip(paths[:-1], months):
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert raw["transaction_date"].str.fullmatch(rf"{month}-\d\d").all(), path.name
        assert raw["amount"].str.fullmatch(r"-?\d+\.\d\d").all(), path.name
    pd.testing.assert_frame_equal(read_csvs(paths[:-1]), tx.reset_index(drop=True), check_exact=True)
    pd.testing.assert_frame_equal(pd.read_parquet(gt_path), gt)


def test_write_sample_parquet_round_trips(tmp_path, sample):
    tx, _ = sample
    paths = write_sample(SPEC, tmp_path, fmt="parquet")
    assert len(paths) == 36 and all(p.suffix == ".parquet" for p in paths)
    assert str(pq.read_schema(paths[0]).field("transaction_date").type) == "date32[day]"
    back = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    back["transaction_date"] = pd.to_datetime(back["transaction_date"])
    pd.testing.assert_frame_equal(back, tx.reset_index(drop=True), check_exact=True)


def test_write_sample_removes_stale_generated_files_only(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    for name in ("transactions_2019-01.csv", "transactions_2019-02.parquet", "notes.txt", "_SAMPLE_SPEC.json", "my_transactions_export.csv"):
        (landing / name).write_text("x")

    write_sample(SampleSpec(n_customers=200, seed=1), landing)
    names = {p.name for p in landing.iterdir()}
    assert "transactions_2019-01.csv" not in names and "transactions_2019-02.parquet" not in names
    assert {"notes.txt", "_SAMPLE_SPEC.json", "my_transactions_export.csv"} <= names

    # A second, shorter sample in another format replaces the first entirely.
    short = SampleSpec(n_customers=200, seed=1, start="2024-01-01", end="2024-06-30")
    written = write_sample(short, landing, fmt="parquet")
    generated = sorted(p.name for p in landing.glob("transactions_*"))
    assert generated == sorted(p.name for p in written) == [f"transactions_2024-{m:02d}.parquet" for m in range(1, 7)]


def test_generate_large_writes_monthly_parquet_in_chunks_deterministically(tmp_path):
    from clv_assets.sample_data import generate_large

    spec = SampleSpec(n_customers=1_200, start="2023-01-01", end="2023-06-30", seed=3)
    stats = generate_large(spec, tmp_path / "a", chunk_customers=500)  # three chunks
    files = sorted((tmp_path / "a").glob("transactions_*.parquet"))
    assert [f.name for f in files] == [f"transactions_2023-0{m}.parquet" for m in range(1, 7)]
    tx = pd.concat([pq.read_table(f).to_pandas() for f in files])
    assert stats["rows"] == len(tx) and stats["files"] == 6 and stats["customers"] == 1_200
    assert tx["transaction_id"].is_unique
    assert tx["customer_id"].nunique() <= 1_200 and tx["customer_id"].str.fullmatch(r"C\d{6}").all()
    for f in files:  # every row sits in its month's file
        part = pq.read_table(f).to_pandas()
        assert (pd.to_datetime(part["transaction_date"]).dt.strftime("%Y-%m") == f.stem.removeprefix("transactions_")).all()
    again = generate_large(spec, tmp_path / "b", chunk_customers=500)
    assert again == {**stats, "bytes": again["bytes"]}
    assert pd.concat([pq.read_table(f).to_pandas() for f in sorted((tmp_path / "b").glob("*.parquet"))]).equals(tx)
