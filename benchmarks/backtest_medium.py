"""Benchmark: the predictive-CLV backtest on the ``medium`` sample (20,000 customers, 2023-01 to 2025-12).

Run:  .venv/bin/python benchmarks/backtest_medium.py [--horizon 12] [--customers 20000] [--seed 42] [--log-target]

Generates the sample in memory, runs the out-of-time backtest of every model at the horizon (ML trained on
features as of A - 2H with the target (A - 2H, A - H], everything scored on features as of A - H against the
revenue of (A - H, A]), prints the metrics table and checks the issue's "must show":

- the champion beats the naive baseline on normalized Gini and MAE,
- the champion is at least as good as BG/NBD + Gamma-Gamma on normalized Gini and MAE,
- its 80% intervals cover 77-83% of the backtest customers held out from calibration.

Exits non-zero when a check fails. Local Spark with 2 cores (``--master`` to change).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

from pyspark.sql import functions as F


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=int, default=12)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--log-target", action="store_true", help="ML models learn log1p(revenue).")
    args = parser.parse_args()

    from clv_assets import predictive
    from clv_assets.sample_data import SampleSpec, simulate
    from clv_assets.spark import SparkResource

    started = time.perf_counter()
    spec = SampleSpec(n_customers=args.customers, seed=args.seed)
    tx, _ = simulate(spec)
    tx["transaction_date"] = tx["transaction_date"].dt.date
    spark = SparkResource(master=args.master, spark_config={"spark.sql.shuffle.partitions": "4"}).spark_session
    spark.sparkContext.setLogLevel("ERROR")
    transactions = (
        spark.createDataFrame(tx)
        .withColumn("transaction_month", F.trunc("transaction_date", "month"))
        .withColumn("source_file", F.lit("simulated"))
        .cache()
    )
    print(f"{len(tx):,} transactions of {args.customers:,} customers, {spec.start} .. {spec.end} "
          f"(simulated and loaded in {time.perf_counter() - started:.1f}s)")

    as_of = dt.date.fromisoformat(spec.end)
    t0 = time.perf_counter()
    plan = predictive.plan_backtest(transactions, as_of, args.horizon)
    print(f"plan: {plan.mode}: {plan.reason}; customers at train/score cutoff: {plan.train_customers:,} / {plan.score_customers:,}")
    result, _ = predictive.run_backtest(transactions, plan, params=predictive.MLParams(log_target=args.log_target))
    elapsed = time.perf_counter() - t0
    table = predictive.metrics_table(result, result.champion, {})
    print(f"\nBacktest, {args.horizon}-month net revenue, scored on {len(result.predictions):,} customers "
          f"(coverage on the {int(table['coverage_customers'].iloc[0]):,} held out from interval calibration):\n")
    print(predictive.format_table(table))
    print(f"\nchampion: {result.champion} (lowest rank sum of normalized Gini and MAE)")
    print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items()) + f"; backtest total {elapsed:.1f}")

    m = result.metrics
    champ, bg, naive = m.loc[result.champion], m.loc[predictive.BTYD_MODEL], m.loc[predictive.NAIVE]
    checks = {
        "champion beats naive on Gini": champ["normalized_gini"] > naive["normalized_gini"],
        "champion beats naive on MAE": champ["mae"] < naive["mae"],
        "champion Gini >= BG/NBD + Gamma-Gamma": champ["normalized_gini"] >= bg["normalized_gini"],
        "champion MAE <= BG/NBD + Gamma-Gamma": champ["mae"] <= bg["mae"],
        "champion 80% interval coverage in [0.77, 0.83]": 0.77 <= champ["coverage"] <= 0.83,
    }
    print()
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    print(f"\ntotal wall time {time.perf_counter() - started:.1f}s")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
