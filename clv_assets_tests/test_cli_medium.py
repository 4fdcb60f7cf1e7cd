"""`clv historical --data-size medium` end to end, checked against DuckDB over the generated CSV files."""

import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def test_historical_medium_matches_duckdb(tmp_path):
    clv = [sys.executable, "-m", "clv_assets.cli"]
    out = subprocess.run(
        clv + ["historical", "--data-size", "medium", "--profit-margin", "0.25", "--output", "out", "--warehouse", "wh"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "total historical CLV" in out.stdout

    files = str(tmp_path / "data/samples/medium/transactions_*.csv")
    expected = duckdb.sql(f"""
        select customer_id,
               0.25 * sum(amount)                                              as historical_clv,
               count(*) filter (where amount > 0)                              as num_orders,
               count(distinct transaction_date) filter (where amount > 0)      as num_purchase_days,
               max(transaction_date) filter (where amount > 0)                 as last_purchase_date
        from read_csv_auto('{files}') group by customer_id
    """).df().set_index("customer_id").sort_index()
    got = pd.read_parquet(tmp_path / "out/historical_clv.parquet").set_index("customer_id").sort_index()
    metrics = pd.read_parquet(tmp_path / "out/customer_metrics.parquet").set_index("customer_id").sort_index()

    assert len(got) == len(expected) == 20_000
    assert got["historical_clv"].sum() == pytest.approx(expected["historical_clv"].sum(), rel=1e-12)
    assert (got["historical_clv"] - expected["historical_clv"]).abs().max() < 1e-6
    assert (metrics["num_orders"] == expected["num_orders"]).all()
    assert (metrics["num_purchase_days"] == expected["num_purchase_days"]).all()
    assert (pd.to_datetime(metrics["last_purchase_date"]) == pd.to_datetime(expected["last_purchase_date"])).all()
    assert Path(tmp_path / "wh/quarantined_transactions").exists()
