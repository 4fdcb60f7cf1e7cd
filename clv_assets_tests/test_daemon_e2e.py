"""End to end with the real daemon: a month of transactions dropped into the landing folder is ingested by
the sensor's run, and the customer assets refresh through their automation condition; then a model trained on
demand, and a month whose customers suddenly spend far more leads the drift sensor to retrain it."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from clv_assets.sample_data import SampleSpec, simulate

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def latest(instance, asset, partition=None):
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset),
                                              asset_partitions=[partition] if partition else None), limit=1).records
    return records[0].timestamp if records else None


def drift_figures(instance):
    record = instance.fetch_materializations(dg.AssetKey("clv_drift"), limit=1).records[0]
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_new_month_is_ingested_and_downstream_refreshes(tmp_path):
    home, landing = tmp_path / "home", tmp_path / "landing"
    home.mkdir()
    landing.mkdir()
    # One run at a time, as scripts/demo.sh configures it: Spark runs share the machine's cores.
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nconcurrency:\n  runs:\n    max_concurrent_runs: 1\n")
    tx, _ = simulate(SampleSpec(n_customers=150, start="2023-01-01", end="2023-03-31", seed=7))
    tx["transaction_date"] = tx["transaction_date"].dt.strftime("%Y-%m-%d")
    month = tx["transaction_date"].str[:7]
    tx[month < "2023-03"].to_csv(landing / "first_two_months.csv", index=False)

    env = {**os.environ, "DAGSTER_HOME": str(home), "CLV_LANDING_PATH": str(landing), "CLV_WAREHOUSE_URI": str(tmp_path / "wh"),
           "CLV_HISTORY_START": "2023-01-01", "CLV_HISTORY_END": "2023-05-01", "CLV_SENSORS": "on",
           "CLV_SENSOR_INTERVAL_SECONDS": "5", "CLV_SPARK_CONF": "spark.sql.shuffle.partitions=2,spark.driver.memory=1g"}
    os.environ["DAGSTER_HOME"] = str(home)
    instance = dg.DagsterInstance.get()  # create the storage before the daemon opens it
    daemon = subprocess.Popen([sys.executable, "-m", "dagster._daemon", "run", "-w", str(ROOT / "workspace.yaml")],
                              cwd=ROOT, env=env, stdout=open(tmp_path / "daemon.log", "w"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: latest(instance, "transactions", "2023-02-01"), 300, "the first files' run")
        wait_for(lambda: latest(instance, "monthly_cohorts", "2023-01-01"), 600, "customers, CLV and cohorts to refresh")
        first_clv, first_cohort = latest(instance, "historical_clv"), latest(instance, "monthly_cohorts", "2023-01-01")
        assert latest(instance, "transactions", "2023-03-01") is None

        tx[month == "2023-03"].to_csv(landing / "march.csv", index=False)
        wait_for(lambda: latest(instance, "transactions", "2023-03-01"), 300, "the March file's run")
        # March extends January's retention curve: the earlier cohort is refreshed too, not only the latest.
        wait_for(lambda: (latest(instance, "monthly_cohorts", "2023-01-01") or 0) > first_cohort, 600, "the cohorts to refresh again")
        assert latest(instance, "historical_clv") > first_clv
        march_runs = [r for r in instance.get_runs() if r.tags.get("dagster/asset_partition_range_start") == "2023-03-01"]
        assert len(march_runs) == 1

        # On demand: the retrain job (through the daemon's run queue), then its predictions and drift figures.
        subprocess.run([sys.executable, "-m", "dagster", "job", "launch", "-j", "retrain_clv_model", "-w", str(ROOT / "workspace.yaml")],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        wait_for(lambda: latest(instance, "clv_drift"), 600, "the retrain job's clv_model, predictions and drift")
        first_model = latest(instance, "clv_model")
        assert drift_figures(instance)["drifted"] is False  # the model's own data: no drift, no retrain

        # April: every customer comes back and spends ten times their usual order value.
        april = tx[month == "2023-03"].copy()
        april["transaction_id"] = "APR-" + april["transaction_id"].astype(str)
        april["transaction_date"] = "2023-04-" + april["transaction_date"].str[8:10].replace("31", "30")
        april["amount"] = april["amount"] * 10
        april.to_csv(landing / "april.csv", index=False)
        wait_for(lambda: latest(instance, "transactions", "2023-04-01"), 300, "the April file's run")
        wait_for(lambda: (latest(instance, "clv_model") or 0) > first_model, 900, "the drift sensor's retrain")
        retrains = [r for r in instance.get_runs() if "clv/retrain_reason" in r.tags]
        assert len(retrains) == 1 and retrains[0].job_name == "retrain_clv_model"
        assert "predicted CLV" in retrains[0].tags["clv/retrain_reason"] or "PSI" in retrains[0].tags["clv/retrain_reason"]
        wait_for(lambda: instance.get_run_by_id(retrains[0].run_id).is_finished, 300, "the retrain run to finish")
        assert instance.get_run_by_id(retrains[0].run_id).is_success
    finally:
        instance.dispose()
        os.environ.pop("DAGSTER_HOME", None)
        daemon.terminate()
        daemon.wait(30)
        shutil.copy(tmp_path / "daemon.log", "/tmp/clv_daemon_e2e.log") if (tmp_path / "daemon.log").exists() else None
