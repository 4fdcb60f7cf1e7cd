"""The bad-input corpus through a real materialization: each file either stops the run with a message naming
the file and the column (and nothing is written), or completes with input = accepted + quarantined."""

import re
from pathlib import Path

import dagster as dg
import pytest

from clv_assets.cli_common import failure_message
from clv_assets.landing import LandingZone
from clv_assets.storage import SparkParquetIOManager

CORPUS = Path(__file__).parent / "data" / "bad_input"
MONTHS = {"dagster/asset_partition_range_start": "2023-01-01", "dagster/asset_partition_range_end": "2023-02-01"}

ERRORS = {
    "missing_column.csv": r"missing_column.csv: required column 'customer_id' .*Did you mean 'customer'",
    "misspelled_column.csv": r"misspelled_column.csv: required column 'transaction_date' .*Did you mean 'transaction_dte'",
    "empty.csv": r"empty.csv: the file is empty",
    "semicolon_delimited.csv": r"semicolon_delimited.csv: .*looks delimited by ';'",
    "latin1_encoded.csv": r"latin1_encoded.csv: not UTF-8 .*line 2",
    "wrong_date_format.csv": r"wrong_date_format.csv: no value of the date column 'transaction_date' matches the date format 'yyyy-MM-dd' \(e.g. '31/01/2023'\)",
}
# file: (input rows, accepted rows, {reason: count})
COMPLETES = {
    "header_only.csv": (0, 0, {}),
    "row_problems.csv": (9, 2, {"missing_customer_id": 1, "unparseable_date": 1, "non_numeric_amount": 2,
                                "non_finite_amount": 1, "implausible_date": 2}),
    "duplicates.csv": (5, 3, {"exact_duplicate_row": 1, "duplicate_transaction_id": 1}),
    "refunds_only.csv": (2, 2, {}),
    "quoted_thousands.csv": (2, 1, {"non_numeric_amount": 1}),
    # "1,234.50" unquoted is four fields under a header of three (not an amount of 1); a row can also fall short
    "unquoted_thousands.csv": (3, 1, {"malformed_row": 2}),
    "utf8_bom.csv": (1, 1, {}),
    "windows_line_endings.csv": (2, 2, {}),
    "blank_and_padded.csv": (2, 2, {}),
}


def test_every_corpus_file_has_an_expected_outcome():
    assert {p.name for p in CORPUS.glob("*.csv")} == set(ERRORS) | set(COMPLETES)


@pytest.fixture(scope="module")
def definitions():
    from clv_assets.definitions import defs

    return defs()


def run(definitions, spark_resource, tmp_path, name):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / name).write_bytes((CORPUS / name).read_bytes())
    resources = {
        "spark": spark_resource,
        "landing": LandingZone(path=str(landing)),
        "io_manager": SparkParquetIOManager(spark=spark_resource, base_uri=str(tmp_path / "wh")),
    }
    with dg.instance_for_test() as instance:
        return dg.materialize(definitions.assets, selection=["transactions", "quarantined_transactions"], resources=resources,
                              instance=instance, tags=MONTHS, raise_on_error=False)


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_file_level_problem_fails_with_a_clear_message(definitions, spark_resource, tmp_path, name):
    result = run(definitions, spark_resource, tmp_path, name)
    assert not result.success
    message = failure_message(result)
    assert re.search(ERRORS[name], message), message
    written = [p for p in (tmp_path / "wh").rglob("*.parquet")] if (tmp_path / "wh").exists() else []
    assert written == []  # no partial write left behind


@pytest.mark.parametrize("name", sorted(COMPLETES))
def test_row_level_problems_are_counted_and_add_up(definitions, spark_resource, spark, tmp_path, name):
    inputs, accepted, reasons = COMPLETES[name]
    result = run(definitions, spark_resource, tmp_path, name)
    assert result.success
    meta = {e.asset_key.path[0]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    q = meta["quarantined_transactions"]
    assert q["landing_input_rows"].value == inputs
    assert q["landing_accepted_rows"].value == accepted
    assert q["quarantined_by_reason"].value == reasons
    assert q["landing_input_rows"].value == q["landing_accepted_rows"].value + q["landing_quarantined_rows"].value
    assert q["dagster/row_count"].value == inputs - accepted
    written = spark.read.parquet(str(tmp_path / "wh/transactions/2023-01-01"), str(tmp_path / "wh/transactions/2023-02-01"))
    assert written.count() == accepted
