"""Parquet storage of the asset tables under one base URI, with no half-written table ever visible.

Layout: ``<base>/<asset>/`` for an unpartitioned asset and ``<base>/<asset>/<partition key>/`` for each
partition of a partitioned one. Every write goes to ``<base>/_staging/`` first and is then swapped into
place, so a failed or interrupted materialization leaves the previous one readable.

Directory operations go through Hadoop's FileSystem API when the session has a JVM (local Spark or a
standalone master: any Hadoop-compatible URI works) and through pyarrow's filesystems under Spark Connect
(local paths and S3).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import dagster as dg
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clv_assets.spark import SparkResource, is_spark_connect, shares_local_disk

PREVIOUS_SUFFIX = ".previous"


def absolute_uri(uri: str) -> str:
    """Local paths become absolute (Spark and the driver may not share a working directory)."""
    return uri if urlparse(uri).scheme not in ("", "file") else os.path.abspath(uri.removeprefix("file://"))


class _HadoopFS:
    def __init__(self, spark: SparkSession, uri: str):
        self._jvm = spark._jvm  # noqa: SLF001 - Hadoop's FileSystem is only reachable through py4j
        self._fs = self._jvm.org.apache.hadoop.fs.Path(uri).getFileSystem(spark._jsc.hadoopConfiguration())

    def _path(self, uri: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(uri)

    def exists(self, uri: str) -> bool:
        return bool(self._fs.exists(self._path(uri)))

    def rename(self, src: str, dst: str) -> None:
        self._fs.mkdirs(self._path(dst).getParent())
        if not self._fs.rename(self._path(src), self._path(dst)):
            raise OSError(f"could not move {src} to {dst}")

    def delete(self, uri: str) -> None:
        self._fs.delete(self._path(uri), True)

    def listdir(self, uri: str) -> list[str]:
        if not self.exists(uri):
            return []
        return [status.getPath().getName() for status in self._fs.listStatus(self._path(uri))]

    def copy_dir(self, src: str, dst: str) -> None:
        util = self._jvm.org.apache.hadoop.fs.FileUtil
        if not util.copy(self._fs, self._path(src), self._fs, self._path(dst), False, self._fs.getConf()):
            raise OSError(f"could not copy {src} to {dst}")


class _ArrowFS:
    """Directory operations through pyarrow: Spark Connect has no JVM on this side to reach Hadoop's FileSystem.

    The client then needs access to the warehouse itself (the same path, or S3 credentials of its own: the
    default AWS chain, with ``CLV_S3_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL`` for an S3-compatible store).
    Object stores have no directories to rename, so there a rename is a copy then a delete (what Hadoop's
    S3A connector does too).
    """

    def __init__(self, uri: str):
        from pyarrow import fs as pafs

        self._pafs = pafs
        arrow_uri = _arrow_uri(uri)
        self._s3 = urlparse(arrow_uri).scheme == "s3"
        self._fs = _s3_filesystem(arrow_uri) if self._s3 else pafs.FileSystem.from_uri(arrow_uri)[0]
        self._local = isinstance(self._fs, pafs.LocalFileSystem)

    def _p(self, uri: str) -> str:
        arrow_uri = _arrow_uri(uri)
        if self._s3:
            parsed = urlparse(arrow_uri)
            return f"{parsed.netloc}{parsed.path}".rstrip("/")
        return self._pafs.FileSystem.from_uri(arrow_uri)[1]

    def exists(self, uri: str) -> bool:
        return self._fs.get_file_info(self._p(uri)).type != self._pafs.FileType.NotFound

    def rename(self, src: str, dst: str) -> None:
        source, target = self._p(src), self._p(dst)
        self._fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        if self._local:
            self._fs.move(source, target)
            return
        self._copy_tree(source, target)  # object stores: no directory rename
        self._fs.delete_dir(source)

    def delete(self, uri: str) -> None:
        if self.exists(uri):
            self._fs.delete_dir(self._p(uri))

    def listdir(self, uri: str) -> list[str]:
        if not self.exists(uri):
            return []
        selector = self._pafs.FileSelector(self._p(uri), recursive=False)
        return [info.base_name for info in self._fs.get_file_info(selector)]

    def copy_dir(self, src: str, dst: str) -> None:
        self._copy_tree(self._p(src), self._p(dst))

    def _copy_tree(self, source: str, target: str) -> None:
        if self._fs.get_file_info(source).type == self._pafs.FileType.File:
            self._fs.copy_file(source, target)
            return
        self._fs.create_dir(target, recursive=True)
        for info in self._fs.get_file_info(self._pafs.FileSelector(source, recursive=True)):
            relative = info.path[len(source):].lstrip("/")
            if info.type == self._pafs.FileType.Directory:
                self._fs.create_dir(f"{target}/{relative}", recursive=True)
            else:
                self._fs.copy_file(info.path, f"{target}/{relative}")


def _s3_filesystem(arrow_uri: str):
    """pyarrow's S3 client: the default AWS credential chain; ``CLV_S3_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL``,
    which pyarrow reads itself) for S3-compatible stores, which then get path-style requests."""
    from pyarrow import fs as pafs

    endpoint = os.environ.get("CLV_S3_ENDPOINT_URL")
    if not endpoint:
        return pafs.FileSystem.from_uri(arrow_uri)[0]  # resolves the bucket's region
    parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return pafs.S3FileSystem(endpoint_override=parsed.netloc, scheme=parsed.scheme, region=region,
                             force_virtual_addressing=False)


def _arrow_uri(uri: str) -> str:
    scheme = urlparse(uri).scheme
    if scheme in ("s3a", "s3n"):
        return "s3" + uri[len(scheme):]
    return uri if scheme else os.path.abspath(uri)


def filesystem(spark: SparkSession, uri: str) -> _HadoopFS | _ArrowFS:
    return _ArrowFS(uri) if is_spark_connect(spark) else _HadoopFS(spark, uri)


_warned: set[str] = set()


def warn_if_not_shared(spark: SparkSession, uri: str, what: str, hint: str | None = None) -> None:
    """Warn once per location when a local path is used with executors that may not see this machine's disk."""
    if urlparse(uri).scheme not in ("", "file") or uri in _warned or shares_local_disk(spark):
        return
    _warned.add(uri)
    dg.get_dagster_logger().warning(
        f"{what} {uri} is a local path, but Spark runs on a remote cluster: every executor (and, under Spark "
        "Connect, the server) must see the same files at that path (a shared mount); otherwise "
        f"{hint or 'use shared storage such as s3a:// or hdfs://'} (see docs/clusters.md)."
    )


@dataclass
class ParquetTableStore:
    """Reads and atomically replaces parquet tables (and their partitions) under ``base_uri``."""

    spark: SparkSession
    base_uri: str

    def __post_init__(self) -> None:
        self.base_uri = absolute_uri(self.base_uri).rstrip("/")
        self.fs = filesystem(self.spark, self.base_uri)

    def table_uri(self, table: str, partition_key: str | None = None) -> str:
        uri = f"{self.base_uri}/{table}"
        return f"{uri}/{partition_key}" if partition_key else uri

    def exists(self, table: str, partition_key: str | None = None) -> bool:
        uri = self.table_uri(table, partition_key)
        return self.fs.exists(uri) or self.fs.exists(uri + PREVIOUS_SUFFIX)

    def _readable_uri(self, uri: str) -> str:
        # Between the two renames of a swap only the previous version exists: read that one.
        return uri if self.fs.exists(uri) or not self.fs.exists(uri + PREVIOUS_SUFFIX) else uri + PREVIOUS_SUFFIX

    def read(self, table: str, partition_keys: list[str] | None = None) -> DataFrame:
        if partition_keys is None:
            return self.spark.read.parquet(self._readable_uri(self.table_uri(table)))
        present = [k for k in partition_keys if self.exists(table, k)]
        if not present:
            raise FileNotFoundError(
                f"No materialized partition of {table} under {self.table_uri(table)} "
                f"(wanted {partition_keys[0]} .. {partition_keys[-1]}): materialize {table} first."
            )
        return self.spark.read.parquet(*[self._readable_uri(self.table_uri(table, k)) for k in present])

    def _staging_uri(self, table: str) -> str:
        return f"{self.base_uri}/_staging/{table}-{uuid.uuid4().hex[:12]}"

    def _swap_in(self, staged: str, target: str) -> None:
        previous = target + PREVIOUS_SUFFIX
        self.fs.delete(previous)
        if self.fs.exists(target):
            self.fs.rename(target, previous)
        self.fs.rename(staged, target)
        self.fs.delete(previous)

    def write(self, df: DataFrame, table: str) -> None:
        """Replace the whole table."""
        staged = self._staging_uri(table)
        try:
            df.write.parquet(staged)
            self._swap_in(staged, self.table_uri(table))
        finally:
            self.fs.delete(staged)

    def write_partitions(self, df: DataFrame, table: str, partition_expr: str, partition_keys: list[str]) -> None:
        """Replace the given partitions of a table in one Spark job; keys with no rows become empty partitions.

        ``partition_expr`` names the date column holding the start of each row's partition (e.g. the first
        day of the transaction month); partition keys are those dates as ``YYYY-MM-DD``.
        """
        staged = self._staging_uri(table)
        key_col = "__partition_key"
        try:
            keyed = df.withColumn(key_col, F.date_format(F.col(partition_expr), "yyyy-MM-dd"))
            if len(partition_keys) == 1:
                keyed.drop(key_col).write.parquet(f"{staged}/{key_col}={partition_keys[0]}")
            else:
                keyed.write.partitionBy(key_col).parquet(staged)
            empty = f"{staged}/_empty"  # one Spark job writes an empty partition; the others are copies of it
            for key in partition_keys:
                part = f"{staged}/{key_col}={key}"
                if not self.fs.exists(part):
                    if not self.fs.exists(empty):
                        self.spark.createDataFrame([], df.schema).write.parquet(empty)
                    self.fs.copy_dir(empty, part)
                self._swap_in(part, self.table_uri(table, key))
            self._check_no_stray_partitions(staged, key_col, partition_keys)
        finally:
            self.fs.delete(staged)

    def _check_no_stray_partitions(self, staged: str, key_col: str, partition_keys: list[str]) -> None:
        """Rows outside the partitions being written are a bug in the asset: fail loudly."""
        stray = [name for name in self.fs.listdir(staged) if name.startswith(f"{key_col}=")]
        if stray:
            raise ValueError(f"rows for partitions {stray[:5]} outside this run's {partition_keys[0]}..{partition_keys[-1]}")


def column_schema(df: DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name=f.name, type=f.dataType.simpleString()) for f in df.schema.fields])


def table_metadata(df: DataFrame) -> dict[str, Any]:
    """``dagster/row_count`` and ``dagster/column_schema`` of a written table (the count reads parquet footers)."""
    return {"dagster/row_count": df.count(), "dagster/column_schema": column_schema(df)}


class SparkParquetIOManager(dg.ConfigurableIOManager):
    """Stores Spark DataFrames as parquet under a base URI (local path, ``s3a://``, ``hdfs://``, ...).

    Partitioned assets declare ``metadata={"partition_expr": "<date column>"}``; a run over many partitions
    (a single-run backfill) writes them all in one Spark job and replaces only those partitions.
    """

    spark: SparkResource
    base_uri: str = "data/warehouse"

    def _store(self) -> ParquetTableStore:
        spark = self.spark.spark_session
        warn_if_not_shared(spark, absolute_uri(self.base_uri), "The warehouse (CLV_WAREHOUSE_URI)")
        return ParquetTableStore(spark, self.base_uri)

    @staticmethod
    def _table(asset_key: dg.AssetKey) -> str:
        return "/".join(asset_key.path)

    def handle_output(self, context: dg.OutputContext, obj: DataFrame) -> None:
        if obj is None:
            return
        try:
            self._write(context, obj)
        finally:
            # Later steps read the stored tables, so a step's cached intermediates are done with: release them
            # (cached blocks Spark may not evict would otherwise shrink the heap left for the next steps).
            obj.sparkSession.catalog.clearCache()

    def _write(self, context: dg.OutputContext, obj: DataFrame) -> None:
        store, table = self._store(), self._table(context.asset_key)
        path = dg.MetadataValue.path(store.table_uri(table))
        if not context.has_asset_partitions:
            store.write(obj, table)
            context.add_output_metadata({**table_metadata(store.read(table)), "path": path})
            return
        partition_expr = (context.definition_metadata or {}).get("partition_expr")
        if not partition_expr:
            raise dg.DagsterInvariantViolationError(
                f"{table} is partitioned: declare metadata={{'partition_expr': '<date column>'}} on it."
            )
        keys = list(context.asset_partition_keys)
        store.write_partitions(obj, table, partition_expr, keys)
        written = store.read(table, keys)
        if len(keys) == 1:
            context.add_output_metadata({**table_metadata(written), "path": path})
            return
        # One Spark job counts every partition; each partition's materialization gets its own row count.
        key_of = F.date_format(F.col(partition_expr), "yyyy-MM-dd")
        counts = {r[0]: r[1] for r in written.groupBy(key_of).count().collect()}
        context.add_output_metadata({"dagster/column_schema": column_schema(written), "path": path, "partitions_in_run": len(keys)})
        for key in keys:
            context.step_context.add_asset_metadata(
                {"dagster/row_count": counts.get(key, 0)}, asset_key=context.asset_key, partition_key=key
            )

    def load_input(self, context: dg.InputContext) -> DataFrame:
        store, table = self._store(), self._table(context.asset_key)
        if context.has_asset_partitions:
            keys = list(context.asset_partition_keys)
            missing = [k for k in keys if not store.exists(table, k)]
            if missing:
                context.log.warning(f"{table}: {len(missing)} of {len(keys)} partitions never materialized, e.g. {missing[:3]}")
            return store.read(table, keys)
        return store.read(table)
