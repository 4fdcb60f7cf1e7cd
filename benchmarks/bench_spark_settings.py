"""Spark settings against each other, on a warehouse the pipeline benchmark kept (``--keep-warehouse``).

Each setting (``CLV_SPARK_CONF`` syntax, on top of the project's defaults) gets its own process, since JVM
options only apply when the JVM starts, and the settings run one after the other. In each, after a warm-up,
the same steps run ``--repeat`` times and the best time is printed:

- ``customer_metrics``: ``clv_assets.metrics.customer_metrics`` on every transaction;
- ``monthly_cohorts``: ``clv_assets.cohorts.monthly_activity`` and the monthly ``cohort_table`` built from it;
- ``clv_features``: ``clv_assets.features.build_features`` as of the last transaction date;
- ``linear_model_input``: the linear model's input (60 signed logs of the features assembled into a vector)
  for the stored feature table, as ``clv_model`` builds it, without the limit ``predictive.fit_ml`` sets.

Outputs go to Spark's no-op sink: only the computation is timed.

    .venv/bin/python benchmarks/bench_spark_settings.py --warehouse /tmp/bench/wd/warehouse_10000000 \\
        --settings "" "spark.driver.extraJavaOptions=-XX:+UseG1GC" "spark.sql.codegen.hugeMethodLimit=8000"

("" is the project's defaults; in local mode they include ``-XX:+UseParallelGC``, and G1 is Java 17's own
default.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEPS = ("customer_metrics", "monthly_cohorts", "clv_features", "linear_model_input")


def child(warehouse: str, repeat: int) -> None:
    from pyspark.ml.feature import VectorAssembler

    from clv_assets import cohorts, features, metrics, predictive
    from clv_assets.spark import SparkResource

    spark = SparkResource.from_env().spark_session
    spark.sparkContext.setLogLevel("ERROR")
    months = sorted(p for p in os.listdir(f"{warehouse}/transactions") if not p.startswith(("_", ".")))
    tx = spark.read.parquet(*[f"{warehouse}/transactions/{m}" for m in months])
    customers = spark.read.parquet(f"{warehouse}/customer_metrics")
    clv = spark.read.parquet(f"{warehouse}/historical_clv")
    feats = spark.read.parquet(f"{warehouse}/clv_features")
    as_of = metrics.resolve_as_of(tx)
    levels = features.feature_levels(tx, as_of)
    columns = features.feature_columns(feats)
    signed_logs = predictive._signed_log_columns(columns).split(", ")  # noqa: SLF001 - the model's own input

    def noop(df) -> None:
        df.write.format("noop").mode("overwrite").save()

    def run(step: str) -> None:
        if step == "customer_metrics":
            noop(metrics.customer_metrics(tx, as_of))
        elif step == "monthly_cohorts":
            table = cohorts.cohort_table(cohorts.monthly_activity(tx, as_of), customers, clv, "monthly")
            table.count()
            table.unpersist()
        elif step == "clv_features":
            noop(features.build_features(tx, as_of, **levels))
        else:
            assembler = VectorAssembler(inputCols=[f"lin__{c}" for c in columns], outputCol="features")
            noop(assembler.transform(feats.selectExpr("customer_id", *signed_logs)).select("customer_id", "features"))

    noop(tx.groupBy("category").count())  # warm-up: JVM, file listing
    for step in STEPS:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            run(step)
            times.append(time.perf_counter() - start)
        print(json.dumps({"step": step, "best": min(times), "all": times}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warehouse", required=True, help="A warehouse kept by bench_pipeline.py --keep-warehouse.")
    ap.add_argument("--settings", nargs="+", default=["", "spark.driver.extraJavaOptions=-XX:+UseG1GC"],
                    help='Settings to compare, each in CLV_SPARK_CONF syntax ("" = the defaults).')
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.warehouse, args.repeat)
        return
    results: dict[str, dict[str, float]] = {}
    for setting in args.settings:
        env = {**os.environ, "CLV_SPARK_CONF": setting}
        out = subprocess.run([sys.executable, __file__, "--child", "--warehouse", args.warehouse, "--repeat", str(args.repeat)],
                             env=env, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"setting {setting!r} failed:\n{out.stderr[-3000:]}")
        rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        results[setting] = {r["step"]: r["best"] for r in rows}
        print(f"{setting or '(defaults)'}: " + ", ".join(f"{r['step']} {r['best']:.2f} s" for r in rows), flush=True)
    width = max(len(s or "(defaults)") for s in results)
    print(f"\nbest of {args.repeat}, seconds\n{'setting':<{width}}  " + "  ".join(f"{s:>18}" for s in STEPS))
    for setting, steps in results.items():
        print(f"{setting or '(defaults)':<{width}}  " + "  ".join(f"{steps.get(s, float('nan')):>18.2f}" for s in STEPS))


if __name__ == "__main__":
    main()
