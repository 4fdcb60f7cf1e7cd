"""``clv predictive``: backtest the predictive CLV models, pick the champion and predict every customer's CLV.

Registered on the ``clv`` group in ``clv_assets/cli.py`` (``main.add_command(predictive)``).
"""

from __future__ import annotations

from typing import Any

import click

from clv_assets.cli_common import _pipeline, _write_outputs, landing_options

MODEL_CHOICES = ["champion", "linear_regression", "random_forest", "gradient_boosting", "bgnbd_gamma_gamma", "ensemble"]
PREDICTION_ASSETS = ["transactions", "quarantined_transactions", "clv_features", "clv_model", "clv_predictions"]


@click.command()
@landing_options
@click.option("--model-type", type=click.Choice(MODEL_CHOICES), default="champion", show_default=True,
              help="Model to serve; champion = best backtest (rank sum of normalized Gini and MAE).")
@click.option("--prediction-horizon", type=click.Choice(["3", "6", "12", "24"]), default="12", show_default=True,
              help="Months ahead to predict.")
@click.option("--as-of", default=None, help="As-of date YYYY-MM-DD (default: last transaction date).")
@click.option("--profit-margin", default=0.2, show_default=True, type=float, help="Share of revenue that is profit.")
@click.option("--discount-rate", default=0.01, show_default=True, type=float, help="Monthly discount rate.")
@click.option("--interval-coverage", default=0.8, show_default=True, type=float, help="Coverage of the prediction intervals.")
@click.option("--rf-num-trees", default=40, show_default=True, type=int, help="Trees of the random forest.")
@click.option("--gbt-max-iter", default=20, show_default=True, type=int, help="Boosting rounds of the gradient-boosted trees.")
@click.option("--output", default=None, help="Folder for the result tables (parquet).")
def predictive(model_type: str, prediction_horizon: str, as_of: str | None, profit_margin: float, discount_rate: float,
               interval_coverage: float, rf_num_trees: int, gbt_max_iter: int, output: str | None, **kw: Any) -> None:
    """Predictive CLV: backtest the models on the last horizon, serve the champion, predict every customer."""
    pipeline = _pipeline(kw)
    run_config = {"ops": {
        "clv_features": {"config": {"as_of_date": as_of, "horizon_months": int(prediction_horizon)}},
        "clv_model": {"config": {"model_type": model_type, "interval_coverage": interval_coverage,
                                 "rf_num_trees": rf_num_trees, "gbt_max_iter": gbt_max_iter}},
        "clv_predictions": {"config": {"profit_margin": profit_margin, "discount_rate_monthly": discount_rate}},
    }}
    pipeline.materialize(PREDICTION_ASSETS, run_config, pipeline.all_months())
    _print_summary(pipeline)
    _write_outputs(pipeline, ["clv_features", "clv_model", "clv_predictions"], output)


def _print_summary(pipeline: Any) -> None:
    from clv_assets.predictive import format_table

    table = pipeline.read("clv_model").toPandas()
    first = table.iloc[0]
    click.echo(f"\nBacktest ({first['mode']}): {int(first['horizon_months'])}-month net revenue, "
               f"ML trained as of {first['train_cutoff']}, scored as of {first['score_cutoff']} up to {first['as_of']}")
    click.echo(format_table(table))
    champion = table.loc[table["is_champion"], "model"]
    served = table.loc[table["is_served"], "model"]
    click.echo(f"\nChampion: {champion.iloc[0] if len(champion) else 'none (no backtest)'}   "
               f"served: {served.iloc[0] if len(served) else 'bgnbd_gamma_gamma'}")
    preds = pipeline.read("clv_predictions").toPandas()
    click.echo("\nPredictions")
    click.echo(f"  customers                {len(preds):>14,}")
    click.echo(f"  predicted revenue        {preds['predicted_revenue'].sum():>14,.2f}")
    click.echo(f"  predicted CLV            {preds['predicted_clv'].sum():>14,.2f}")
    click.echo(f"  mean P(alive)            {preds['probability_alive'].mean():>14.3f}")
    top = preds.nlargest(10, "predicted_clv")[["customer_id", "predicted_revenue", "prediction_lower", "prediction_upper",
                                                "predicted_clv", "probability_alive"]]
    click.echo("\nTop 10 customers by predicted CLV\n" + top.round(2).to_string(index=False))
