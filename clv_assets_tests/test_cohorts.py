"""Cohorts: hand-computed on the tiny fixture, against an independent DuckDB + pandas computation on generated
data for monthly, quarterly and yearly cohorts, and through Dagster (one-run backfill, one-partition re-run,
empty partitions, the retention report, the CLI)."""

import base64
import datetime as dt

import dagster as dg
import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner

from clv_assets import cohorts, metrics
from clv_assets.landing import LandingZone
from clv_assets.partitions import monthly_partitions, quarterly_partitions, yearly_partitions
from clv_assets.storage import SparkParquetIOManager
from clv_assets_tests.conftest import d

def _inputs(transactions, as_of=None, margin=0.25):
    as_of = metrics.resolve_as_of(transactions, as_of)
    cm = metrics.customer_metrics(transactions, as_of)
    return cohorts.monthly_activity(transactions, as_of), cm, metrics.historical_clv(cm, margin)


def _rows(df):
    return sorted((r.asDict() for r in df.collect()), key=lambda r: (r["cohort_start"], r["period_number"]))


# ----------------------------------------------------------------------------------------------- by hand
def test_monthly_cohorts_by_hand(tiny_transactions):
    rows = _rows(cohorts.cohort_table(*_inputs(tiny_transactions), "monthly"))
    # A (Jan 5) and B (Jan 20) form the January cohort; C only has a refund: no first purchase, no cohort.
    assert [(r["cohort_label"], r["period_number"]) for r in rows] == [("2023-01", 0), ("2023-01", 1), ("2023-01", 2)]
    first = rows[0]
    assert first["cohort_size"] == 2
    assert first["total_revenue"] == pytest.approx(180.0 + 40.0)
    assert first["avg_clv"] == pytest.approx((45.0 + 10.0) / 2)  # margin 0.25
    assert first["avg_orders_per_customer"] == pytest.approx(6 / 2)  # A 4 orders, B 2
    assert first["avg_order_value"] == pytest.approx(240.0 / 6)  # gross purchases / orders
    assert first["months_tracked"] == 3 and first["as_of_date"] == d("2023-03-31")
    # Mar 31 is the as-of date and March's last day: March (period 2) is the last complete period.
    assert (first["retention_period_number"], first["retention_rate"], first["churn_rate"]) == (2, 1.0, 0.0)
    assert first["repeat_rate"] == 1.0
    # Jan: A+A+B = 150; Feb: A 50 - refund 20 = 30, only A buys; Mar: A 30 + B 10.
    assert [r["active_customers"] for r in rows] == [2, 1, 2]
    assert [r["retention"] for r in rows] == [1.0, 0.5, 1.0]
    assert [r["revenue"] for r in rows] == pytest.approx([150.0, 30.0, 40.0])
    assert [r["cumulative_revenue_per_customer"] for r in rows] == pytest.approx([75.0, 90.0, 110.0])
    assert [r["period_start"] for r in rows] == [d("2023-01-01"), d("2023-02-01"), d("2023-03-01")]
    assert all(r["period_complete"] for r in rows)
    assert list(rows[0]) == cohorts.COHORT_COLUMNS


def test_monthly_activity_by_hand(tiny_transactions):
    rows = sorted((tuple(r) for r in cohorts.monthly_activity(tiny_transactions, d("2023-03-20")).collect()), key=lambda r: r[:2])
    # B's Mar 31 order is after the as-of date; A's February nets a refund; C (refund only) has no first purchase.
    assert rows == [
        ("A", d("2023-01-01"), d("2023-01-01"), 2, 120.0, 120.0, d("2023-03-20")),
        ("A", d("2023-02-01"), d("2023-01-01"), 1, 50.0, 30.0, d("2023-03-20")),
        ("A", d("2023-03-01"), d("2023-01-01"), 1, 30.0, 30.0, d("2023-03-20")),
        ("B", d("2023-01-01"), d("2023-01-01"), 1, 30.0, 30.0, d("2023-03-20")),
        ("C", d("2023-03-01"), None, 0, 0.0, -15.0, d("2023-03-20")),
    ]
    assert cohorts.monthly_activity(tiny_transactions, d("2023-03-20")).columns == cohorts.ACTIVITY_COLUMNS


def test_no_as_of_date_no_customer_gives_an_empty_activity(tiny_transactions):
    empty = cohorts.monthly_activity(tiny_transactions, None)
    assert empty.count() == 0 and empty.columns == cohorts.ACTIVITY_COLUMNS


def test_activity_of_another_as_of_date_is_refused(tiny_transactions):
    _, cm, clv = _inputs(tiny_transactions)
    stale = cohorts.monthly_activity(tiny_transactions, d("2023-03-20"))
    with pytest.raises(ValueError, match="as of 2023-03-20 but the customer metrics as of 2023-03-31.*customer_monthly_activity"):
        cohorts.cohort_table(stale, cm, clv, "monthly")


def test_mid_period_as_of_and_young_cohorts(tiny_transactions):
    rows = _rows(cohorts.cohort_table(*_inputs(tiny_transactions, as_of="2023-03-20"), "monthly"))
    # March is incomplete on Mar 20: retention is measured in February (period 1), where only A bought.
    assert [r["period_complete"] for r in rows] == [True, True, False]
    assert (rows[0]["retention_period_number"], rows[0]["retention_rate"], rows[0]["churn_rate"]) == (1, 0.5, 0.5)
    assert [r["active_customers"] for r in rows] == [2, 1, 1]  # B's Mar 31 order is after the as-of date
    # A quarterly cohort observed only in its own quarter has no retention rate yet.
    (q,) = _rows(cohorts.cohort_table(*_inputs(tiny_transactions), "quarterly"))
    assert (q["cohort_label"], q["cohort_size"], q["retention_rate"], q["churn_rate"]) == ("2023-Q1", 2, None, None)
    assert q["revenue"] == pytest.approx(220.0) and q["repeat_rate"] == 0.0


def test_a_window_without_customers_is_empty(tiny_transactions):
    empty = cohorts.cohort_table(*_inputs(tiny_transactions), "monthly", d("2023-02-01"), d("2023-04-01"))
    assert empty.count() == 0 and empty.columns == cohorts.COHORT_COLUMNS


def test_period_helpers():
    assert cohorts.last_complete_period_start(d("2025-12-31"), "quarterly") == d("2025-10-01")
    assert cohorts.last_complete_period_start(d("2025-12-30"), "quarterly") == d("2025-07-01")
    assert cohorts.last_complete_period_start(d("2024-03-01"), "yearly") == d("2023-01-01")
    assert cohorts.period_start(d("2024-11-15"), "quarterly") == d("2024-10-01")
    with pytest.raises(ValueError, match="weekly"):
        cohorts.period_start(d("2024-11-15"), "weekly")


# ------------------------------------------------------------------------------ independent: DuckDB + pandas
@pytest.fixture(scope="module")
def generated(spark):
    from pyspark.sql import functions as F

    from clv_assets.sample_data import SampleSpec, simulate

    raw, _ = simulate(SampleSpec(n_customers=800))
    raw["transaction_date"] = raw["transaction_date"].dt.date
    tx = spark.createDataFrame(raw).withColumn("transaction_date", F.col("transaction_date").cast("date"))
    return raw, tx.withColumn("transaction_month", F.trunc("transaction_date", "month")).cache()


def expected_cohorts(raw: pd.DataFrame, period: str, as_of: dt.date, margin: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cohort summary and curve with DuckDB SQL and pandas Periods, from the raw transactions only."""
    freq = {"monthly": "M", "quarterly": "Q", "yearly": "Y"}[period]
    unit = {"monthly": "month", "quarterly": "quarter", "yearly": "year"}[period]
    con = duckdb.connect()
    con.register("raw", raw)
    customers = con.execute(f"""
        with tx as (select * from raw where transaction_date <= ?)
        select customer_id, date_trunc('{unit}', min(transaction_date) filter (where amount > 0))::date as cohort,
               count(*) filter (where amount > 0) as orders, coalesce(sum(amount) filter (where amount > 0), 0) as gross,
               sum(amount) as net
        from tx group by customer_id having count(*) filter (where amount > 0) > 0
    """, [as_of]).df()
    customers["cohort"] = pd.to_datetime(customers["cohort"]).dt.date
    con.register("customers", customers)
    activity = con.execute("""
        select c.cohort, c.customer_id, t.transaction_date as day, t.amount
        from raw t join customers c using (customer_id) where t.transaction_date <= ?
    """, [as_of]).df()
    con.close()

    activity["cohort"] = pd.to_datetime(activity["cohort"]).dt.date
    cohort_p = activity["cohort"].map(lambda x: pd.Period(x, freq))
    activity["k"] = [max(0, (pd.Period(day, freq) - c).n) for day, c in zip(activity["day"], cohort_p)]
    as_of_p = pd.Period(as_of, freq)
    last_complete = as_of_p if as_of == as_of_p.end_time.date() else as_of_p - 1

    summary = customers.groupby("cohort").agg(size=("customer_id", "count"), revenue=("net", "sum"),
                                              orders=("orders", "sum"), gross=("gross", "sum"))
    summary["avg_clv"] = summary["revenue"] / summary["size"] * margin
    summary["avg_orders"] = summary["orders"] / summary["size"]
    summary["aov"] = summary["gross"] / summary["orders"]
    purchases = activity[activity["amount"] > 0]
    summary["repeat_rate"] = purchases[purchases["k"] >= 1].groupby("cohort")["customer_id"].nunique().reindex(summary.index).fillna(0) / summary["size"]
    summary["months_tracked"] = [(pd.Period(as_of, "M") - pd.Period(c, "M")).n + 1 for c in summary.index]

    curve_rows = []
    for cohort, size in summary["size"].items():
        mine = activity[activity["cohort"] == cohort]
        cumulative = 0.0
        for k in range((as_of_p - pd.Period(cohort, freq)).n + 1):
            at_k = mine[mine["k"] == k]
            cumulative += at_k["amount"].sum()
            curve_rows.append({"cohort": cohort, "k": k, "active": at_k.loc[at_k["amount"] > 0, "customer_id"].nunique(),
                               "revenue": at_k["amount"].sum(), "cum_per_customer": cumulative / size})
    curve = pd.DataFrame(curve_rows).set_index(["cohort", "k"])
    curve["retention"] = curve["active"] / summary["size"].reindex(curve.index.get_level_values(0)).to_numpy()
    summary["retention_k"] = [(last_complete - pd.Period(c, freq)).n for c in summary.index]
    summary["retention_rate"] = [
        curve.loc[(c, k), "retention"] if k >= 1 else None for c, k in summary["retention_k"].items()
    ]
    return summary, curve


def test_monthly_activity_matches_duckdb(generated):
    raw, tx = generated
    as_of = d("2025-08-15")
    got = cohorts.monthly_activity(tx, as_of).toPandas().set_index(["customer_id", "activity_month"]).sort_index()
    expected = duckdb.sql("""
        select customer_id, date_trunc('month', transaction_date)::date as activity_month,
               count(*) filter (where amount > 0) as orders, coalesce(sum(amount) filter (where amount > 0), 0) as gross,
               sum(amount) as net,
               min(min(date_trunc('month', transaction_date)) filter (where amount > 0)) over (partition by customer_id)::date as first_month
        from raw where transaction_date <= '2025-08-15' group by 1, 2
    """).df()
    expected["activity_month"] = pd.to_datetime(expected["activity_month"]).dt.date
    expected["first_month"] = [None if pd.isna(v) else pd.Timestamp(v).date() for v in expected["first_month"]]
    expected = expected.set_index(["customer_id", "activity_month"]).sort_index()
    assert list(got.index) == list(expected.index)
    assert got["orders"].tolist() == expected["orders"].tolist()
    assert got["gross_revenue"].to_numpy() == pytest.approx(expected["gross"].to_numpy(dtype=float), abs=1e-6)
    assert got["net_revenue"].to_numpy() == pytest.approx(expected["net"].to_numpy(dtype=float), abs=1e-6)
    assert got["first_purchase_month"].tolist() == expected["first_month"].tolist()
    assert (got["as_of_date"] == as_of).all()


@pytest.mark.parametrize("period, as_of", [("monthly", None), ("quarterly", "2025-08-15"), ("yearly", "2025-06-30")])
def test_cohorts_match_duckdb(generated, period, as_of):
    raw, tx = generated
    activity, cm, clv = _inputs(tx, as_of, margin=0.2)
    as_of_date = metrics.resolve_as_of(tx, as_of)
    got = cohorts.cohort_table(activity, cm, clv, period).toPandas()
    summary, curve = expected_cohorts(raw, period, as_of_date, margin=0.2)

    assert len(summary) > 1
    if as_of is None:  # every customer with a purchase is in exactly one cohort
        assert summary["size"].sum() == raw.loc[raw["amount"] > 0, "customer_id"].nunique()
    s = got[got["period_number"] == 0].set_index("cohort_start").sort_index()
    assert list(s.index) == list(summary.index)
    assert s["cohort_size"].tolist() == summary["size"].tolist()
    for col, exp in [("total_revenue", "revenue"), ("avg_clv", "avg_clv"), ("avg_orders_per_customer", "avg_orders"),
                     ("avg_order_value", "aov"), ("repeat_rate", "repeat_rate")]:
        assert s[col].to_numpy() == pytest.approx(summary[exp].to_numpy(dtype=float), rel=1e-9), col
    assert s["months_tracked"].tolist() == summary["months_tracked"].tolist()
    rate = summary["retention_rate"].astype(float)
    assert s["retention_rate"].isna().tolist() == rate.isna().tolist()
    assert s["retention_rate"].dropna().to_numpy() == pytest.approx(rate.dropna().to_numpy())
    assert (s["churn_rate"].dropna() + s["retention_rate"].dropna()).to_numpy() == pytest.approx(1.0)

    c = got.set_index(["cohort_start", "period_number"]).sort_index()
    assert list(c.index) == list(curve.index)
    assert c["active_customers"].tolist() == curve["active"].tolist()
    assert c["retention"].to_numpy() == pytest.approx(curve["retention"].to_numpy())
    assert c["revenue"].to_numpy() == pytest.approx(curve["revenue"].to_numpy(), abs=1e-6)
    assert c["cumulative_revenue_per_customer"].to_numpy() == pytest.approx(curve["cum_per_customer"].to_numpy(), abs=1e-6)
    if period == "yearly":  # as of mid-2025: 2024 is the last complete year; only the 2023 cohort has a rate
        assert s["retention_rate"].notna().tolist() == [True, False, False]


# ------------------------------------------------------------------------------------------------- Dagster
def _listing(wh, asset):
    return {p.name: sorted(f.name for f in p.iterdir()) for p in (wh / asset).iterdir()}


def _range(partitions_def):
    keys = partitions_def.get_partition_keys()
    return {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}


@pytest.mark.slow
def test_backfill_in_one_run_then_one_partition(spark_resource, spark, tiny_transactions, tmp_path):
    from pyspark.sql import functions as F

    from clv_assets.defs import cohorts as cohort_defs
    from clv_assets.defs import customers, ingest
    from clv_assets.storage import ParquetTableStore

    # The upstream tables are written straight into the warehouse (the ingest assets have their own tests), so
    # the runs below are the cohort assets' own. Only this feature's graph (not the whole, changing defs folder).
    assets = [ingest.transactions, customers.customer_metrics, customers.historical_clv, customers.customer_monthly_activity,
              cohort_defs.monthly_cohorts, cohort_defs.quarterly_cohorts, cohort_defs.yearly_cohorts, cohort_defs.cohort_retention]
    wh = tmp_path / "wh"
    store = ParquetTableStore(spark, str(wh))
    resources = {"spark": spark_resource, "landing": LandingZone(path=str(tmp_path / "unused")),
                 "io_manager": SparkParquetIOManager(spark=spark_resource, base_uri=str(wh))}

    def seed(tx, months):
        in_months = F.date_format("transaction_month", "yyyy-MM-dd").isin(months)
        store.write_partitions(tx.filter(in_months), "transactions", "transaction_month", months)
        as_of = metrics.resolve_as_of(tx)
        cm = metrics.customer_metrics(tx, as_of)
        store.write(cm, "customer_metrics")
        store.write(metrics.historical_clv(cm, 0.25), "historical_clv")
        store.write(cohorts.monthly_activity(tx, as_of), "customer_monthly_activity")

    def run(selection, instance, **kwargs):
        result = dg.materialize(assets, selection=selection, resources=resources, instance=instance, **kwargs)
        assert result.success
        return result

    seed(tiny_transactions, ["2023-01-01", "2023-02-01", "2023-03-01"])
    months = monthly_partitions.get_partition_keys()
    with dg.instance_for_test() as instance:
        result = run(["monthly_cohorts"], instance, tags=_range(monthly_partitions))
        assert len(instance.get_runs()) == 1
        events = {e.materialization.partition: e.materialization.metadata for e in result.get_asset_materialization_events()
                  if e.asset_key.path == ["monthly_cohorts"]}
        assert set(events) == set(months)
        assert events["2023-01-01"]["cohort_size"].value == 2 and events["2023-01-01"]["avg_clv"].value == pytest.approx(27.5)
        assert events["2023-01-01"]["dagster/row_count"].value == 3  # periods 0, 1, 2
        assert {k: m["cohort_size"].value for k, m in events.items() if k != "2023-01-01"} == {k: 0 for k in months[1:]}
        assert sorted(p.name for p in (wh / "monthly_cohorts").iterdir()) == months  # every partition, empty ones too
        feb = spark.read.parquet(str(wh / "monthly_cohorts/2023-02-01"))
        assert feb.count() == 0 and feb.columns == cohorts.COHORT_COLUMNS

        before = _listing(wh, "monthly_cohorts")
        # A new customer D buys in March: March and the customer tables change; re-run the March cohort only.
        d_row = spark.createDataFrame([("T99", "D", d("2023-03-10"), 70.0, "toys", "social", "t.csv")], tiny_transactions.drop("transaction_month").schema)
        seed(tiny_transactions.unionByName(d_row.withColumn("transaction_month", F.trunc("transaction_date", "month"))), ["2023-03-01"])
        run(["monthly_cohorts"], instance, partition_key="2023-03-01")
        assert len(instance.get_runs()) == 2
        after = _listing(wh, "monthly_cohorts")
        assert {k for k in months if after[k] != before[k]} == {"2023-03-01"}
        march = spark.read.parquet(str(wh / "monthly_cohorts/2023-03-01")).collect()
        assert [(r.cohort_size, r.total_revenue, r.avg_clv) for r in march] == [(1, 70.0, 17.5)]

        # Quarters and years: their own partitions, each backfilled in one run; the retention report.
        for name, pdef in (("quarterly_cohorts", quarterly_partitions), ("yearly_cohorts", yearly_partitions)):
            run([name], instance, tags=_range(pdef))
            assert sorted(p.name for p in (wh / name).iterdir()) == pdef.get_partition_keys()
        q1 = spark.read.parquet(str(wh / "quarterly_cohorts/2023-01-01")).collect()
        assert {(r.cohort_label, r.cohort_size) for r in q1} == {("2023-Q1", 3)}
        assert spark.read.parquet(str(wh / "yearly_cohorts/2023-01-01")).first().cohort_size == 3
        assert spark.read.parquet(str(wh / "quarterly_cohorts/2023-04-01")).count() == 0

        report = run(["cohort_retention"], instance)
        (event,) = report.get_asset_materialization_events()
        meta = event.materialization.metadata
        image = meta["retention_heatmap"].value
        assert image.startswith("![retention](data:image/png;base64,")
        assert base64.b64decode(image.split(",", 1)[1].rstrip(")")).startswith(b"\x89PNG")
        assert "2023-01" in meta["cohort_comparison"].value and "best" in meta["cohort_comparison"].value
        matrix = {r.cohort_label: r for r in spark.read.parquet(str(wh / "cohort_retention")).collect()}
        assert set(matrix) == {"2023-01", "2023-03"}
        assert (matrix["2023-01"].period_0, matrix["2023-01"].period_1, matrix["2023-01"].period_2) == (1.0, 0.5, 1.0)
        assert matrix["2023-03"].period_0 == 1.0 and matrix["2023-03"].period_1 is None


def test_comparison_markdown_never_lists_a_cohort_twice():
    summary = pd.DataFrame({"cohort_start": [d("2023-01-01"), d("2023-02-01"), d("2023-03-01")],
                            "cohort_label": ["2023-01", "2023-02", "2023-03"], "cohort_size": [10, 20, 30],
                            "avg_clv": [5.0, 9.0, 1.0], "retention_rate": [0.5, None, 0.2]})
    md = cohorts.cohort_comparison_markdown(summary, n=3)
    clv_part, retention_part = md.split("**retention rate")
    assert "| best | 2023-02 | 20 | 9.00 |" in clv_part and "| worst | 2023-03 | 30 | 1.00 |" in clv_part
    assert clv_part.count("2023-01") == 1
    assert "| best | 2023-01 | 10 | 50.0% |" in retention_part and "| worst | 2023-03 | 30 | 20.0% |" in retention_part
    assert "2023-02" not in retention_part


@pytest.mark.slow
def test_cli_cohort_quarterly(tiny_csv, tmp_path, monkeypatch):
    from clv_assets.cli_segments import cohort

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    args = ["--transactions", str(tiny_csv), "--customer-id-col", "cust", "--transaction-date-col", "order_date",
            "--amount-col", "value", "--date-format", "dd/MM/yyyy", "--channel-col", "source", "--cohort-period",
            "quarterly", "--profit-margin", "0.5", "--warehouse", str(tmp_path / "wh"), "--output", str(tmp_path / "out")]
    result = CliRunner().invoke(cohort, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Quarterly cohorts" in result.output and "2023-Q1" in result.output

    out = pd.read_parquet(tmp_path / "out/quarterly_cohorts.parquet")
    assert out[["cohort_label", "cohort_size", "period_number"]].values.tolist() == [["2023-Q1", 2, 0]]
    assert out["avg_clv"].iloc[0] == pytest.approx((180 + 40) / 2 * 0.5)
    matrix = pd.read_parquet(tmp_path / "out/quarterly_retention_matrix.parquet")
    assert matrix["period_0"].tolist() == [1.0]
    assert (tmp_path / "out/historical_clv.parquet").exists()
