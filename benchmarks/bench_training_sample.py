"""Benchmark: what the ML models' training sample (``max_training_rows``) and settings cost in accuracy and
save in time.

Run:  .venv/bin/python benchmarks/bench_training_sample.py --warehouse /tmp/bench/wd/warehouse_10000000 \
          [--sizes 50000,100000,250000,0] [--horizon 12] [--variants "rf_num_trees=40;gbt_max_iter=20"]

``--warehouse``: a warehouse holding a materialized ``transactions`` table, e.g. the one
``bench_pipeline.py --keep-warehouse`` leaves behind (``<workdir>/warehouse_<N>``). For each size (0 = no
sample: every customer of the training set) the same out-of-time backtest runs (``predictive.run_backtest``:
ML trained as of A - 2H, everything scored as of A - H against the revenue of (A - H, A]), and the script
prints per ML model: normalized Gini, MAE, RMSE, top-decile capture and the fitting seconds (the three models
then score in one pass, timed once per run). The features and targets are the same for every size, and
every customer of A - H is scored (the pipeline's backtest scores a sample of them above
``max_backtest_customers``); only the ML models' training rows change. ``--variants``:
``MLParams`` settings to compare with the defaults (``;`` between variants, ``,`` between the settings of one),
each run at the first size.

Local Spark (``local[*]``) with the project's defaults; ``CLV_SPARK_CONF`` applies.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", required=True, help="Warehouse with a materialized transactions table.")
    parser.add_argument("--sizes", default="50000,100000,250000,0", help="Training sample sizes (0: no sample).")
    parser.add_argument("--horizon", type=int, default=12)
    parser.add_argument("--as-of", default=None, help="As-of date (default: the last transaction date).")
    parser.add_argument("--variants", default="", help="MLParams settings to compare, e.g. 'rf_num_trees=40;gbt_max_iter=20'.")
    args = parser.parse_args()

    from clv_assets import metrics, predictive
    from clv_assets.spark import SparkResource
    from clv_assets.storage import ParquetTableStore

    spark = SparkResource.from_env().spark_session
    spark.sparkContext.setLogLevel("ERROR")
    store = ParquetTableStore(spark, args.warehouse)
    months = sorted(name for name in store.fs.listdir(store.table_uri("transactions")) if not name.startswith(("_", ".")))
    transactions = store.read("transactions", months)
    as_of = metrics.resolve_as_of(transactions, args.as_of)
    plan = predictive.plan_backtest(transactions, as_of, predictive.check_horizon(args.horizon))
    if not plan.has_ml:
        print(f"No ML backtest on this history: {plan.reason}")
        return 1
    print(f"{args.warehouse}: {len(months)} months; as of {as_of}, {args.horizon}-month horizon")
    print(f"plan: {plan.reason}; customers at the training / scoring cutoff: {plan.train_customers:,} / "
          f"{plan.score_customers:,}; {os.cpu_count()} CPUs")

    sizes = [int(s) for s in args.sizes.split(",")]
    runs = [(size, {}) for size in sizes]
    for variant in filter(None, args.variants.split(";")):
        settings = dict(item.split("=") for item in variant.split(","))
        types = {name: type(value) for name, value in vars(predictive.MLParams()).items()}
        runs.append((sizes[0], {k.strip(): (v.strip().lower() in ("1", "true")) if types[k.strip()] is bool else types[k.strip()](v)
                                for k, v in settings.items()}))
    rows = []
    for size, settings in runs:
        params = predictive.MLParams(**{"max_training_rows": size if size > 0 else 10**12, **settings})
        label = f"{size:,}" if size > 0 else f"all ({plan.train_customers:,})"
        label += "".join(f", {k}={v}" for k, v in settings.items())
        t0 = time.perf_counter()
        # Every customer of A - H scored (no backtest sample), so that only the training rows change between runs.
        result, _ = predictive.run_backtest(transactions, plan, params=params, max_customers=0)
        elapsed = time.perf_counter() - t0
        print(f"  sample {label}: backtest {elapsed:.1f} s, scoring by the three models {result.timings['ml_scoring']:.1f} s", flush=True)
        for model in predictive.ML_MODELS:
            scores = result.metrics.loc[model]
            rows.append((label, model, scores["normalized_gini"], scores["mae"], scores["rmse"],
                         scores["top_decile_capture"], result.timings[model]))
        spark.catalog.clearCache()

    print(f"\n| training sample | model | normalized Gini | MAE | RMSE | top-decile capture | fit s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for label, model, gini, mae, rmse, top, seconds in rows:
        print(f"| {label} | {model} | {gini:.4f} | {mae:.3f} | {rmse:.3f} | {top:.4f} | {seconds:.1f} |")
    print(f"\nmeasured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
