"""``clv``: run the CLV assets from the command line.

Every command materializes assets through Dagster, so with a shared ``DAGSTER_HOME`` its runs appear in the
UI's run history, and prints a readable summary. Result tables are written as parquet under ``--output``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click

from clv_assets.cli_common import Pipeline, _pipeline, _print_historical_summary, _write_outputs, ensure_sample, landing_options


@click.group()
def main() -> None:
    """Customer lifetime value on Spark, as Dagster assets."""


@main.command()
@click.option("--data-size", type=click.Choice(["small", "medium", "large"]), default="small", show_default=True)
@click.option("--landing", default="data/landing", show_default=True, help="Folder to write the monthly files to.")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--seed", default=42, show_default=True)
def generate(data_size: str, landing: str, fmt: str, seed: int) -> None:
    """Generate realistic sample transactions (one file per month) and their ground truth."""
    path = ensure_sample(data_size, Path(landing), seed=seed, fmt=fmt)
    files = sorted(p.name for p in path.glob("transactions_*"))
    click.echo(f"{len(files)} monthly files in {path} ({files[0]} .. {files[-1]})")


@main.command()
@landing_options
@click.option("--profit-margin", default=0.2, show_default=True, type=float)
@click.option("--as-of", default=None, help="As-of date YYYY-MM-DD (default: last transaction date).")
@click.option("--output", default=None, help="Folder for the result tables (parquet).")
def historical(profit_margin: float, as_of: str | None, output: str | None, **kw: Any) -> None:
    """Historical CLV: profit margin x net revenue per customer."""
    pipeline = _pipeline(kw)
    run_config = {"ops": {"historical_clv": {"config": {"profit_margin": profit_margin}},
                          "customer_metrics": {"config": {"as_of_date": as_of}}}}
    pipeline.materialize(["transactions", "quarantined_transactions", "customer_metrics", "historical_clv"], run_config, pipeline.all_months())
    _print_historical_summary(pipeline)
    _write_outputs(pipeline, ["customer_metrics", "historical_clv"], output)


@main.command()
@click.option("--data-size", type=click.Choice(["small", "medium", "large"]), default="small", show_default=True)
def demo(data_size: str) -> None:
    """Materialize every asset over every partition: one run for the monthly and unpartitioned assets, then one
    run per other period (quarters, years). On the landing files of ``CLV_LANDING_PATH`` when it is set (only
    read, never written); otherwise on the generated sample in ``data/landing``."""
    configured = os.environ.get("CLV_LANDING_PATH")
    if configured:
        click.echo(f"Landing files: {configured} (CLV_LANDING_PATH; no sample is generated)")
        pipeline = Pipeline({"path": configured if urlparse(configured).scheme else str(Path(configured).absolute())}, None)
        pipeline.data_months()  # checks the files, and moves the month partitions back to older data
    else:
        pipeline = Pipeline({"path": str(ensure_sample(data_size, Path("data/landing")).absolute())}, None)
    from clv_assets.definitions import defs
    from clv_assets.partitions import monthly_partitions

    runs: dict[Any, list[str]] = {}
    for spec in defs().resolve_all_asset_specs():
        pdef = spec.partitions_def if spec.partitions_def is not None else monthly_partitions
        runs.setdefault(pdef, []).append(spec.key.to_user_string())
    for pdef, selection in sorted(runs.items(), key=lambda item: item[0] != monthly_partitions):
        keys = pdef.get_partition_keys()
        click.echo(f"Materializing {len(selection)} assets over {len(keys)} partitions ({keys[0]} .. {keys[-1]}) ...")
        pipeline.materialize(sorted(selection), {}, (keys[0], keys[-1]))
    _print_historical_summary(pipeline)


# Commands defined beside their assets' modules (imported here, after the shared options they reuse).
from clv_assets.cli_predictive import predictive  # noqa: E402
from clv_assets.cli_segments import cohort, integrated  # noqa: E402

main.add_command(predictive)
main.add_command(cohort)
main.add_command(integrated)


if __name__ == "__main__":
    sys.exit(main())
