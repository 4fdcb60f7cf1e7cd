"""The Dagster graph end to end on the tiny fixture: one run for every month, partition re-runs, the CLI."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from click.testing import CliRunner

from clv_assets.landing import LandingZone
from clv_assets.storage import SparkParquetIOManager

MONTHS = {"dagster/asset_partition_range_start": "2023-01-01", "dagster/asset_partition_range_end": "2023-03-01"}
MAPPING = dict(customer_id_col="cust", transaction_date_col="order_date", amount_col="value", category_col="cat",
               channel_col="source", date_format="dd/MM/yyyy")


@pytest.fixture()
def project(spark_resource, tiny_csv, tmp_path):
    from clv_assets.definitions import defs

    definitions = defs()
    resources = {
        "spark": spark_resource,
        "landing": LandingZone(path=str(tiny_csv), **MAPPING),
        "io_manager": SparkParquetIOManager(spark=spark_resource, base_uri=str(tmp_path / "wh")),
    }
    return definitions, resources, tmp_path / "wh"


def materialize(definitions, resources, selection, instance, **kwargs):
    return dg.materialize(definitions.assets, selection=selection, resources=resources, instance=instance, **kwargs)


def test_whole_group_in_one_run_then_one_month(project, tiny_csv, spark):
    definitions, resources, wh = project
    with dg.instance_for_test() as instance:
        result = materialize(definitions, resources, ["transactions", "customer_metrics", "historical_clv"], instance,
                             tags=MONTHS, run_config={"ops": {"historical_clv": {"config": {"profit_margin": 0.25}}}})
        assert result.success
        events = result.get_asset_materialization_events()
        tx_events = {e.materialization.partition: e.materialization.metadata for e in events if e.asset_key.path == ["transactions"]}
        assert {k: v["dagster/row_count"].value for k, v in tx_events.items()} == {"2023-01-01": 3, "2023-02-01": 2, "2023-03-01": 3}
        assert len(instance.get_runs()) == 1  # every month in one run (single-run backfill)
        assert "dagster/column_schema" in tx_events["2023-01-01"]

        clv = {r.customer_id: r.historical_clv for r in spark.read.parquet(str(wh / "historical_clv")).collect()}
        assert clv == pytest.approx({"A": 45.0, "B": 10.0, "C": -3.75})

        jan_before = sorted(p.name for p in (wh / "transactions/2023-01-01").iterdir())
        # A late correction lands for February only; re-running February rewrites only February.
        with open(tiny_csv / "orders.csv", "a") as f:
            f.write("B,20/02/2023,99.00,books,social\nB,21/01/2023,5.00,books,social\n")
        assert materialize(definitions, resources, ["transactions"], instance, partition_key="2023-02-01").success
        feb = spark.read.parquet(str(wh / "transactions/2023-02-01"))
        assert feb.count() == 3 and feb.filter("amount = 99").count() == 1
        assert sorted(p.name for p in (wh / "transactions/2023-01-01").iterdir()) == jan_before
        assert spark.read.parquet(str(wh / "transactions/2023-01-01")).count() == 3  # Jan 21 not ingested yet


def test_definitions_load_without_starting_spark():
    code = (
        "from clv_assets.definitions import defs; d = defs(); "
        "d.get_repository_def().get_all_jobs(); "
        "from pyspark import SparkContext; import sys; "
        "sys.exit(0 if SparkContext._gateway is None and SparkContext._active_spark_context is None else 3)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_cli_historical_matches_pandas(tiny_csv, tmp_path, monkeypatch):
    from clv_assets.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    args = ["historical", "--transactions", str(tiny_csv), "--customer-id-col", "cust", "--transaction-date-col",
            "order_date", "--amount-col", "value", "--date-format", "dd/MM/yyyy", "--channel-col", "source",
            "--profit-margin", "0.3", "--warehouse", str(tmp_path / "cli_wh"), "--output", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "total historical CLV" in result.output

    raw = pd.read_csv(tiny_csv / "orders.csv")
    expected = (raw.groupby("cust")["value"].sum() * 0.3).to_dict()
    out = pd.read_parquet(tmp_path / "out/historical_clv.parquet").set_index("customer_id")["historical_clv"].to_dict()
    assert out == pytest.approx(expected)
    assert (tmp_path / "out/customer_metrics.parquet").exists()

    # Other data into the same warehouse, covering only February: no month of the first data set may remain.
    (tmp_path / "other").mkdir()
    (tmp_path / "other/feb.csv").write_text("cust,order_date,value,source\nZ,15/02/2023,40,email\n")
    args[args.index("--transactions") + 1] = str(tmp_path / "other")
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = pd.read_parquet(tmp_path / "out/historical_clv.parquet").set_index("customer_id")["historical_clv"].to_dict()
    assert out == pytest.approx({"Z": 12.0})


def test_cli_reports_a_misspelled_column(tiny_csv, tmp_path, monkeypatch):
    from clv_assets.cli import main

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["historical", "--transactions", str(tiny_csv), "--customer-id-col", "customer"])
    assert result.exit_code != 0
    assert "'customer'" in str(result.output) + str(result.exception) and "Did you mean 'cust'" in str(result.output) + str(result.exception)


class _RecordingPipeline:
    """Stands in for the CLI's Pipeline: records what `clv demo` asks of it, runs nothing."""

    created: list = []

    def __init__(self, landing_overrides, warehouse):
        self.landing = landing_overrides["path"]
        self.runs = []
        self.checked = False
        _RecordingPipeline.created.append(self)

    def data_months(self):
        self.checked = True
        return "2023-01-01", "2023-03-01"

    def materialize(self, selection, run_config, months):
        self.runs.append(selection)


def test_cli_demo_reads_a_configured_landing_folder_and_never_writes_to_it(tmp_path, monkeypatch):
    from clv_assets import cli
    from clv_assets.definitions import defs

    landing = tmp_path / "my_exports"
    landing.mkdir()
    mine = landing / "transactions_2024-01.csv"  # named like a sample file, which a sample would replace
    mine.write_text("customer_id,transaction_date,amount\nA,2024-01-05,10\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLV_LANDING_PATH", str(landing))
    monkeypatch.setattr(cli, "Pipeline", _RecordingPipeline)
    monkeypatch.setattr(cli, "_print_historical_summary", lambda pipeline: None)
    monkeypatch.setattr(cli, "ensure_sample", lambda *a, **k: pytest.fail("clv demo generated a sample"))
    _RecordingPipeline.created = []

    result = CliRunner().invoke(cli.main, ["demo"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in landing.iterdir()) == ["transactions_2024-01.csv"]
    assert mine.read_text() == "customer_id,transaction_date,amount\nA,2024-01-05,10\n"
    (pipeline,) = _RecordingPipeline.created
    assert pipeline.landing == str(landing) and pipeline.checked
    every_asset = {spec.key.to_user_string() for spec in defs().resolve_all_asset_specs()}
    assert len(pipeline.runs) == 3 and {a for run in pipeline.runs for a in run} == every_asset  # months, quarters, years


def test_cli_demo_without_a_configured_landing_generates_the_sample(tmp_path, monkeypatch):
    from clv_assets import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLV_LANDING_PATH", raising=False)
    monkeypatch.setattr(cli, "Pipeline", _RecordingPipeline)
    monkeypatch.setattr(cli, "_print_historical_summary", lambda pipeline: None)
    generated = []
    monkeypatch.setattr(cli, "ensure_sample", lambda size, path: generated.append((size, path)) or path)
    _RecordingPipeline.created = []

    assert CliRunner().invoke(cli.main, ["demo", "--data-size", "medium"], catch_exceptions=False).exit_code == 0

    assert generated == [("medium", Path("data/landing"))]
    assert _RecordingPipeline.created[0].landing == str(tmp_path / "data/landing")


def test_the_sample_is_never_written_over_someone_elses_landing_files(tmp_path):
    import click

    from clv_assets.cli_common import ensure_sample

    landing = tmp_path / "data/landing"
    landing.mkdir(parents=True)
    mine = landing / "transactions_2024-01.csv"  # named like a sample file
    mine.write_text("customer_id,transaction_date,amount\nA,2024-01-05,10\n")
    with pytest.raises(click.ClickException, match=r"not a generated sample \(transactions_2024-01.csv\)"):
        ensure_sample("small", landing)
    assert sorted(p.name for p in landing.iterdir()) == ["transactions_2024-01.csv"]

    empty = tmp_path / "sample"
    ensure_sample("small", empty)  # an empty (or new) folder gets the sample, and keeps it
    written = {p.name: p.stat().st_mtime_ns for p in empty.iterdir()}
    assert "_SAMPLE_SPEC.json" in written and sum(name.startswith("transactions_") for name in written) == 36
    ensure_sample("small", empty)
    assert {p.name: p.stat().st_mtime_ns for p in empty.iterdir()} == written


@pytest.mark.slow
def test_cli_moves_the_month_partitions_back_to_older_data(tmp_path):
    (tmp_path / "old.csv").write_text("customer_id,transaction_date,amount\nA,2019-03-05,10\nA,2019-05-01,20\nB,2020-01-02,5\n")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("CLV_HISTORY_START", "DAGSTER_HOME")}
    out = subprocess.run([sys.executable, "-m", "clv_assets.cli", "historical", "--transactions", str(tmp_path / "old.csv"),
                          "--warehouse", str(tmp_path / "wh"), "--output", str(tmp_path / "out")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    clv = pd.read_parquet(tmp_path / "out/historical_clv.parquet").set_index("customer_id")["historical_clv"].to_dict()
    assert clv == pytest.approx({"A": 6.0, "B": 1.0})
