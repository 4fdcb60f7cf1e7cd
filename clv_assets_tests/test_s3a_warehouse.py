"""The warehouse, the models and their small files on S3 (``s3a://``), against moto's S3 server on loopback.

Spark writes S3 through Hadoop's S3A connector, which is not in the pyspark wheel: this test runs when the
hadoop-aws jar and its AWS SDK bundle are available, either in the wheel's ``jars/`` folder or listed in
``CLV_TEST_HADOOP_AWS_JARS`` (comma-separated paths), and is skipped otherwise (see docs/clusters.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest

from clv_assets_tests.test_cluster import (  # noqa: F401 - `landing` is a fixture: the small sample
    SPARK_CONF,
    SPARK_HOME,
    check_everything_materialized,
    check_results,
    landing,
    materialize_everything,
)


def hadoop_aws_jars() -> list[str]:
    listed = [j for j in os.environ.get("CLV_TEST_HADOOP_AWS_JARS", "").split(",") if j.strip()]
    return listed or [str(j) for j in (SPARK_HOME / "jars").glob("hadoop-aws-*.jar")]


def download(s3, bucket: str, prefix: str, dest: Path) -> set[str]:
    """Copy every object under ``prefix`` into ``dest``; return their keys relative to the prefix."""
    keys = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            relative = obj["Key"][len(prefix):].lstrip("/")
            if not relative or relative.endswith("/"):  # S3A's directory markers
                continue
            keys.add(relative)
            (dest / relative).parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(dest / relative))
    return keys


@pytest.mark.slow
@pytest.mark.skipif(not hadoop_aws_jars(), reason="hadoop-aws is not installed (set CLV_TEST_HADOOP_AWS_JARS)")
def test_whole_graph_with_the_warehouse_on_s3(s3_endpoint, landing, tmp_path):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="lake")
    uri = "s3a://lake/clv/warehouse"
    s3a = ",".join([
        f"spark.driver.extraClassPath={os.pathsep.join(hadoop_aws_jars())}",  # local mode: the driver's classpath
        f"spark.hadoop.fs.s3a.endpoint={s3_endpoint}",
        "spark.hadoop.fs.s3a.path.style.access=true", "spark.hadoop.fs.s3a.endpoint.region=us-east-1",
        "spark.hadoop.fs.s3a.access.key=testing", "spark.hadoop.fs.s3a.secret.key=testing", "spark.driver.memory=2g",
    ])
    report, _ = materialize_everything(tmp_path, landing, {"CLV_SPARK_MASTER": "local[2]", "CLV_SPARK_CONF": f"{SPARK_CONF},{s3a}",
                                                           "CLV_S3_ENDPOINT_URL": s3_endpoint}, warehouse=uri)
    check_everything_materialized(report)

    copy = tmp_path / "copy"
    keys = download(s3, "lake", "clv/warehouse/", copy)
    assert not (tmp_path / "warehouse").exists()  # nothing went to a local folder instead
    assert not [k for k in keys if k.startswith("_staging/") or ".previous/" in k]  # every swap completed
    # The models and their small companions are on S3 beside the tables.
    artifacts = {k.split("/")[2] for k in keys if k.startswith("_artifacts/clv_model/")}
    assert {"manifest.json", "drift_reference.json", "bgnbd_gamma_gamma.json", "calibration",
            "linear_regression", "random_forest", "gradient_boosting"} <= artifacts
    check_results(copy, landing, warehouse_uri=uri)
