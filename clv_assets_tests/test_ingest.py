"""Reading landing files into the canonical transactions table."""

import pytest

from clv_assets.ingest import CANONICAL_COLUMNS, ColumnMapping, LandingSchemaError, canonicalize, in_window, read_raw
from clv_assets_tests.conftest import TINY_ROWS, d

USER_MAPPING = ColumnMapping(
    customer_id="cust", transaction_date="order_date", amount="value", category="cat", channel="source", date_format="dd/MM/yyyy"
)


def test_column_mapping_and_date_format(spark, tiny_csv):
    good, rejected = canonicalize(read_raw(spark, [str(tiny_csv / "orders.csv")], "csv"), USER_MAPPING)
    assert good.columns == CANONICAL_COLUMNS
    assert rejected.count() == 0
    rows = sorted((r.customer_id, r.transaction_date, r.amount, r.category, r.channel) for r in good.collect())
    assert rows == sorted((c, d(day), amt, cat, ch) for c, day, amt, cat, ch in TINY_ROWS)
    months = {r.transaction_month for r in good.collect()}
    assert months == {d("2023-01-01"), d("2023-02-01"), d("2023-03-01")}
    assert {r.source_file.rsplit("/", 1)[-1] for r in good.collect()} == {"orders.csv"}


def test_missing_column_names_file_and_suggests(spark, tiny_csv):
    raw = read_raw(spark, [str(tiny_csv / "orders.csv")], "csv")
    with pytest.raises(LandingSchemaError, match=r"orders.csv.*'custmer'.*Did you mean 'cust'"):
        canonicalize(raw, ColumnMapping(customer_id="custmer", transaction_date="order_date", amount="value"), str(tiny_csv / "orders.csv"))


def test_bad_rows_are_rejected_with_a_reason(spark, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "customer_id,transaction_date,amount\n"
        "A,2023-01-01,10\n"
        ",2023-01-02,10\n"
        "B,2023-13-45,10\n"
        "C,2023-01-03,ten\n"
        "D,2023-01-04,NaN\n"
        "E,2023-01-05,-5.5\n"
    )
    good, rejected = canonicalize(read_raw(spark, [str(path)], "csv"), ColumnMapping())
    assert sorted(r.customer_id for r in good.collect()) == ["A", "E"]  # a refund is data, not an error
    reasons = sorted(r.reject_reason for r in rejected.collect())
    assert reasons == ["missing_customer_id", "non_numeric_amount", "non_numeric_amount", "unparseable_date"]


def test_derived_transaction_ids_are_unique_and_stable(spark, tmp_path):
    path = tmp_path / "dups.csv"
    path.write_text("customer_id,transaction_date,amount\nA,2023-01-01,10\nA,2023-01-01,10\nA,2023-01-02,10\n")
    ids = lambda: sorted(r.transaction_id for r in canonicalize(read_raw(spark, [str(path)], "csv"), ColumnMapping())[0].collect())  # noqa: E731
    first = ids()
    assert len(set(first)) == 3  # two identical orders stay two orders
    assert ids() == first


def test_parquet_landing_with_typed_columns(spark, tmp_path, tiny_transactions):
    path = tmp_path / "tx.parquet"
    tiny_transactions.select("customer_id", "transaction_date", "amount").toPandas().to_parquet(path)
    good, rejected = canonicalize(read_raw(spark, [str(path)], "parquet"), ColumnMapping())
    assert good.count() == len(TINY_ROWS) and rejected.count() == 0


def test_in_window_is_half_open(tiny_transactions):
    feb = in_window(tiny_transactions, "2023-02-01", "2023-03-01").collect()
    assert sorted(r.transaction_date for r in feb) == [d("2023-02-10"), d("2023-02-15")]
