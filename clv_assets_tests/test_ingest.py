"""Reading landing files into the canonical transactions table: mapping, parsing, quarantine."""


import pytest

from clv_assets import ingest
from clv_assets.ingest import CANONICAL_COLUMNS, ColumnMapping, LandingSchemaError
from clv_assets_tests.conftest import TINY_ROWS, d

USER_MAPPING = ColumnMapping(
    customer_id="cust", transaction_date="order_date", amount="value", category="cat", channel="source", date_format="dd/MM/yyyy"
)


def load(spark, path, mapping=ColumnMapping(), **kwargs):
    fmt = "parquet" if str(path).endswith(".parquet") else "csv"
    return ingest.load_landing(spark, [str(path)], fmt, mapping, **kwargs).flagged


def test_column_mapping_and_date_format(spark, tiny_csv):
    flagged = load(spark, tiny_csv / "orders.csv", USER_MAPPING)
    good = ingest.accepted(flagged)
    assert good.columns == CANONICAL_COLUMNS
    assert ingest.ingest_counts(flagged) == {"input_rows": 8, "accepted_rows": 8, "quarantined_rows": 0}
    rows = sorted((r.customer_id, r.transaction_date, r.amount, r.category, r.channel) for r in good.collect())
    assert rows == sorted((c, d(day), amt, cat, ch) for c, day, amt, cat, ch in TINY_ROWS)
    assert {r.transaction_month for r in good.collect()} == {d("2023-01-01"), d("2023-02-01"), d("2023-03-01")}
    assert {r.source_file.rsplit("/", 1)[-1] for r in good.collect()} == {"orders.csv"}


def test_missing_column_names_file_and_suggests(spark, tiny_csv):
    with pytest.raises(LandingSchemaError, match=r"orders.csv.*'custmer'.*Did you mean 'cust'"):
        load(spark, tiny_csv / "orders.csv", ColumnMapping(customer_id="custmer", transaction_date="order_date", amount="value"))


def test_bad_rows_are_quarantined_with_reason_and_row_number(spark, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "customer_id,transaction_date,amount,transaction_id\n"
        "A,2023-01-01,10,t1\n"      # row 1: ok
        ",2023-01-02,10,t2\n"       # row 2: missing customer
        "B,2023-13-45,10,t3\n"      # row 3: unparseable date
        "C,2023-01-03,ten,t4\n"     # row 4: non-numeric
        "D,2023-01-04,NaN,t5\n"     # row 5: NaN
        "E,2023-01-05,-5.5,t6\n"    # row 6: a refund is data, not an error
        "A,2023-01-01,10,t1\n"      # row 7: exact duplicate of row 1
        "F,2023-01-06,7,t1\n"       # row 8: duplicate transaction id
        "G,1850-01-01,7,t9\n"       # row 9: implausible date
        "H,2023-01-07,Infinity,t10\n"  # row 10: infinite amount
        "I,2024-06-01,3,t11\n"      # row 11: after the as-of date
        "J,2020-06-01,3,t12\n"      # row 12: before the first month partition
    )
    flagged = load(spark, path, as_of=d("2024-01-31"), window=(d("2023-01-01"), d("2026-01-01")))
    assert sorted(r.customer_id for r in ingest.accepted(flagged).collect()) == ["A", "E"]
    rows = {r.source_row: r.reject_reason for r in ingest.quarantined(flagged).collect()}
    assert rows == {2: "missing_customer_id", 3: "unparseable_date", 4: "non_numeric_amount", 5: "non_numeric_amount",
                    7: "exact_duplicate_row", 8: "duplicate_transaction_id", 9: "implausible_date",
                    10: "non_finite_amount", 11: "date_after_as_of", 12: "outside_partitions"}
    counts = ingest.ingest_counts(flagged)
    assert counts["input_rows"] == 12 == counts["accepted_rows"] + counts["quarantined_rows"]
    assert counts["quarantined_non_numeric_amount"] == 2


def test_csv_files_whose_columns_moved_are_read_by_column_name(spark, tmp_path):
    """Spark reads the CSV files of one read by position, under one file's header: a later export with its
    columns in another order (or one more column) must still put each value in its own column."""
    landing = tmp_path / "exports"
    landing.mkdir()
    (landing / "a_jan.csv").write_text("customer_id,transaction_date,amount\nA,2023-01-05,10.5\nB,2023-01-06,20\n")
    (landing / "b_feb.csv").write_text("amount,customer_id,transaction_date\n30.25,A,2023-02-01\n")
    (landing / "c_mar.csv").write_text("transaction_date,category,amount,customer_id\n2023-03-02,books,7,C\n")
    files = sorted(str(p) for p in landing.iterdir())
    loaded = ingest.load_landing(spark, files, "csv", ColumnMapping())  # category: picked up by its name
    rows = sorted((r.customer_id, r.transaction_date, r.amount, r.category) for r in ingest.accepted(loaded.flagged).collect())
    assert rows == [("A", d("2023-01-05"), 10.5, None), ("A", d("2023-02-01"), 30.25, None),
                    ("B", d("2023-01-06"), 20.0, None), ("C", d("2023-03-02"), 7.0, "books")]
    assert loaded.counts["quarantined_rows"] == 0


def test_a_repeated_or_blank_header_name_is_made_unique_as_spark_does():
    assert ingest._safe_header(["customer_id", "Amount", "", "amount", "date"]) == ["customer_id", "Amount1", "_c2", "amount3", "date"]


def test_row_numbers_across_many_files_and_spark_partitions(spark, tmp_path):
    landing = tmp_path / "many"
    landing.mkdir()
    for i in range(3):
        lines = ["customer_id,transaction_date,amount"] + [f"C{i}_{j},2023-01-01,{'x' if j % 997 == 5 else j}" for j in range(1, 3001)]
        (landing / f"f{i}.csv").write_text("\n".join(lines) + "\n")
    files = sorted(str(p) for p in landing.iterdir())
    spark.conf.set("spark.sql.files.maxPartitionBytes", "8k")  # force several Spark partitions per file
    try:
        flagged = ingest.load_landing(spark, files, "csv", ColumnMapping()).flagged
        got = sorted((r.source_file.rsplit("/", 1)[-1], r.source_row, r.raw_customer_id) for r in ingest.quarantined(flagged).collect())
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    expected = sorted((f"f{i}.csv", j, f"C{i}_{j}") for i in range(3) for j in range(1, 3001) if j % 997 == 5)
    assert got == expected


def test_derived_transaction_ids_are_unique_and_stable(spark, tmp_path):
    path = tmp_path / "same_day.csv"
    path.write_text("customer_id,transaction_date,amount\nA,2023-01-01,10\nA,2023-01-01,12\nA,2023-01-02,10\n")
    ids = lambda: sorted(r.transaction_id for r in ingest.accepted(load(spark, path)).collect())  # noqa: E731
    first = ids()
    assert len(set(first)) == 3
    assert ids() == first


def test_parquet_landing_with_typed_columns(spark, tmp_path, tiny_transactions):
    path = tmp_path / "tx.parquet"
    tiny_transactions.select("customer_id", "transaction_date", "amount").toPandas().to_parquet(path)
    flagged = load(spark, path)
    assert ingest.ingest_counts(flagged)["accepted_rows"] == len(TINY_ROWS)


def test_typed_parquet_values_are_kept_exactly_and_rejects_still_show_their_text(spark, tmp_path):
    """Numbers and dates typed in parquet are taken as they are (no round trip through text); the rejected
    rows still show what was read, as text, with their row number."""
    import datetime as dt

    import pandas as pd

    path = tmp_path / "typed.parquet"
    pd.DataFrame({
        "customer_id": ["A", "B", None, "C"],
        "transaction_date": [dt.date(2023, 1, 5), dt.date(2023, 1, 6), dt.date(2023, 1, 7), dt.date(2023, 1, 8)],
        "amount": [0.1 + 0.2, 1e-7, 5.0, float("nan")],  # pandas writes NaN as a missing value
    }).to_parquet(path)
    loaded = ingest.load_landing(spark, [str(path)], "parquet", ColumnMapping())
    assert {r.customer_id: r.amount for r in ingest.accepted(loaded.flagged).collect()} == {"A": 0.1 + 0.2, "B": 1e-7}
    rejected = sorted((r.source_row, r.reject_reason, r.raw_customer_id, r.raw_transaction_date, r.raw_amount)
                      for r in ingest.quarantined(loaded.flagged).collect())
    assert rejected == [(3, "missing_customer_id", None, "2023-01-07", "5.0"), (4, "non_numeric_amount", "C", "2023-01-08", None)]
    assert loaded.counts == {"input_rows": 4, "accepted_rows": 2, "quarantined_rows": 2,
                             "quarantined_missing_customer_id": 1, "quarantined_non_numeric_amount": 1}


def test_float32_amounts_keep_their_decimal_value(spark, tmp_path):
    import datetime as dt

    import numpy as np
    import pandas as pd

    path = tmp_path / "float32.parquet"
    pd.DataFrame({"customer_id": ["A", "B"], "transaction_date": [dt.date(2023, 1, 5)] * 2,
                  "amount": np.array([19.99, -0.1], dtype=np.float32)}).to_parquet(path)
    flagged = load(spark, path)
    assert sorted(r.amount for r in ingest.accepted(flagged).collect()) == [-0.1, 19.99]


def test_in_window_is_half_open(tiny_transactions):
    feb = ingest.in_window(tiny_transactions, "2023-02-01", "2023-03-01").collect()
    assert sorted(r.transaction_date for r in feb) == [d("2023-02-10"), d("2023-02-15")]


def test_duplicates_without_transaction_ids_keep_the_first_read(spark, tmp_path):
    path = tmp_path / "no_ids.csv"
    path.write_text(
        "customer_id,transaction_date,amount,category\n"
        "A,2023-01-01,10,toys\n"   # row 1: kept
        "A,2023-01-01,10,toys\n"   # row 2: exact duplicate of row 1
        "A,2023-01-01,11,toys\n"   # row 3: another amount: a second order
        "A,2023-01-01,10,books\n"  # row 4: another category: a second order
        "B,2023-01-01,10,toys\n"   # row 5: another customer
        "A,2023-01-01,10,toys\n"   # row 6: exact duplicate of row 1
    )
    loaded = ingest.load_landing(spark, [str(path)], "csv", ColumnMapping(category="category"))
    assert {r.source_row: r.reject_reason for r in ingest.quarantined(loaded.flagged).collect()} == {
        2: "exact_duplicate_row", 6: "exact_duplicate_row"}
    assert loaded.counts == ingest.ingest_counts(loaded.flagged) == {
        "input_rows": 6, "accepted_rows": 4, "quarantined_rows": 2, "quarantined_exact_duplicate_row": 2}


def test_load_counts_agree_with_an_independent_count(spark, tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("customer_id,transaction_date,amount,transaction_id\n"
                    "A,2023-01-01,10,t1\n,2023-01-02,5,t2\nB,2023-01-03,x,t3\nA,2023-01-01,10,t1\nC,2023-01-04,8,t1\n")
    loaded = ingest.load_landing(spark, [str(path)], "csv", ColumnMapping(transaction_id="transaction_id"))
    by_reason = {}
    for r in loaded.flagged.collect():
        by_reason[r.reject_reason] = by_reason.get(r.reject_reason, 0) + 1
    assert by_reason == {None: 1, "missing_customer_id": 1, "non_numeric_amount": 1, "exact_duplicate_row": 1,
                         "duplicate_transaction_id": 1}
    assert loaded.counts == {"input_rows": 5, "accepted_rows": 1, "quarantined_rows": 4,
                             "quarantined_duplicate_transaction_id": 1, "quarantined_exact_duplicate_row": 1,
                             "quarantined_missing_customer_id": 1, "quarantined_non_numeric_amount": 1}


def test_landing_zone_shares_one_load_until_a_file_changes(spark, tmp_path):
    import os

    from clv_assets.landing import LandingZone

    folder = tmp_path / "landing"
    folder.mkdir()
    (folder / "a.csv").write_text("customer_id,transaction_date,amount\nA,2023-01-01,10\n")
    zone = LandingZone(path=str(folder))
    first = zone.load(spark)
    assert zone.load(spark) is first  # the second step of a run reuses the checks and counts
    (folder / "a.csv").write_text("customer_id,transaction_date,amount\nA,2023-01-01,10\nB,2023-01-02,20\n")
    os.utime(folder / "a.csv", ns=(1, 1))  # a different modification time, whatever the clock's resolution
    second = zone.load(spark)
    assert second is not first and second.counts["accepted_rows"] == 2


def test_no_quarantined_rows_gives_an_empty_table_with_the_columns(spark, tiny_csv):
    loaded = ingest.load_landing(spark, [str(tiny_csv / "orders.csv")], "csv", USER_MAPPING)
    assert loaded.counts["quarantined_rows"] == 0
    empty = ingest.quarantined(loaded.flagged, expected_rows=0)
    assert empty.columns == ingest.QUARANTINE_COLUMNS and empty.count() == 0
    assert dict(empty.dtypes) == dict(ingest.quarantined(loaded.flagged).dtypes)


def test_rows_without_duplicates_skip_the_duplicate_windows(spark, tmp_path):
    """Only rows whose key repeats go through the sorted windows; without any, the plan has none."""
    path = tmp_path / "clean.csv"
    path.write_text("customer_id,transaction_date,amount\nA,2023-01-01,10\nB,2023-01-01,10\nA,2023-01-02,10\n")
    loaded = ingest.load_landing(spark, [str(path)], "csv", ColumnMapping())
    assert loaded.counts["accepted_rows"] == 3
    assert "Window" not in loaded.flagged._jdf.queryExecution().executedPlan().toString()
