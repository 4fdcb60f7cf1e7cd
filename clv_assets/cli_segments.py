"""``clv cohort``: acquisition cohorts by month, quarter or year from the command line.

Register it on the main group with ``main.add_command(cohort)`` (``from clv_assets.cli_segments import cohort``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from clv_assets.cli_common import _pipeline, _write_outputs, landing_options

MAX_PRINTED_PERIODS = 12


def _period_partitions(period: str):
    from clv_assets import partitions

    return {"monthly": partitions.monthly_partitions, "quarterly": partitions.quarterly_partitions,
            "yearly": partitions.yearly_partitions}[period]


def _period_keys(period: str, months: tuple[str, str]) -> tuple[str, str]:
    """The first and last cohort partition overlapping the data's months (clamped to the partitions)."""
    import datetime as dt

    from clv_assets.cohorts import period_start

    first, last = (period_start(dt.date.fromisoformat(m), period).isoformat() for m in months)
    keys = [k for k in _period_partitions(period).get_partition_keys() if first <= k <= last]
    if not keys:
        raise click.ClickException(f"The data ({months[0]} .. {months[1]}) lies outside the {period} cohort partitions.")
    return keys[0], keys[-1]


def _print_cohorts(summary, matrix, period: str) -> None:
    import pandas as pd

    pd.set_option("display.width", 160)
    pd.set_option("display.max_columns", 40)
    if summary.empty:
        click.echo("\nNo cohorts: no customer has a purchase.")
        return
    table = pd.DataFrame({
        "cohort": summary["cohort_label"],
        "customers": summary["cohort_size"],
        "net revenue": summary["total_revenue"].map("{:,.2f}".format),
        "avg CLV": summary["avg_clv"].map("{:,.2f}".format),
        "retention": summary["retention_rate"].map(lambda v: "-" if pd.isna(v) else f"{v:.1%}"),
        "churn": summary["churn_rate"].map(lambda v: "-" if pd.isna(v) else f"{v:.1%}"),
        "repeat": summary["repeat_rate"].map("{:.1%}".format),
        "orders/cust": summary["avg_orders_per_customer"].map("{:.2f}".format),
        "AOV": summary["avg_order_value"].map(lambda v: "-" if pd.isna(v) else f"{v:,.2f}"),
        "months": summary["months_tracked"],
    })
    click.echo(f"\n{period.capitalize()} cohorts (as of {summary['as_of_date'].iloc[0]}; retention = share active in the "
               "last complete period, '-' = cohort too young)")
    click.echo(table.to_string(index=False))
    periods = [c for c in matrix.columns if c.startswith("period_")][:MAX_PRINTED_PERIODS + 1]
    grid = matrix.set_index("cohort_label")[periods].apply(lambda col: col.map(lambda v: "" if pd.isna(v) else f"{v:.0%}"))
    grid.columns = [c.removeprefix("period_") for c in periods]
    grid.index.name = "cohort \\ periods since acquisition"
    click.echo("\nRetention (share of the cohort buying in each period since acquisition)")
    click.echo(grid.to_string())


@click.command("cohort")
@landing_options
@click.option("--cohort-period", type=click.Choice(["monthly", "quarterly", "yearly"]), default="monthly", show_default=True,
              help="Group customers by the month, quarter or year of their first purchase.")
@click.option("--profit-margin", default=0.2, show_default=True, type=float, help="For the cohorts' average historical CLV.")
@click.option("--as-of", default=None, help="As-of date YYYY-MM-DD (default: last transaction date).")
@click.option("--output", default=None, help="Folder for the result tables (parquet).")
def cohort(cohort_period: str, profit_margin: float, as_of: str | None, output: str | None, **kw: Any) -> None:
    """Acquisition cohorts: size, revenue, average CLV, retention and churn, and the retention curve."""
    from clv_assets import cohorts
    from clv_assets.storage import ParquetTableStore

    pipeline = _pipeline(kw)
    months = pipeline.data_months()
    run_config = {"ops": {"historical_clv": {"config": {"profit_margin": profit_margin}},
                          "customer_metrics": {"config": {"as_of_date": as_of}}}}
    pipeline.materialize(["transactions", "quarantined_transactions", "customer_metrics", "historical_clv"], run_config, months)
    # The cohort partitions are months, quarters or years: a run of their own over the periods of the data.
    asset = f"{cohort_period}_cohorts"
    first, last = _period_keys(cohort_period, months)
    pipeline.materialize([asset], {}, (first, last))

    keys = _period_partitions(cohort_period).get_partition_keys()
    table = ParquetTableStore(pipeline.spark, pipeline.resources["io_manager"].base_uri).read(asset, [k for k in keys if first <= k <= last])
    summary = cohorts.cohort_summary(table).orderBy("cohort_start").toPandas()
    matrix = cohorts.retention_matrix(table).toPandas() if not summary.empty else None
    _print_cohorts(summary, matrix, cohort_period)

    if output:
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        table.orderBy("cohort_start", "period_number").toPandas().to_parquet(out / f"{asset}.parquet", index=False)
        written = [f"{asset}.parquet"]
        if matrix is not None:
            matrix.to_parquet(out / f"{cohort_period}_retention_matrix.parquet", index=False)
            written.append(f"{cohort_period}_retention_matrix.parquet")
        click.echo(f"\nWrote {', '.join(written)} to {out.absolute()}")
        _write_outputs(pipeline, ["customer_metrics", "historical_clv"], output)
