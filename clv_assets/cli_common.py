"""Shared pieces of the ``clv`` commands: where the data comes from, running assets through Dagster, output."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import click

SAMPLE_ROOT = Path("data/samples")


def _instance():
    import dagster as dg

    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


def ensure_sample(size: str, landing: Path, seed: int = 42, fmt: str = "csv") -> Path:
    """Generate the sample data set of this size into ``landing`` unless the same one is already there. Refuses a
    folder that holds other landing files (someone's own data): a sample replaces the files it finds there."""
    from clv_assets.landing import local_landing_files
    from clv_assets.sample_data import SIZES, SampleSpec, write_sample

    spec = SampleSpec(n_customers=SIZES[size], seed=seed)
    marker = landing / "_SAMPLE_SPEC.json"
    wanted = json.dumps({"size": size, "format": fmt, **{k: str(v) for k, v in vars(spec).items()}}, sort_keys=True)
    if marker.exists() and marker.read_text() == wanted:
        return landing
    theirs = [p.relative_to(landing).as_posix() for p in local_landing_files(landing)] if landing.is_dir() else []
    if theirs and not marker.exists():
        raise click.ClickException(
            f"{landing} already holds landing files that are not a generated sample ({', '.join(theirs[:3])}"
            f"{', ...' if len(theirs) > 3 else ''}): the sample is not written there. Use those files "
            f"(CLV_LANDING_PATH={landing}, or --transactions), or generate the sample into another folder (--landing)."
        )
    click.echo(f"Generating the {size} sample ({spec.n_customers:,} customers) into {landing} ...")
    write_sample(spec, landing, fmt=fmt, ground_truth_path=landing.parent / f"{landing.name}_ground_truth.parquet")
    marker.write_text(wanted)
    return landing


def _month_keys(first: dt.date, last: dt.date) -> tuple[str, str]:
    return first.replace(day=1).isoformat(), last.replace(day=1).isoformat()


class Pipeline:
    """The project's definitions with the CLI's landing and warehouse settings applied."""

    def __init__(self, landing_overrides: dict[str, Any], warehouse: str | None):
        if warehouse:
            os.environ["CLV_WAREHOUSE_URI"] = warehouse
        from clv_assets.defs.resources import build_resources
        from clv_assets.landing import LandingZone

        self.resources = build_resources()
        self.resources["landing"] = LandingZone.from_env(**landing_overrides)
        self.spark = self.resources["spark"].spark_session
        self._data_months: tuple[str, str] | None = None

    def data_months(self) -> tuple[str, str]:
        """First and last month present in the landing files (the cohort runs cover these; see :meth:`all_months`).
        One pass over the files, the first time it is asked."""
        if self._data_months is None:
            self._data_months = self._find_data_months()
        return self._data_months

    def _find_data_months(self) -> tuple[str, str]:
        from clv_assets.ingest import LandingFileError, accepted

        try:
            flagged = self.resources["landing"].load(self.spark).flagged
        except (LandingFileError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from exc
        first, last = accepted(flagged).selectExpr("min(transaction_date)", "max(transaction_date)").first()
        if first is None:
            raise click.ClickException(f"No readable transactions in {self.resources['landing'].path}.")
        self._cover_history_from(first)
        return _month_keys(first, last)

    def all_months(self) -> tuple[str, str]:
        """Every month partition, once :meth:`data_months` has checked the files (and moved the partitions back to
        older data). A run of ``transactions`` over all of them leaves the months without data empty: a warehouse
        that held other data before (the sample, say) keeps none of its months."""
        self.data_months()
        from clv_assets.partitions import monthly_partitions

        keys = monthly_partitions.get_partition_keys()
        return keys[0], keys[-1]

    @staticmethod
    def _cover_history_from(first: dt.date) -> None:
        """Let the month partitions start at the data's first month unless configured to start earlier."""
        import sys

        start = first.replace(day=1).isoformat()
        configured = os.environ.get("CLV_HISTORY_START")
        if configured and configured <= start:
            return
        if "clv_assets.partitions" in sys.modules:  # already built: too late to move them
            from clv_assets.partitions import history_start

            if start < history_start():
                raise click.ClickException(
                    f"The data starts in {start[:7]}, before the month partitions ({history_start()[:7]}): "
                    f"set CLV_HISTORY_START={start}."
                )
            return
        os.environ["CLV_HISTORY_START"] = start

    def materialize(self, selection: list[str], run_config: dict, months: tuple[str, str]) -> Any:
        import dagster as dg

        from clv_assets.definitions import defs

        definitions = defs()
        result = dg.materialize(
            [*definitions.assets, *definitions.asset_checks],
            selection=selection,
            resources=self.resources,
            run_config={"loggers": {"console": {"config": {"log_level": os.environ.get("CLV_LOG_LEVEL", "WARNING")}}}, **run_config},
            instance=_instance(),
            tags={"dagster/asset_partition_range_start": months[0], "dagster/asset_partition_range_end": months[1]},
            raise_on_error=False,
        )
        if not result.success:
            raise click.ClickException(f"Materialization failed: {failure_message(result)}")
        return result

    def read(self, table: str):
        from clv_assets.storage import ParquetTableStore

        return ParquetTableStore(self.spark, self.resources["io_manager"].base_uri).read(table)


def failure_message(result: Any) -> str:
    """The user's error behind a failed run: the first failed step's error, unwrapped from Dagster's own."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
                error = error.cause
            return error.message.strip()
    return "see the run's logs"


def landing_options(func):
    """Where the transactions come from: a generated sample of some size, or the user's own files."""
    options = [
        click.option("--data-size", type=click.Choice(["small", "medium", "large"]), default=None,
                     help="Generate sample data of this size (about 1k, 20k or 200k customers)."),
        click.option("--transactions", "transactions_path", default=None,
                     help="Your transactions: a CSV/parquet file or folder (local path or s3://)."),
        click.option("--customer-id-col", default=None, help="Column with the customer id (default customer_id)."),
        click.option("--transaction-date-col", default=None, help="Column with the date (default transaction_date)."),
        click.option("--amount-col", default=None, help="Column with the amount (default amount)."),
        click.option("--transaction-id-col", default=None, help="Optional column with a transaction id."),
        click.option("--category-col", default=None, help="Optional column with the product category."),
        click.option("--channel-col", default=None, help="Optional column with the acquisition channel."),
        click.option("--date-format", default=None, help="Spark date pattern (default yyyy-MM-dd)."),
        click.option("--delimiter", default=None, help="CSV field separator (default ,)."),
        click.option("--warehouse", default=None, help="Base URI of the parquet warehouse (default data/warehouse)."),
        click.option("--seed", default=42, show_default=True, help="Seed of the generated sample."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _pipeline(kw: dict[str, Any]) -> Pipeline:
    overrides = {
        key: kw[key]
        for key in ("customer_id_col", "transaction_date_col", "amount_col", "transaction_id_col", "category_col",
                    "channel_col", "date_format", "delimiter")
        if kw.get(key)
    }
    if kw.get("transactions_path") and kw.get("data_size"):
        raise click.UsageError("Give either --data-size (sample data) or --transactions (your data), not both.")
    if kw.get("transactions_path"):
        overrides["path"] = kw["transactions_path"]
    elif kw.get("data_size") or not os.environ.get("CLV_LANDING_PATH"):
        size = kw.get("data_size") or "small"
        overrides["path"] = str(ensure_sample(size, SAMPLE_ROOT / size, seed=kw["seed"]).absolute())
        if not kw.get("data_size"):
            click.echo(f"No --transactions and no CLV_LANDING_PATH: using the generated {size} sample ({overrides['path']}).")
    return Pipeline(overrides, kw.get("warehouse"))


def _write_outputs(pipeline: Pipeline, tables: list[str], output: str | None) -> None:
    if not output:
        return
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    for table in tables:
        pipeline.read(table).toPandas().to_parquet(out / f"{table}.parquet", index=False)
    click.echo(f"\nWrote {', '.join(f'{t}.parquet' for t in tables)} to {out.absolute()}")


def _print_historical_summary(pipeline: Pipeline) -> None:
    import pandas as pd

    clv = pipeline.read("historical_clv").toPandas()
    pd.set_option("display.width", 140)
    click.echo("\nHistorical CLV")
    click.echo(f"  customers            {len(clv):>14,}")
    click.echo(f"  net revenue          {clv['net_revenue'].sum():>14,.2f}")
    click.echo(f"  profit margin        {clv['profit_margin'].iloc[0]:>14.2%}")
    click.echo(f"  total historical CLV {clv['historical_clv'].sum():>14,.2f}")
    click.echo(f"  mean / median        {clv['historical_clv'].mean():>14,.2f} / {clv['historical_clv'].median():,.2f}")
    by_channel = clv.groupby("acquisition_channel").agg(
        customers=("customer_id", "count"), total_clv=("historical_clv", "sum"), mean_clv=("historical_clv", "mean")
    ).sort_values("total_clv", ascending=False)
    click.echo("\nBy acquisition channel\n" + by_channel.round(2).to_string())
    top = clv.nlargest(10, "historical_clv")[["customer_id", "num_orders", "net_revenue", "historical_clv"]]
    click.echo("\nTop 10 customers\n" + top.round(2).to_string(index=False))
