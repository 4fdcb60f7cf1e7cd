"""Shared fixtures: one local Spark session for the whole test run, and tiny hand-made data."""

from __future__ import annotations

import datetime as dt
import os

import pytest

os.environ.setdefault("CLV_SPARK_CONF", "spark.sql.shuffle.partitions=2,spark.driver.memory=2g")


@pytest.fixture(scope="session")
def spark_resource():
    from clv_assets.spark import SparkResource

    return SparkResource(master="local[2]", spark_config={"spark.sql.shuffle.partitions": "2", "spark.driver.memory": "2g"})


@pytest.fixture(scope="session")
def spark(spark_resource):
    return spark_resource.spark_session


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


# customer, date, amount, category, channel: refunds, same-day orders, a refund-only customer.
TINY_ROWS = [
    ("A", "2023-01-05", 100.0, "books", "email"),
    ("A", "2023-01-05", 20.0, "books", "email"),   # same-day repeat order: 2 orders, 1 purchase day
    ("A", "2023-02-10", 50.0, "toys", "email"),
    ("A", "2023-02-15", -20.0, "toys", "email"),   # refund
    ("A", "2023-03-17", 30.0, "toys", "email"),
    ("B", "2023-01-20", 30.0, "books", "social"),
    ("B", "2023-03-31", 10.0, "books", "social"),
    ("C", "2023-03-02", -15.0, "games", "organic"),  # refund-only customer
]


@pytest.fixture()
def tiny_csv(tmp_path):
    """The tiny fixture as a landing CSV with the user's own column names."""
    landing = tmp_path / "landing"
    landing.mkdir()
    lines = ["cust,order_date,value,cat,source"] + [
        f"{c},{dt.date.fromisoformat(day).strftime('%d/%m/%Y')},{amt:.2f},{cat},{ch}" for c, day, amt, cat, ch in TINY_ROWS
    ]
    (landing / "orders.csv").write_text("\n".join(lines) + "\n")
    return landing


@pytest.fixture()
def tiny_transactions(spark):
    from pyspark.sql import functions as F

    rows = [(f"T{i}", c, d(day), amt, cat, ch) for i, (c, day, amt, cat, ch) in enumerate(TINY_ROWS)]
    df = spark.createDataFrame(rows, "transaction_id string, customer_id string, transaction_date date, amount double, category string, channel string")
    return df.withColumn("transaction_month", F.trunc("transaction_date", "month")).withColumn("source_file", F.lit("t.csv"))


@pytest.fixture(scope="module")
def interpreted_plans(spark):
    """Small data, wide aggregations: compiling whole-stage code costs more than it saves (restored after)."""
    previous = spark.conf.get("spark.sql.codegen.wholeStage")
    spark.conf.set("spark.sql.codegen.wholeStage", "false")
    yield
    spark.conf.set("spark.sql.codegen.wholeStage", previous)


@pytest.fixture()
def s3_endpoint(monkeypatch):
    """A real S3 API on loopback (moto's server), with dummy credentials."""
    from moto.server import ThreadedMotoServer

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
