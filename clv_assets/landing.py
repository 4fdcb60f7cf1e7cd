"""Where raw transaction files land, and how their columns map onto the canonical transactions table.

The landing location is a file or a folder of CSV or parquet files: a local path, ``s3://bucket/prefix``
(read through dagster-aws's S3 resource and cached locally) or any URI Spark reads itself (``s3a://``,
``hdfs://``, ``abfss://``...). Configure it with environment variables (``CLV_LANDING_PATH``,
``CLV_CUSTOMER_ID_COL``, ...) or in the launchpad.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field

from clv_assets.ingest import ColumnMapping, LoadedLanding, load_landing
from clv_assets.spark import shares_local_disk
from clv_assets.storage import warn_if_not_shared

SUPPORTED_SUFFIXES = (".csv", ".parquet", ".pq", ".txt", ".tsv")
log = logging.getLogger(__name__)


def local_landing_files(root: Path) -> list[Path]:
    """The landing files under a local folder, sorted: supported suffixes only, and nothing hidden the way Spark
    and Hadoop hide files, under a name starting with ``.`` or ``_`` (``_SUCCESS``, ``.part.crc``) or inside
    such a folder (``_archive/``)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
                  and not any(part.startswith((".", "_")) for part in p.relative_to(root).parts))


_ENV = {
    "path": "CLV_LANDING_PATH",
    "file_format": "CLV_FILE_FORMAT",
    "delimiter": "CLV_DELIMITER",
    "customer_id_col": "CLV_CUSTOMER_ID_COL",
    "transaction_date_col": "CLV_TRANSACTION_DATE_COL",
    "amount_col": "CLV_AMOUNT_COL",
    "transaction_id_col": "CLV_TRANSACTION_ID_COL",
    "category_col": "CLV_CATEGORY_COL",
    "channel_col": "CLV_CHANNEL_COL",
    "date_format": "CLV_DATE_FORMAT",
    "as_of_date": "CLV_AS_OF_DATE",
}


class LandingZone(dg.ConfigurableResource):
    """The raw transaction files and their column mapping."""

    path: str = Field(default="data/landing", description="File or folder: local path, s3://, s3a://, hdfs://...")
    file_format: str = Field(default="auto", description="csv, parquet, or auto (by file extension).")
    delimiter: str = Field(default=",", description="CSV field separator.")
    customer_id_col: str = "customer_id"
    transaction_date_col: str = "transaction_date"
    amount_col: str = "amount"
    transaction_id_col: str | None = Field(default=None, description="Optional; used when present.")
    category_col: str | None = Field(default=None, description="Optional product category column.")
    channel_col: str | None = Field(default=None, description="Optional acquisition channel column.")
    date_format: str = Field(default="yyyy-MM-dd", description="Spark datetime pattern of the date column.")
    as_of_date: str | None = Field(default=None, description="Quarantine rows dated after this day (YYYY-MM-DD).")
    s3_endpoint_url: str | None = Field(default=None, description="For S3-compatible stores (MinIO, moto...).")
    s3_cache_dir: str = Field(default="data/landing_cache", description="Local copy of s3:// landing files.")

    @classmethod
    def from_env(cls, **overrides) -> "LandingZone":
        values = {field: os.environ[var] for field, var in _ENV.items() if os.environ.get(var)}
        if os.environ.get("CLV_S3_ENDPOINT_URL"):
            values["s3_endpoint_url"] = os.environ["CLV_S3_ENDPOINT_URL"]
        return cls(**{**values, **overrides})

    @property
    def mapping(self) -> ColumnMapping:
        return ColumnMapping(
            customer_id=self.customer_id_col,
            transaction_date=self.transaction_date_col,
            amount=self.amount_col,
            transaction_id=self.transaction_id_col,
            category=self.category_col,
            channel=self.channel_col,
            date_format=self.date_format,
        )

    @property
    def is_s3(self) -> bool:
        return urlparse(self.path).scheme == "s3"

    def s3_client(self):
        return S3Resource(endpoint_url=self.s3_endpoint_url).get_client()

    def list_files(self) -> list[str]:
        """The landing files Spark should read, sorted; raises a clear error when there are none."""
        scheme = urlparse(self.path).scheme
        if scheme == "s3":
            files = self._fetch_s3()
        elif scheme in ("", "file"):
            root = Path(self.path.removeprefix("file://")).absolute()
            if root.is_file():
                files = [str(root)]
            elif root.is_dir():
                files = [str(p) for p in local_landing_files(root)]
            else:
                raise FileNotFoundError(
                    f"Landing location {root} does not exist. Generate sample data with `clv generate`, "
                    "or point CLV_LANDING_PATH at your transactions (a CSV/parquet file or folder)."
                )
        else:
            return [self.path]  # s3a://, hdfs://...: Spark lists the folder itself
        if not files:
            raise FileNotFoundError(f"No CSV or parquet files in the landing location {self.path}.")
        return files

    def _fetch_s3(self) -> list[str]:
        """Copy the s3:// landing objects into the local cache (only new or changed ones) and list the copies."""
        parsed = urlparse(self.path)
        bucket, prefix = parsed.netloc, parsed.path.lstrip("/")
        client = self.s3_client()
        cache = Path(self.s3_cache_dir).absolute() / bucket
        files = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if not key.lower().endswith(SUPPORTED_SUFFIXES) or key.endswith("/"):
                    continue
                if key.startswith("/") or ".." in key.split("/"):  # would land outside the cache folder
                    log.warning(f"s3://{bucket}/{key}: skipped, a key with '..' or a leading '/' cannot be cached safely")
                    continue
                local = cache / key
                tag = local.with_name(local.name + ".etag")
                etag = obj.get("ETag", "")
                if not (local.exists() and tag.exists() and tag.read_text() == etag):
                    local.parent.mkdir(parents=True, exist_ok=True)
                    client.download_file(bucket, key, str(local))
                    tag.write_text(etag)
                files.append(str(local))
        return sorted(files)

    def load(self, spark, window: tuple[dt.date, dt.date] | None = None) -> LoadedLanding:
        """Every landing row, flagged (accepted rows have no ``reject_reason``, see ``clv_assets.ingest``), and the
        counts by outcome. Within one process the same unchanged files are checked and counted only once: the
        ``transactions`` and ``quarantined_transactions`` steps of a run share that work."""
        global _last_load
        files = self.list_files()
        paths = self.spark_paths(files, spark)
        if urlparse(self.path).scheme in ("", "file"):
            warn_if_not_shared(spark, str(Path(self.path.removeprefix("file://")).absolute()), "The landing location (CLV_LANDING_PATH)")
        as_of = dt.date.fromisoformat(self.as_of_date) if self.as_of_date else None
        file_format = self.detect_format(files)
        key = _load_key(spark, paths, file_format, self.mapping, self.delimiter, as_of, window)
        if key is not None and _last_load is not None and _last_load[0] == key:
            return _last_load[1]
        loaded = load_landing(spark, paths, file_format, self.mapping, self.delimiter, as_of=as_of, window=window,
                              local_copies=files)
        _last_load = (key, loaded) if key is not None else None
        return loaded

    def spark_paths(self, files: list[str], spark) -> list[str]:
        """What Spark reads: the listed files, except that ``s3://`` objects are read from their local copies only
        while Spark's executors share this machine's disk (local mode, a cluster on loopback). On a remote
        cluster Spark reads the objects itself as ``s3a://bucket/key`` (hadoop-aws and S3 credentials on the
        cluster, see docs/clusters.md); the local copies still serve the header checks."""
        if not self.is_s3 or shares_local_disk(spark):
            return files
        cache = Path(self.s3_cache_dir).absolute()
        return [f"s3a://{Path(f).relative_to(cache).as_posix()}" for f in files]

    def detect_format(self, files: list[str]) -> str:
        if self.file_format != "auto":
            return self.file_format
        suffixes = {Path(urlparse(f).path).suffix.lower() for f in files}
        if suffixes <= {".parquet", ".pq"}:
            return "parquet"
        if suffixes & {".parquet", ".pq"}:
            raise ValueError(f"Landing location {self.path} mixes parquet and text files: set file_format.")
        return "csv"


_last_load: tuple[tuple, LoadedLanding] | None = None


def _load_key(spark, paths: list[str], *settings) -> tuple | None:
    """What a load depends on: the Spark session, the settings and each local file's size and modification
    time (None when Spark reads remote files, whose changes this process cannot see cheaply)."""
    stats = []
    for path in paths:
        if urlparse(path).scheme not in ("", "file"):
            return None
        st = os.stat(path.removeprefix("file://"))
        stats.append((path, st.st_size, st.st_mtime_ns))
    return (id(spark), tuple(stats), *map(repr, settings))
