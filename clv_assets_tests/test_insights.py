"""CLV insights and the business summary by hand on eleven customers."""

import pytest

from clv_assets import insights
from clv_assets_tests.conftest import d

MARGIN = 0.2
AS_OF = d("2024-12-31")
# customer, predicted CLV, churn probability, RFM segment, channel. Products of CLV and churn are exact in
# binary floating point; c09 has a segment from another RFM system; c11 only has a refund (no prediction).
CUSTOMERS = [
    ("c01", 100.0, 0.125, "Champions", "web"),
    ("c02", 90.0, 0.75, "Hibernating", "web"),
    ("c03", 80.0, 0.5, "Loyal", "store"),
    ("c04", 70.0, 0.25, "New", "store"),
    ("c05", 60.0, 0.625, "At Risk", "web"),
    ("c06", 50.0, 0.875, "Champions", "store"),
    ("c07", 40.0, 0.375, "Promising", "web"),
    ("c08", 30.0, 0.75, "Lost", "web"),
    ("c09", 20.0, 0.25, "VIP-custom", "store"),
    ("c10", 10.0, 0.9375, "Need Attention", "web"),
    ("c11", None, None, None, "web"),
]
# c01 buys books 300 and toys 100; c02..c10 buy books for 100 x their number; c11 returns a toy (-50).
TRANSACTIONS = [("c01", "books", 300.0), ("c01", "toys", 100.0), ("c11", "toys", -50.0)] + [
    (f"c{i:02d}", "books", 100.0 * i) for i in range(2, 11)
]


@pytest.fixture(scope="module")
def frames(spark):
    tx = spark.createDataFrame([(c, cat, a, d("2024-06-01")) for c, cat, a in TRANSACTIONS],
                               "customer_id string, category string, amount double, transaction_date date")
    net = {}
    for c, _, a in TRANSACTIONS:
        net[c] = net.get(c, 0.0) + a
    hist = spark.createDataFrame(
        [(c, ch, 0 if c == "c11" else 1, net[c], MARGIN, MARGIN * net[c]) for c, _, _, _, ch in CUSTOMERS],
        "customer_id string, acquisition_channel string, num_orders long, net_revenue double, profit_margin double, historical_clv double",
    )
    metrics = spark.createDataFrame([(c, None if c == "c11" else 10 * i, AS_OF) for i, (c, *_) in enumerate(CUSTOMERS)],
                                    "customer_id string, recency_days int, as_of_date date")
    preds = spark.createDataFrame([(c, p / MARGIN, p, 1 - ch, ch) for c, p, ch, _, _ in CUSTOMERS if p is not None],
                                  "customer_id string, predicted_revenue double, predicted_clv double, probability_alive double, churn_probability double")
    rfm = spark.createDataFrame([(c, s, "computed", "111") for c, _, _, s, _ in CUSTOMERS if s is not None],
                                "customer_id string, segment string, segment_source string, rfm_score string")
    return tx, hist, metrics, preds, rfm


def build(frames, rules=insights.InsightRules()):
    tx, hist, metrics, preds, rfm = frames
    return insights.customer_insights(hist, metrics, preds, rfm, insights.primary_categories(tx), rules)


@pytest.fixture(scope="module")
def table(frames):
    return {r.customer_id: r for r in build(frames).collect()}


def test_tiers_from_quantiles(table):
    # 11 values 0, 10, ..., 100: quantiles 0.9 -> 90, 0.7 -> 70, 0.4 -> 40; a tier starts above its quantile.
    assert {c: r.clv_tier for c, r in table.items()} == {
        "c01": "Platinum", "c02": "Gold", "c03": "Gold", "c04": "Silver", "c05": "Silver", "c06": "Silver",
        "c07": "Bronze", "c08": "Bronze", "c09": "Bronze", "c10": "Bronze", "c11": "Bronze"}


def test_tiers_from_amounts_and_other_bases(frames):
    got = {r.customer_id: r.clv_tier for r in build(frames, insights.InsightRules(tier_thresholds=(90, 60, 30))).collect()}
    assert [got[f"c{i:02d}"] for i in range(1, 12)] == ["Platinum", "Platinum", "Gold", "Gold", "Gold", "Silver", "Silver",
                                                         "Silver", "Bronze", "Bronze", "Bronze"]
    # On historical CLV (0.2 x net revenue: c01 80, c02..c10 20 x number, c11 -10) the order reverses.
    by_history = {r.customer_id: r for r in build(frames, insights.InsightRules(tier_basis="historical_clv")).collect()}
    assert by_history["c10"].clv_tier == "Platinum" and by_history["c11"].clv_tier == "Bronze"
    assert by_history["c10"].tier_basis == "historical_clv"
    total = {r.customer_id: r.total_clv for r in build(frames).collect()}
    assert total["c01"] == pytest.approx(80 + 100) and total["c11"] == pytest.approx(-10)


def test_segment_alignment(table, frames):
    assert table["c01"].clv_segment_alignment == "Aligned"                      # Platinum, Champions: both High
    assert table["c03"].clv_segment_alignment == "Aligned"                      # Gold, Loyal
    assert table["c02"].clv_segment_alignment == "Mismatch: CLV above its RFM segment (Gold tier, Hibernating)"
    assert table["c04"].clv_segment_alignment == "Mismatch: CLV above its RFM segment (Silver tier, New)"
    assert table["c06"].clv_segment_alignment == "Mismatch: CLV below its RFM segment (Silver tier, Champions)"
    assert table["c10"].clv_segment_alignment == "Mismatch: CLV below its RFM segment (Bronze tier, Need Attention)"
    assert table["c05"].clv_segment_alignment == "Aligned"                      # Silver, At Risk: both Medium
    assert table["c08"].clv_segment_alignment == "Aligned"                      # Bronze, Lost
    assert table["c09"].clv_segment_alignment == "Not assessed: no value level for segment 'VIP-custom'"
    assert table["c11"].clv_segment_alignment == "Not assessed: no RFM segment (no purchase)"
    custom = {r.customer_id: r for r in build(frames, insights.InsightRules(segment_value_levels={"VIP-custom": "High"})).collect()}
    assert custom["c09"].clv_segment_alignment == "Mismatch: CLV below its RFM segment (Bronze tier, VIP-custom)"


def test_retention_priority(table):
    # Scores (CLV x churn): c01 12.5, c02 67.5, c03 40, c04 17.5, c05 37.5, c06 43.75, c07 15, c08 22.5, c09 5,
    # c10 9.375, c11 0. Positive scores: 0.8 quantile 40, median 17.5.
    assert table["c02"].retention_priority_score == 67.5 and table["c11"].retention_priority_score == 0.0
    levels = {c: r.retention_priority for c, r in table.items()}
    assert {c for c, v in levels.items() if v == "High"} == {"c02", "c06"}
    assert {c for c, v in levels.items() if v == "Medium"} == {"c03", "c05", "c08"}
    assert {c for c, v in levels.items() if v == "Low"} == {"c01", "c04", "c07", "c09", "c10", "c11"}


def test_recommended_actions(table):
    expected = {
        "c01": "Retain and reward", "c02": "Win back now", "c03": "Win back now", "c04": "Nurture",
        "c05": "Reactivate", "c06": "Reactivate", "c07": "Onboard", "c08": "Low-cost automated win-back",
        "c09": "Maintain at low cost", "c10": "Low-cost automated win-back", "c11": "No purchase yet (refunds only)",
    }
    assert {c: r.recommended_action.split(":")[0].split(";")[0] for c, r in table.items()} == expected
    assert {c for c, r in table.items() if r.likely_to_churn} == {"c02", "c03", "c05", "c06", "c08", "c10"}


def test_customer_fields(table):
    assert table["c01"].primary_category == "books" and table["c11"].primary_category == "unknown"
    assert table["c03"].acquisition_channel == "store" and table["c03"].recency_days == 20
    assert table["c11"].predicted_clv is None and table["c11"].historical_clv == pytest.approx(-10.0)
    assert insights.INSIGHT_COLUMNS == list(next(iter(table.values())).asDict())


def test_summary_by_hand(frames):
    tx = frames[0]
    summary = insights.summary_table(build(frames), tx, MARGIN, top_n=3).toPandas()
    rows = {(r.section, r.name): r for r in summary.itertuples()}
    total = rows[("total", "all customers")]
    hist_total = MARGIN * (400 + sum(100 * i for i in range(2, 11)) - 50)
    assert (total.customers, total.predicted_clv) == (11, pytest.approx(550.0))
    assert total.historical_clv == pytest.approx(hist_total) and total.total_value == pytest.approx(hist_total + 550)
    assert total.avg_predicted_clv == pytest.approx(550 / 11) and total.share_of_predicted_clv == pytest.approx(1.0)
    tiers = {name: (r.customers, r.predicted_clv) for (s, name), r in rows.items() if s == "tier"}
    assert tiers == {"Platinum": (1, 100), "Gold": (2, 170), "Silver": (3, 180), "Bronze": (5, 100)}
    channels = {name: (r.customers, r.predicted_clv) for (s, name), r in rows.items() if s == "acquisition_channel"}
    assert channels == {"web": (7, 330), "store": (4, 220)}
    # Categories: books = 0.2 x (300 + 100 x (2 + ... + 10)); toys = 0.2 x (100 - 50). c01's 100 of predicted
    # CLV splits 3:1 by its purchases; c11's refund counts in toys' history but c11 bought nothing there.
    books, toys = rows[("category", "books")], rows[("category", "toys")]
    assert (books.customers, books.historical_clv, books.predicted_clv) == (10, pytest.approx(MARGIN * 5700), pytest.approx(525))
    assert (toys.customers, toys.historical_clv, toys.predicted_clv) == (1, pytest.approx(10.0), pytest.approx(25))
    assert books.share_of_predicted_clv == pytest.approx(525 / 550)
    risk = rows[("revenue_at_risk", "likely to churn")]
    assert (risk.customers, risk.predicted_clv) == (6, pytest.approx(90 + 80 + 60 + 50 + 30 + 10))
    top = summary[summary.section == "top_customer"]
    assert list(top.name) == ["c01", "c02", "c03"] and list(top["rank"]) == [1, 2, 3]
    assert list(summary.section.drop_duplicates()) == insights.SECTIONS
    assert list(summary.columns) == insights.SUMMARY_COLUMNS


def test_rules_are_validated():
    with pytest.raises(ValueError, match="tier_basis"):
        insights.InsightRules(tier_basis="revenue")
    with pytest.raises(ValueError, match="descending"):
        insights.InsightRules(tier_thresholds=(10, 20, 30))
    with pytest.raises(ValueError, match="High, Medium or Low"):
        insights.InsightRules(segment_value_levels={"VIP": "Top"})


def test_distribution_chart_is_a_png():
    import numpy as np

    png = insights.clv_distribution_png(np.array([0.0, 1.0, 5.0, 50.0, 500.0]), {"Platinum": 50.0}, "predicted_clv")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000


@pytest.mark.slow
def test_cli_integrated_with_supplied_segments(tmp_path, monkeypatch):
    """The whole chain on generated data, checked against pandas: tiers from the predictions' quantiles, the
    summary's totals, channel and category sums, and the supplied segments in use."""
    import numpy as np
    import pandas as pd
    from click.testing import CliRunner

    from clv_assets.cli import main
    from clv_assets.sample_data import SampleSpec, write_sample

    landing = tmp_path / "landing"
    write_sample(SampleSpec(n_customers=600, seed=5), landing)
    raw = pd.concat(pd.read_csv(p) for p in sorted(landing.glob("*.csv")))
    ids = sorted(raw["customer_id"].unique())
    pd.DataFrame({"customer_id": ids[::2], "segment": "VIP-custom"}).to_csv(tmp_path / "segments.csv", index=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    args = ["integrated", "--transactions", str(landing), "--rfm-segments-path", str(tmp_path / "segments.csv"),
            "--warehouse", str(tmp_path / "wh"), "--output", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "revenue at risk" in result.output and "By CLV tier" in result.output and "Top customers" in result.output

    out = {t: pd.read_parquet(tmp_path / f"out/{t}.parquet") for t in ("clv_insights", "clv_summary", "clv_predictions")}
    table, summary = out["clv_insights"].set_index("customer_id"), out["clv_summary"]
    assert sorted(table.index) == ids
    predicted = out["clv_predictions"].set_index("customer_id")["predicted_clv"].reindex(ids).fillna(0.0)
    q90, q70, q40 = np.quantile(predicted, [0.9, 0.7, 0.4], method="inverted_cdf")
    expected = np.select([predicted <= 0, predicted > q90, predicted > q70, predicted > q40], ["Bronze", "Platinum", "Gold", "Silver"], "Bronze")
    assert (table.loc[ids, "clv_tier"].to_numpy() == expected).all()
    assert (table.loc[ids[::2], "segment"] == "VIP-custom").all()
    assert table.loc[ids[::2], "clv_segment_alignment"].str.startswith("Not assessed").all()
    total = summary[summary.section == "total"].iloc[0]
    assert total.customers == len(ids) and total.predicted_clv == pytest.approx(predicted.sum())
    for section in ("tier", "acquisition_channel", "category"):
        assert summary[summary.section == section].predicted_clv.sum() == pytest.approx(predicted.sum()), section
    at_risk = table[table.churn_probability >= 0.5]
    risk = summary[summary.section == "revenue_at_risk"].iloc[0]
    assert (risk.customers, risk.predicted_clv) == (len(at_risk), pytest.approx(at_risk.predicted_clv.sum()))
    net_by_category = raw.assign(category=raw["category"].fillna("unknown")).groupby("category")["amount"].sum() * 0.2
    got = summary[summary.section == "category"].set_index("name")["historical_clv"]
    assert got.to_dict() == pytest.approx(net_by_category.to_dict())
