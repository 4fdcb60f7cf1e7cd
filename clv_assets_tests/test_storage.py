"""The parquet warehouse: partition-aware writes that never leave a half-written table visible."""

import datetime as dt

import dagster as dg
import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clv_assets.storage import ParquetTableStore, SparkParquetIOManager


def months_df(spark, rows):
    return spark.createDataFrame([(dt.date.fromisoformat(m), v) for m, v in rows], "month date, value long")


def test_write_partitions_replaces_only_those_partitions(spark, tmp_path):
    store = ParquetTableStore(spark, str(tmp_path / "wh"))
    store.write_partitions(months_df(spark, [("2023-01-01", 1), ("2023-02-01", 2), ("2023-02-01", 3)]), "t", "month",
                           ["2023-01-01", "2023-02-01", "2023-03-01"])
    assert sorted(r.value for r in store.read("t", ["2023-02-01"]).collect()) == [2, 3]
    assert store.read("t", ["2023-03-01"]).count() == 0  # a month with no rows is valid and empty
    jan_files = sorted(p.name for p in (tmp_path / "wh/t/2023-01-01").iterdir())

    store.write_partitions(months_df(spark, [("2023-02-01", 9)]), "t", "month", ["2023-02-01"])
    assert [r.value for r in store.read("t", ["2023-02-01"]).collect()] == [9]
    assert sorted(p.name for p in (tmp_path / "wh/t/2023-01-01").iterdir()) == jan_files  # untouched
    assert sorted(r.value for r in store.read("t", ["2023-01-01", "2023-02-01", "2023-03-01"]).collect()) == [1, 9]


def test_failed_write_leaves_previous_version_readable(spark, tmp_path):
    store = ParquetTableStore(spark, str(tmp_path / "wh"))
    store.write(spark.range(5), "t")
    failing = spark.range(5).withColumn("id", F.when(F.col("id") == 3, F.raise_error(F.lit("boom"))).otherwise(F.col("id")))
    with pytest.raises(Exception, match="boom"):
        store.write(failing, "t")
    assert sorted(r.id for r in store.read("t").collect()) == [0, 1, 2, 3, 4]
    assert list((tmp_path / "wh/_staging").iterdir()) == []  # nothing half-written left behind


def test_reader_falls_back_to_previous_version_mid_swap(spark, tmp_path):
    store = ParquetTableStore(spark, str(tmp_path / "wh"))
    store.write(spark.range(3), "t")
    (tmp_path / "wh/t").rename(tmp_path / "wh/t.previous")  # the state between the two renames of a swap
    assert store.read("t").count() == 3


def test_rows_outside_the_run_partitions_fail(spark, tmp_path):
    store = ParquetTableStore(spark, str(tmp_path / "wh"))
    with pytest.raises(ValueError, match="outside"):
        store.write_partitions(months_df(spark, [("2023-01-01", 1), ("2023-05-01", 2)]), "t", "month", ["2023-01-01", "2023-02-01"])


def test_missing_partitions_error_is_clear(spark, tmp_path):
    with pytest.raises(FileNotFoundError, match="materialize t first"):
        ParquetTableStore(spark, str(tmp_path / "wh")).read("t", ["2023-01-01"])


def test_arrow_filesystem_operations_used_under_spark_connect(tmp_path):
    from clv_assets.storage import _ArrowFS

    fs = _ArrowFS(str(tmp_path))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "part-0.parquet").write_bytes(b"x")
    fs.copy_dir(str(tmp_path / "a"), str(tmp_path / "b"))
    assert fs.listdir(str(tmp_path / "b")) == ["part-0.parquet"]
    fs.rename(str(tmp_path / "b"), str(tmp_path / "deep" / "c"))
    assert fs.exists(str(tmp_path / "deep" / "c")) and not fs.exists(str(tmp_path / "b"))
    fs.delete(str(tmp_path / "deep"))
    assert not fs.exists(str(tmp_path / "deep" / "c"))


def test_io_manager_releases_cached_data_once_the_output_is_stored(spark_resource, spark, tmp_path):
    cached = spark.range(5).cache()
    cached.count()

    @dg.asset
    def numbers() -> DataFrame:
        return cached.withColumn("twice", cached.id * 2)

    cache_manager = spark._jsparkSession.sharedState().cacheManager()
    assert not cache_manager.isEmpty()
    dg.materialize([numbers], resources={"io_manager": SparkParquetIOManager(spark=spark_resource, base_uri=str(tmp_path))})
    assert cache_manager.isEmpty()
    assert sorted(r.twice for r in spark.read.parquet(str(tmp_path / "numbers")).collect()) == [0, 2, 4, 6, 8]
