"""RFM scores by hand on ten customers, the named-segment map, and supplied segments with their validation."""

import dagster as dg
import pandas as pd
import pytest

from clv_assets import rfm
from clv_assets_tests.conftest import d

# customer, recency_days, num_orders, net_revenue: ties on recency (c02/c03), frequency (c07-c09) and
# monetary (c07/c08); c10 only has a refund (no purchase: no recency).
CUSTOMERS = [
    ("c01", 0, 10, 1000.0),
    ("c02", 5, 8, 800.0),
    ("c03", 5, 6, 600.0),
    ("c04", 30, 4, 400.0),
    ("c05", 60, 3, 300.0),
    ("c06", 90, 2, 200.0),
    ("c07", 120, 1, 100.0),
    ("c08", 200, 1, 100.0),
    ("c09", 365, 1, 50.0),
    ("c10", None, 0, -20.0),
]


@pytest.fixture(scope="module")
def metrics_df(spark):
    rows = [(c, r, n, m, d("2024-12-31")) for c, r, n, m in CUSTOMERS]
    return spark.createDataFrame(rows, "customer_id string, recency_days int, num_orders long, net_revenue double, as_of_date date")


@pytest.fixture(scope="module")
def scores(metrics_df):
    return rfm.rfm_scores(metrics_df).cache()


def by_customer(df):
    return {r.customer_id: r for r in df.collect()}


def test_quintile_scores_by_hand(scores):
    got = by_customer(scores)
    # score = 1 + floor(5 x share strictly worse), 10 customers: 1 + floor(worse / 2).
    # R (worst first: no purchase, 365, 200, 120, 90, 60, 30, 5, 5, 0): c02/c03 tie with 7 worse -> 4.
    assert {c: r.r_score for c, r in got.items()} == {
        "c10": 1, "c09": 1, "c08": 2, "c07": 2, "c06": 3, "c05": 3, "c04": 4, "c03": 4, "c02": 4, "c01": 5}
    # F: 0 orders (0 worse) -> 1; the three one-order customers (1 worse) -> 1; 2 orders (4 worse) -> 3 ...
    assert {c: r.f_score for c, r in got.items()} == {
        "c10": 1, "c09": 1, "c08": 1, "c07": 1, "c06": 3, "c05": 3, "c04": 4, "c03": 4, "c02": 5, "c01": 5}
    # M: -20 -> 1, 50 -> 1, 100 twice (2 worse) -> 2, 200 (4 worse) -> 3 ...
    assert {c: r.m_score for c, r in got.items()} == {
        "c10": 1, "c09": 1, "c08": 2, "c07": 2, "c06": 3, "c05": 3, "c04": 4, "c03": 4, "c02": 5, "c01": 5}
    assert got["c01"].rfm_score == "555" and got["c07"].rfm_score == "212"
    assert (got["c03"].frequency, got["c03"].monetary, got["c03"].recency_days) == (6, 600.0, 5)
    assert scores.columns == rfm.RFM_COLUMNS


def test_named_segments(scores):
    got = by_customer(scores)
    assert {c: r.segment for c, r in got.items()} == {
        "c01": "Champions",  # R5 F5
        "c02": "Loyal",  # R4 F5
        "c03": "Loyal", "c04": "Loyal",  # R4 F4
        "c05": "Need Attention", "c06": "Need Attention",  # R3 F3
        "c07": "Hibernating", "c08": "Hibernating",  # R2 F1
        "c09": "Lost", "c10": "Lost",  # R1 F1
    }
    assert all(r.segment == r.computed_segment and r.segment_source == "computed" for r in got.values())


def test_segment_map_covers_every_cell_with_the_eleven_segments():
    cells = {(r, f): rfm.segment_of(r, f) for r in range(1, 6) for f in range(1, 6)}
    assert len(cells) == 25 and set(cells.values()) == set(rfm.SEGMENTS) and len(rfm.SEGMENTS) == 11
    expected = {
        (5, 1): "New", (4, 1): "Promising", (5, 2): "Potential Loyalists", (4, 3): "Potential Loyalists",
        (5, 4): "Champions", (3, 5): "Loyal", (3, 3): "Need Attention", (3, 2): "About to Sleep",
        (2, 3): "At Risk", (1, 4): "At Risk", (1, 5): "Cannot Lose Them", (2, 5): "Cannot Lose Them",
        (2, 2): "Hibernating", (1, 2): "Hibernating", (1, 1): "Lost",
    }
    assert {k: cells[k] for k in expected} == expected


def test_threshold_scores_by_hand(metrics_df):
    got = by_customer(rfm.rfm_scores(metrics_df, [30, 90, 180, 365], [2, 3, 5, 10], [100, 250, 500, 900]))
    assert {c: (r.r_score, r.f_score, r.m_score) for c, r in got.items()} == {
        "c01": (5, 5, 5), "c02": (5, 4, 4), "c03": (5, 4, 4), "c04": (5, 3, 3), "c05": (4, 3, 3),
        "c06": (4, 2, 2), "c07": (3, 1, 2), "c08": (2, 1, 2), "c09": (2, 1, 1), "c10": (1, 1, 1)}
    with pytest.raises(ValueError, match="frequency thresholds"):
        rfm.rfm_scores(metrics_df, frequency_thresholds=[3, 2, 5, 10])


# --------------------------------------------------------------------------------------------- supplied
def write_csv(tmp_path, text, name="segments.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def supplied(spark, scores, path, strict=False):
    return rfm.apply_supplied_segments(scores, rfm.read_supplied_segments(spark, path), path, strict=strict)


def test_supplied_segments_replace_computed_ones_and_gaps_are_reported(spark, scores, tmp_path):
    path = write_csv(tmp_path, "customer_id,segment\nc01,VIP\n c02 ,Regular\nc99,Ghost\nc03,\n")
    result, report = supplied(spark, scores, path)
    got = by_customer(result)
    assert (got["c01"].segment, got["c01"].segment_source, got["c01"].computed_segment) == ("VIP", "supplied", "Champions")
    assert (got["c02"].segment, got["c02"].segment_source) == ("Regular", "supplied")  # id trimmed
    assert (got["c03"].segment, got["c03"].segment_source) == ("Loyal", "computed")  # blank in the file
    assert len(got) == 10 and "c99" not in got
    assert (report.rows, report.unknown_customers, report.rows_without_segment, report.customers_supplied,
            report.customers_without_supplied_segment) == (4, 1, 1, 2, 8)
    assert report.examples["unknown_customers"] == ["c99"]
    assert report.examples["customers_without_supplied_segment"] == ["c03", "c04", "c05", "c06", "c07"]

    with pytest.raises(rfm.SuppliedSegmentsError, match=r"segments\.csv.*strict.*unknown customers: 1"):
        supplied(spark, scores, path, strict=True)


def test_supplied_parquet_with_other_column_case(spark, scores, tmp_path):
    path = str(tmp_path / "segments.parquet")
    pd.DataFrame({"Customer_ID": [f"c{i:02d}" for i in range(1, 11)], "SEGMENT": ["A"] * 5 + ["B"] * 5}).to_parquet(path)
    result, report = supplied(spark, scores, path, strict=True)
    assert (report.customers_supplied, report.customers_without_supplied_segment, report.unknown_customers) == (10, 0, 0)
    assert {r.customer_id: r.segment for r in result.collect()}["c07"] == "B"
    assert {r.segment_source for r in result.collect()} == {"supplied"}


def test_supplied_segments_errors_name_the_file(spark, scores, tmp_path):
    missing = write_csv(tmp_path, "customer_id,rfm_segment\nc01,VIP\n", "missing_col.csv")
    with pytest.raises(rfm.SuppliedSegmentsError, match=r"missing_col\.csv.*missing segment.*columns found: customer_id, rfm_segment"):
        supplied(spark, scores, missing)

    dupes = write_csv(tmp_path, "customer_id,segment\nc01,VIP\nc02,X\nc01,Regular\n", "dupes.csv")
    with pytest.raises(rfm.SuppliedSegmentsError, match=r"dupes\.csv: 1 customer id\(s\) appear more than once.*c01 \(2x\)"):
        supplied(spark, scores, dupes)

    nobody = write_csv(tmp_path, "customer_id,segment\n1,VIP\n2,X\n", "other_ids.csv")
    with pytest.raises(rfm.SuppliedSegmentsError, match=r"other_ids\.csv: none of its 2 rows.*ids formatted differently"):
        supplied(spark, scores, nobody)

    with pytest.raises(rfm.SuppliedSegmentsError, match=r"nowhere\.csv: supplied RFM segments file not found"):
        supplied(spark, scores, str(tmp_path / "nowhere.csv"))


def test_asset_uses_the_file_from_the_environment(metrics_df, tmp_path, monkeypatch):
    from clv_assets.defs.segments import RfmConfig, rfm_segments

    path = write_csv(tmp_path, "customer_id,segment\nc01,VIP\nc42,Ghost\n")
    monkeypatch.setenv(rfm.SEGMENTS_PATH_ENV, path)
    context = dg.build_asset_context()
    result = rfm_segments(context=context, config=RfmConfig(), customer_metrics=metrics_df)
    got = by_customer(result)
    assert (got["c01"].segment, got["c01"].segment_source) == ("VIP", "supplied")
    assert (got["c02"].segment, got["c02"].segment_source) == ("Loyal", "computed")

    monkeypatch.delenv(rfm.SEGMENTS_PATH_ENV)
    computed = by_customer(rfm_segments(context=dg.build_asset_context(), config=RfmConfig(), customer_metrics=metrics_df))
    assert computed["c01"].segment == "Champions" and computed["c01"].segment_source == "computed"


def test_schema_check_accepts_refund_only_customers(scores):
    from clv_assets.quality import check_table

    report = check_table(scores, "rfm_segments", unique_key="customer_id")
    assert report.passed, report.failing
    assert report.rows == len(CUSTOMERS)
