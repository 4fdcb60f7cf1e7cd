"""The same definitions on a real Spark cluster: a standalone master with one worker, and a Spark Connect server.

Everything comes from the pyspark wheel (``bin/spark-class``, ``bin/spark-submit`` and the spark-connect jar in
its ``jars/``), started on loopback with free ports, logs and work directories under the test's temporary
folder, and always stopped (process groups) when the module ends. Each test materializes the whole graph over
the sample's months in a fresh Python process whose environment (``CLV_SPARK_MASTER`` / ``CLV_SPARK_REMOTE``)
selects the cluster, checks the results against an independent pandas computation from the landing files, and
checks on the cluster's side that the work ran there.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SPARK_HOME = Path(__import__("pyspark").__file__).parent
START_TIMEOUT = 180  # seconds for a master, worker or Connect server to come up
RUN_TIMEOUT = 1500  # seconds for the whole graph (a few minutes on an idle 2-core machine)
HISTORY = {"CLV_HISTORY_START": "2023-01-01", "CLV_HISTORY_END": "2026-01-01"}  # the small sample's 36 months
# Small data: interpreted plans beat compiling whole-stage code; light tree models keep MLlib's share short.
SPARK_CONF = "spark.sql.shuffle.partitions=2,spark.sql.codegen.wholeStage=false"
# The ensemble is served so that all three MLlib models are refit and saved on the cluster (only what serves is refit).
MODEL_CONFIG = {"rf_num_trees": 10, "gbt_max_iter": 5, "model_type": "ensemble"}
ML_MODELS = ("linear_regression", "random_forest", "gradient_boosting")
RESULT_MARK = "CLV_RESULT "
JOB_DONE = re.compile(r"Job \d+ finished")

# What the fresh process runs: `clv demo`'s loop (one run per partitions definition, every asset and check of
# the project's Definitions), then a JSON line describing the session it used and what it materialized.
DRIVER = r"""
import json, os, sys
from clv_assets.cli_common import Pipeline
from clv_assets.definitions import defs
from clv_assets.partitions import monthly_partitions
from clv_assets.spark import is_spark_connect

pipeline = Pipeline({"path": os.environ["CLV_LANDING_PATH"]}, None)
spark = pipeline.spark
runs = {}
for spec in defs().resolve_all_asset_specs():
    pdef = spec.partitions_def if spec.partitions_def is not None else monthly_partitions
    runs.setdefault(pdef, []).append(spec.key.to_user_string())
materialized, checks = {}, []
for pdef, selection in sorted(runs.items(), key=lambda item: item[0] != monthly_partitions):
    keys = pdef.get_partition_keys()
    config = {"ops": {"clv_model": {"config": json.loads(sys.argv[1])}}} if "clv_model" in selection else {}
    result = pipeline.materialize(sorted(selection), config, (keys[0], keys[-1]))
    for event in result.get_asset_materialization_events():
        materialized.setdefault(event.asset_key.to_user_string(), []).append(event.partition)
    checks += [{"asset": e.asset_key.to_user_string(), "check": e.check_name, "passed": e.passed,
                "severity": e.severity.value} for e in result.get_asset_check_evaluations()]
if is_spark_connect(spark):
    from pyspark import SparkContext
    session = {"connect": True, "session_id": spark.session_id, "server_master": spark.conf.get("spark.master"),
               "local_jvm": SparkContext._gateway is not None}
else:
    session = {"connect": False, "master": spark.sparkContext.master, "app_id": spark.sparkContext.applicationId}
spark.stop()
print("CLV_RESULT " + json.dumps({"session": session, "materialized": materialized, "checks": checks}), flush=True)
"""


# --------------------------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_env(tmp: Path) -> dict[str, str]:
    """The environment of every Spark process here: the wheel's Spark, loopback only, files under ``tmp``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLV_", "SPARK_", "PYSPARK_")) and k not in ("DAGSTER_HOME", "HADOOP_CONF_DIR")}
    (tmp / "conf").mkdir(parents=True, exist_ok=True)
    return {**env, "SPARK_HOME": str(SPARK_HOME), "SPARK_CONF_DIR": str(tmp / "conf"), "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": str(tmp / "logs"), "SPARK_DAEMON_MEMORY": "512m", "PYSPARK_PYTHON": sys.executable}


class Daemon:
    """A Spark server process in its own process group, logging to a file."""

    def __init__(self, name: str, args: list[str], tmp: Path):
        self.name, self.log = name, tmp / f"{name}.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(args, env=spark_env(tmp), cwd=tmp, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            stop_group(self.proc)


def stop_group(proc: subprocess.Popen, grace: float = 20) -> None:
    """Stop a process and everything it started (its process group): TERM, then KILL after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_for(predicate, what: str, *daemons: Daemon, timeout: float = START_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for daemon in daemons:
            daemon.check_alive()
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(1)
    logs = "\n".join(f"--- {d.name}\n{d.log_text()[-2000:]}" for d in daemons)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    """The small sample (about 1,000 customers, 2023-01 to 2025-12), one CSV per month."""
    from clv_assets.sample_data import SIZES, SampleSpec, write_sample

    folder = tmp_path_factory.mktemp("cluster_data") / "landing"
    write_sample(SampleSpec(n_customers=SIZES["small"], seed=42), folder)
    return folder


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    """A standalone master and one worker (2 cores, 2 GB) on loopback."""
    tmp = tmp_path_factory.mktemp("standalone")
    port, ui = free_port(), free_port()
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    daemons = []
    try:
        master = Daemon("master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                   "--port", str(port), "--webui-port", str(ui)], tmp)
        daemons.append(master)
        url = f"spark://127.0.0.1:{port}"
        wait_for(lambda: get_json(f"http://127.0.0.1:{ui}/json/")["status"] == "ALIVE", "the master", master)
        worker = Daemon("worker", [spark_class, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
                                   "--cores", "2", "--memory", "2g", "--work-dir", str(tmp / "work"),
                                   "--webui-port", str(free_port())], tmp)
        daemons.append(worker)
        wait_for(lambda: get_json(f"http://127.0.0.1:{ui}/json/")["aliveworkers"] == 1, "the worker", master, worker)
        yield {"url": url, "json": f"http://127.0.0.1:{ui}/json/", "work": tmp / "work", "daemons": daemons}
    finally:
        for daemon in reversed(daemons):
            daemon.stop()


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory):
    """A Spark Connect server (``SparkConnectServer`` from the wheel's spark-connect jar) with a local[2] driver."""
    tmp = tmp_path_factory.mktemp("connect")
    port = free_port()
    assert list((SPARK_HOME / "jars").glob("spark-connect_*.jar")), "the pyspark wheel has no spark-connect jar"
    server = Daemon("connect-server", [
        str(SPARK_HOME / "bin" / "spark-submit"), "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--name", "clv-connect-server", "--master", "local[2]", "--driver-memory", "2g",
        "--conf", "spark.connect.grpc.binding.address=127.0.0.1", "--conf", f"spark.connect.grpc.binding.port={port}",
        "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.session.timeZone=UTC",
    ], tmp)
    try:
        wait_for(lambda: "Spark Connect server started" in server.log_text() and listening(port), "the Connect server", server)
        yield {"url": f"sc://127.0.0.1:{port}", "daemon": server}
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------- the graph
def materialize_everything(tmp: Path, landing: Path, cluster_env: dict[str, str], warehouse: str | None = None) -> tuple[dict, Path]:
    """Run the whole graph in a fresh Python process on the given cluster; return its report and the warehouse
    (by default a local folder under ``tmp``)."""
    warehouse, home = warehouse or tmp / "warehouse", tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**spark_env(tmp), "DAGSTER_HOME": str(home), "CLV_LANDING_PATH": str(landing), "CLV_WAREHOUSE_URI": str(warehouse),
           "CLV_LOG_LEVEL": "WARNING", **HISTORY, **cluster_env}
    log = tmp / "driver.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(MODEL_CONFIG)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            stop_group(proc)
            raise AssertionError(f"the graph did not finish in {RUN_TIMEOUT}s:\n{log.read_text()[-5000:]}") from None
        finally:
            stop_group(proc, grace=5)  # nothing it started outlives it
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, f"the run failed ({proc.returncode}):\n{text[-5000:]}"
    report = json.loads(next(line for line in text.splitlines() if line.startswith(RESULT_MARK))[len(RESULT_MARK):])
    return report, warehouse


def check_everything_materialized(report: dict) -> None:
    """Every asset of the Definitions, over every partition, and every asset check passed."""
    from clv_assets.definitions import defs

    specs = list(defs().resolve_all_asset_specs())
    assert {s.key.to_user_string() for s in specs} == set(report["materialized"])
    for spec in specs:
        got = report["materialized"][spec.key.to_user_string()]
        expected = [None] if spec.partitions_def is None else _partition_keys(spec.key.to_user_string())
        assert sorted(got, key=str) == sorted(expected, key=str), spec.key.to_user_string()
    failed = [c for c in report["checks"] if not c["passed"] and c["severity"] == "ERROR"]
    assert report["checks"] and not failed, failed


def _partition_keys(asset: str) -> list[str]:
    """The asset's partition keys over 2023-01 .. 2025-12 (months, quarters or years)."""
    months = pd.date_range("2023-01-01", "2025-12-01", freq="MS")
    step = {"quarterly_cohorts": 3, "yearly_cohorts": 12}.get(asset, 1)
    return [m.strftime("%Y-%m-%d") for m in months if (m.month - 1) % step == 0]


def _texts(values: pd.Series) -> list[str | None]:
    return [None if pd.isna(v) else str(v)[:10] for v in values]


def check_results(warehouse: Path, landing: Path, warehouse_uri: str | None = None) -> None:
    """The stored tables against an independent pandas computation from the landing CSVs. ``warehouse`` is a
    local folder: the warehouse itself, or a copy of the one at ``warehouse_uri``."""
    frames = []
    for path in sorted(landing.glob("transactions_*.csv")):
        frame = pd.read_csv(path, dtype={"customer_id": str, "transaction_id": str})
        frames.append(frame.assign(file=path.name, row=range(1, len(frame) + 1)))
    raw = pd.concat(frames, ignore_index=True)
    raw["transaction_date"] = pd.to_datetime(raw["transaction_date"]).dt.date

    # Nothing lost: every landing row is either a transaction or quarantined (by file and row number).
    quarantined = pd.read_parquet(warehouse / "quarantined_transactions")
    assert len(quarantined) <= 0.01 * len(raw)
    rejected = set(zip(quarantined["source_file"].map(lambda f: Path(f).name), quarantined["source_row"]))
    kept = raw[[key not in rejected for key in zip(raw["file"], raw["row"])]]
    transactions = pd.read_parquet(warehouse / "transactions")  # every month's folder
    assert len(transactions) == len(kept) and set(transactions["transaction_id"]) == set(kept["transaction_id"])
    # One folder per month partition, each holding exactly that month's rows.
    month_rows = pd.Series([str(d)[:7] for d in kept["transaction_date"]]).value_counts()
    folders = sorted((warehouse / "transactions").iterdir())
    assert [f.name for f in folders] == _partition_keys("transactions")
    for folder in folders:
        assert len(pd.read_parquet(folder)) == month_rows.get(folder.name[:7], 0), folder.name

    purchases = kept[kept["amount"] > 0]
    expected = pd.DataFrame({
        "net_revenue": kept.groupby("customer_id")["amount"].sum(),
        "num_orders": purchases.groupby("customer_id").size(),
        "total_revenue": purchases.groupby("customer_id")["amount"].sum(),
        "first_purchase_date": purchases.groupby("customer_id")["transaction_date"].min(),
        "last_purchase_date": purchases.groupby("customer_id")["transaction_date"].max(),
    }).fillna({"num_orders": 0, "total_revenue": 0.0})
    metrics = pd.read_parquet(warehouse / "customer_metrics").set_index("customer_id").sort_index()
    assert list(metrics.index) == sorted(expected.index)
    expected = expected.loc[metrics.index]
    np.testing.assert_allclose(metrics["net_revenue"], expected["net_revenue"], rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(metrics["total_revenue"], expected["total_revenue"], rtol=1e-9, atol=1e-6)
    assert (metrics["num_orders"] == expected["num_orders"]).all()
    for column in ("first_purchase_date", "last_purchase_date"):
        assert _texts(metrics[column]) == _texts(expected[column]), column

    clv = pd.read_parquet(warehouse / "historical_clv").set_index("customer_id").loc[metrics.index]
    np.testing.assert_allclose(clv["historical_clv"], 0.2 * expected["net_revenue"], rtol=1e-9, atol=1e-6)

    # Predictive CLV: the MLlib models were backtested and saved, and every customer with a purchase got a prediction.
    model = pd.read_parquet(warehouse / "clv_model").set_index("model")
    assert set(ML_MODELS) <= set(model.index)
    assert np.isfinite(model.loc[list(ML_MODELS), ["mae", "rmse", "normalized_gini"]].to_numpy(dtype=float)).all()
    assert model["is_champion"].sum() == 1 and model.index[model["is_served"]].tolist() == ["ensemble"]
    for name in ML_MODELS:
        uri = model.loc[name, "artifact_path"]
        local = warehouse / uri.removeprefix(f"{warehouse_uri}/") if warehouse_uri else Path(uri.removeprefix("file:"))
        assert (local / "metadata").is_dir(), name
    predictions = pd.read_parquet(warehouse / "clv_predictions")
    assert len(predictions) == purchases["customer_id"].nunique() > 0
    assert predictions["customer_id"].is_unique
    assert set(predictions["model_name"]) == {model.index[model["is_served"]][0]}
    assert np.isfinite(predictions["predicted_clv"]).all() and (predictions["predicted_revenue"] >= 0).all()

    # Cohorts: each customer with a purchase in exactly one acquisition month.
    monthly = pd.read_parquet(warehouse / "monthly_cohorts")
    summary = monthly[monthly["period_number"] == 0]
    assert summary["cohort_size"].sum() == purchases["customer_id"].nunique()


# --------------------------------------------------------------------------------------------- the tests
@pytest.mark.slow
def test_whole_graph_on_a_standalone_cluster(standalone, landing, tmp_path):
    cluster = {"CLV_SPARK_MASTER": standalone["url"],
               "CLV_SPARK_CONF": f"{SPARK_CONF},spark.driver.memory=1g,spark.executor.memory=1g,spark.cores.max=2"}
    report, warehouse = materialize_everything(tmp_path, landing, cluster)

    session = report["session"]
    assert session == {"connect": False, "master": standalone["url"], "app_id": session["app_id"]}
    # The master ran the application to its end, and the worker's executor ran its tasks.
    app = wait_for(lambda: next((a for a in get_json(standalone["json"])["completedapps"] if a["id"] == session["app_id"]), None),
                   "the application to complete on the master", *standalone["daemons"], timeout=60)
    assert app["state"] == "FINISHED" and app["name"] == "clv-assets"
    executor_logs = list((standalone["work"] / session["app_id"]).glob("*/stderr"))
    assert executor_logs and sum(p.read_text(errors="replace").count("Finished task") for p in executor_logs) > 100
    check_everything_materialized(report)
    check_results(warehouse, landing)


@pytest.mark.slow
def test_whole_graph_on_spark_connect(connect_server, landing, tmp_path):
    server = connect_server["daemon"]
    jobs_before = len(JOB_DONE.findall(server.log_text()))
    report, warehouse = materialize_everything(tmp_path, landing, {"CLV_SPARK_REMOTE": connect_server["url"],
                                                                  "CLV_SPARK_CONF": SPARK_CONF})

    session = report["session"]
    assert session["connect"] and session["server_master"] == "local[2]"
    assert not session["local_jvm"]  # the client never started a JVM: all Spark work ran in the server
    server_log = server.log_text()
    assert f"sessionId: {session['session_id']}" in server_log
    assert len(JOB_DONE.findall(server_log)) - jobs_before > 100  # the jobs ran in the server's driver
    check_everything_materialized(report)
    check_results(warehouse, landing)


# ----------------------------------------------------------------------- without a cluster (fast checks)
class _ConnectLike:
    """Stands in for a Spark Connect session: no JVM (no ``_jsc``), a client with the server's host."""

    def __init__(self, host: str = "127.0.0.1"):
        self.client = type("Client", (), {"host": host})()


class _ClassicLike:
    _jsc = None

    def __init__(self, master: str):
        self.sparkContext = type("Context", (), {"master": master})()


def test_warehouse_swaps_on_s3_without_a_jvm(s3_endpoint, monkeypatch):
    """Under Spark Connect the warehouse's directory operations run on the client through pyarrow; S3 has no
    directory rename, so the swap into place copies then deletes."""
    import boto3

    from clv_assets.storage import ParquetTableStore

    monkeypatch.setenv("CLV_S3_ENDPOINT_URL", s3_endpoint)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="warehouse")
    store = ParquetTableStore(_ConnectLike(), "s3a://warehouse/wh")

    def stage(name: str, files: dict[str, bytes]) -> str:
        for key, body in files.items():
            s3.put_object(Bucket="warehouse", Key=f"wh/_staging/{name}/{key}", Body=body)
        return f"s3a://warehouse/wh/_staging/{name}"

    def table(prefix: str) -> dict[str, bytes]:
        listed = s3.list_objects_v2(Bucket="warehouse", Prefix=prefix).get("Contents", [])
        return {o["Key"].removeprefix(prefix): s3.get_object(Bucket="warehouse", Key=o["Key"])["Body"].read()
                for o in listed if not o["Key"].endswith("/")}  # not pyarrow's directory markers

    store._swap_in(stage("t-1", {"part-0.parquet": b"v1", "sub/part-1.parquet": b"v1b"}), store.table_uri("t"))
    assert table("wh/t/") == {"part-0.parquet": b"v1", "sub/part-1.parquet": b"v1b"}
    store._swap_in(stage("t-2", {"part-0.parquet": b"v2"}), store.table_uri("t"))  # replaces, previous removed
    assert table("wh/t/") == {"part-0.parquet": b"v2"} and not table("wh/t.previous")
    assert not table("wh/_staging/") and store.exists("t") and not store.exists("u")

    store.fs.copy_dir(store.table_uri("t"), store.table_uri("u", "2023-01-01"))  # how empty partitions are made
    assert table("wh/u/2023-01-01/") == {"part-0.parquet": b"v2"}
    assert store.fs.listdir(store.table_uri("u")) == ["2023-01-01"]
    store.fs.delete(store.table_uri("u"))
    assert not store.exists("u", "2023-01-01") and store.fs.listdir(store.table_uri("u")) == []


def test_local_paths_are_flagged_only_for_remote_executors():
    from clv_assets.spark import shares_local_disk

    assert shares_local_disk(_ClassicLike("local[*]")) and shares_local_disk(_ClassicLike("spark://127.0.0.1:7077"))
    assert shares_local_disk(_ConnectLike("localhost"))
    assert not shares_local_disk(_ClassicLike("spark://10.0.0.5:7077")) and not shares_local_disk(_ClassicLike("yarn"))
    assert not shares_local_disk(_ClassicLike("spark://127.0.0.1:7077,10.0.0.6:7077"))
    assert not shares_local_disk(_ConnectLike("spark.example.com"))


def test_s3_landing_is_read_by_a_remote_cluster_itself(tmp_path):
    """s3:// landing objects are downloaded to a local cache; only Spark on this machine may read those copies."""
    from clv_assets.landing import LandingZone

    landing = LandingZone(path="s3://shop/exports", s3_cache_dir=str(tmp_path / "cache"))
    copies = [str(tmp_path / "cache" / "shop" / "exports" / "2023" / "transactions_2023-01.csv")]
    assert landing.spark_paths(copies, _ClassicLike("local[2]")) == copies
    assert landing.spark_paths(copies, _ConnectLike("127.0.0.1")) == copies
    assert landing.spark_paths(copies, _ClassicLike("yarn")) == ["s3a://shop/exports/2023/transactions_2023-01.csv"]
    assert landing.spark_paths(copies, _ConnectLike("spark.example.com")) == ["s3a://shop/exports/2023/transactions_2023-01.csv"]
    local = LandingZone(path=str(tmp_path))
    assert local.spark_paths(copies, _ClassicLike("yarn")) == copies
