"""``clv cohort``: acquisition cohorts by month, quarter or year from the command line.
``clv integrated``: historical and predicted CLV joined with RFM segments, and the business summary.

Registered on the main group in ``clv_assets/cli.py``.
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
    pipeline.materialize(["transactions", "quarantined_transactions", "customer_metrics", "historical_clv",
                          "customer_monthly_activity"], run_config, pipeline.all_months())
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


INTEGRATED_ASSETS = ["transactions", "quarantined_transactions", "customer_metrics", "historical_clv", "clv_features",
                     "clv_model", "clv_predictions", "rfm_segments", "clv_insights", "clv_summary"]


def _print_integrated(pipeline) -> None:
    import pandas as pd


    summary = pipeline.read("clv_summary").toPandas()
    table = pipeline.read("clv_insights").toPandas()
    pd.set_option("display.width", 160)
    total = summary[summary.section == "total"].iloc[0]
    risk = summary[summary.section == "revenue_at_risk"].iloc[0]
    click.echo(f"\nCLV insights (as of {table['as_of_date'].iloc[0]}; tiers on {table['tier_basis'].iloc[0]})")
    click.echo(f"  customers                    {int(total['customers']):>14,}")
    click.echo(f"  average historical CLV       {total['avg_historical_clv']:>14,.2f}")
    click.echo(f"  average predicted CLV        {total['avg_predicted_clv']:>14,.2f}")
    click.echo(f"  total business value         {total['total_value']:>14,.2f}   (historical + predicted CLV)")
    click.echo(f"  revenue at risk              {risk['predicted_clv']:>14,.2f}   ({int(risk['customers']):,} customers likely to churn)")

    def show(section: str, title: str, columns=("name", "customers", "historical_clv", "predicted_clv", "share_of_predicted_clv")):
        rows = summary[summary.section == section][list(columns)].copy()
        for c in ("historical_clv", "predicted_clv"):
            if c in rows:
                rows[c] = rows[c].map("{:,.2f}".format)
        if "share_of_predicted_clv" in rows:
            rows["share_of_predicted_clv"] = rows["share_of_predicted_clv"].map(lambda v: "-" if pd.isna(v) else f"{v:.1%}")
        click.echo(f"\n{title}\n" + rows.rename(columns=lambda c: c.replace("_", " ")).to_string(index=False))

    show("tier", "By CLV tier")
    show("acquisition_channel", "By acquisition channel")
    show("category", "By product category (predicted CLV allocated by each customer's purchases)")
    show("top_customer", "Top customers by predicted CLV", ("rank", "name", "historical_clv", "predicted_clv"))
    for column, title in (("clv_segment_alignment", "CLV tier vs RFM segment"), ("retention_priority", "Retention priority"),
                          ("recommended_action", "Recommended actions")):
        values = table[column].str.replace(r" \(.*\)$", "", regex=True) if column == "clv_segment_alignment" else table[column]
        click.echo(f"\n{title}\n" + values.value_counts().rename_axis(None).to_string())


@click.command("integrated")
@landing_options
@click.option("--rfm-segments-path", default=None, help="Segments from your RFM system (CSV/parquet with customer_id, segment).")
@click.option("--tier-basis", type=click.Choice(["predicted_clv", "historical_clv", "total_clv"]), default="predicted_clv",
              show_default=True, help="Value the Platinum/Gold/Silver/Bronze tiers rank on.")
@click.option("--prediction-horizon", type=click.Choice(["3", "6", "12", "24"]), default="12", show_default=True)
@click.option("--profit-margin", default=0.2, show_default=True, type=float, help="Share of revenue that is profit.")
@click.option("--churn-threshold", default=0.5, show_default=True, type=float, help="Churn probability counted as likely to churn.")
@click.option("--as-of", default=None, help="As-of date YYYY-MM-DD (default: last transaction date).")
@click.option("--output", default=None, help="Folder for the result tables (parquet).")
def integrated(rfm_segments_path: str | None, tier_basis: str, prediction_horizon: str, profit_margin: float,
               churn_threshold: float, as_of: str | None, output: str | None, **kw: Any) -> None:
    """Historical and predicted CLV with RFM segments: tiers, alignment, retention priorities, actions, summary."""
    pipeline = _pipeline(kw)
    run_config = {"ops": {
        "customer_metrics": {"config": {"as_of_date": as_of}},
        "historical_clv": {"config": {"profit_margin": profit_margin}},
        "clv_features": {"config": {"as_of_date": as_of, "horizon_months": int(prediction_horizon)}},
        "clv_predictions": {"config": {"profit_margin": profit_margin}},
        "rfm_segments": {"config": {"segments_path": rfm_segments_path}},
        "clv_insights": {"config": {"tier_basis": tier_basis, "churn_threshold": churn_threshold}},
    }}
    pipeline.materialize(INTEGRATED_ASSETS, run_config, pipeline.all_months())
    _print_integrated(pipeline)
    _write_outputs(pipeline, ["historical_clv", "clv_predictions", "rfm_segments", "clv_insights", "clv_summary"], output)
