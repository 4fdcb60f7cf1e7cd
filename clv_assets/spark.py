"""The Spark session every asset computes on.

By default Spark runs inside the Dagster run process (``local[*]``). Environment variables point the same
definitions at a real cluster instead:

- ``CLV_SPARK_MASTER``: a standalone master (``spark://host:7077``), ``yarn``, or ``local[N]``.
- ``CLV_SPARK_REMOTE``: a Spark Connect server (``sc://host:15002``); takes precedence over the master.
- ``CLV_SPARK_CONF``: extra Spark settings, ``key=value`` pairs separated by commas or new lines.

The session is created lazily, on the first asset that needs it, so loading the definitions (the UI,
``dagster definitions validate``) never starts a JVM, and a run shares one session across its assets.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

from dagster_pyspark import LazyPySparkResource
from pydantic import Field

#: Settings for a small machine; every one of them can be overridden through ``CLV_SPARK_CONF``.
DEFAULT_SPARK_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    # Enough shuffle partitions for 100M rows in a 4 GiB heap. Adaptive execution merges them into partitions of
    # min(16 MB, shuffle size / cores) (setting below): small data still gets one partition per core, not 64
    # tiny tasks.
    "spark.sql.shuffle.partitions": "64",
    # ... cached tables included (by default their partitions are never merged: 64 tasks for every join with them).
    "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "4g",
    "spark.sql.adaptive.enabled": "true",
    # Merged partitions of at most 16 MB (Spark's default: 64): with 2 cores, three 64 MB partitions take two
    # rounds and leave one core idle in the second; smaller partitions even out the load.
    "spark.sql.adaptive.advisoryPartitionSizeInBytes": "16m",
    "spark.sql.parquet.compression.codec": "zstd",
}
#: Added in local mode only, where the driver JVM is the whole cluster: the parallel (throughput) garbage collector
#: instead of G1, whose concurrent threads compete with the task threads on a small machine. On 10M transactions
#: and 2 cores G1 made the aggregations 10-20% slower (benchmarks/bench_spark_settings.py, benchmarks/RESULTS.md).
#: A cluster's JVMs keep their own settings (spark-defaults.conf).
#: Also local-only: the driver lists the folders of up to 100 partitions itself (Spark's default, above 32 paths, is
#: a Spark job of one task per folder; reading 48 months of transactions paid ~0.2 s for it, at every read).
LOCAL_MODE_CONF: dict[str, str] = {
    "spark.driver.extraJavaOptions": "-XX:+UseParallelGC",
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "100",
}
#: Settings a Spark Connect client may not change (they belong to the server).
_SERVER_ONLY_CONF = ("spark.driver.memory", "spark.ui.enabled", "spark.ui.showConsoleProgress", "spark.master")
MIN_JAVA_VERSION = 17


class JavaNotFoundError(RuntimeError):
    """Local Spark needs a Java runtime, and none usable was found."""


def parse_spark_conf(text: str | None) -> dict[str, str]:
    """Parse ``key=value`` pairs separated by commas or new lines (the ``CLV_SPARK_CONF`` format)."""
    conf: dict[str, str] = {}
    for item in re.split(r"[,\n]", text or ""):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"CLV_SPARK_CONF: expected key=value, got {item!r}")
        conf[key.strip()] = value.strip()
    return conf


def java_major_version(java_executable: str) -> int | None:
    """The major version of a ``java`` executable (8 for 1.8, 17 for 17.0.x), or None if it does not run."""
    try:
        out = subprocess.run([java_executable, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_java() -> str:
    """Find a Java runtime for local Spark; raise a message saying what to install when there is none."""
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    hint = (
        "Spark needs Java {need} or newer. Install a JRE, for example `sudo apt-get install "
        "openjdk-17-jre-headless` (Debian/Ubuntu), `brew install openjdk@17` (macOS) or Temurin 17 from "
        "adoptium.net, and put `java` on PATH or set JAVA_HOME. To use a remote Spark instead, set "
        "CLV_SPARK_REMOTE=sc://host:15002."
    ).format(need=MIN_JAVA_VERSION)
    if not java or not os.path.exists(java):
        where = f"JAVA_HOME={java_home} has no bin/java" if java_home else "no `java` on PATH"
        raise JavaNotFoundError(f"Java not found ({where}). {hint}")
    version = java_major_version(java)
    if version is None or version < MIN_JAVA_VERSION:
        raise JavaNotFoundError(f"{java} is Java {version or 'of unknown version'}. {hint}")
    return java


class SparkResource(LazyPySparkResource):
    """Spark for the CLV assets: local by default, a standalone master or Spark Connect by configuration."""

    master: str = Field(default="local[*]", description="Spark master URL (ignored when `remote` is set).")
    remote: str | None = Field(default=None, description="Spark Connect URL, e.g. sc://localhost:15002.")
    app_name: str = Field(default="clv-assets")
    spark_config: dict[str, Any] = Field(default_factory=dict, description="Extra Spark settings.")

    @classmethod
    def from_env(cls) -> "SparkResource":
        """Configuration from ``CLV_SPARK_MASTER``, ``CLV_SPARK_REMOTE`` and ``CLV_SPARK_CONF``."""
        return cls(
            master=os.environ.get("CLV_SPARK_MASTER") or "local[*]",
            remote=os.environ.get("CLV_SPARK_REMOTE") or None,
            spark_config=parse_spark_conf(os.environ.get("CLV_SPARK_CONF")),
        )

    def effective_conf(self) -> dict[str, Any]:
        """The settings the session is built with: defaults (and local-mode defaults), then the user's, then master
        or remote."""
        local = not self.remote and self.master.startswith("local")
        conf: dict[str, Any] = {**DEFAULT_SPARK_CONF, **(LOCAL_MODE_CONF if local else {}), **(self.spark_config or {})}
        if self.remote:
            for key in _SERVER_ONLY_CONF:
                if key not in (self.spark_config or {}):
                    conf.pop(key, None)
            conf["spark.remote"] = self.remote
        else:
            conf["spark.master"] = self.master
        conf.setdefault("spark.app.name", self.app_name)
        return conf

    def _init_session(self) -> None:
        if self._spark_session is None:
            from pyspark.sql import SparkSession

            if not self.remote:
                check_java()
            builder = SparkSession.builder
            for key, value in self.effective_conf().items():
                builder = builder.config(key, value)
            self._spark_session = builder.getOrCreate()


def is_spark_connect(spark: Any) -> bool:
    """True for a Spark Connect session (no JVM on this side)."""
    return not hasattr(spark, "_jsc")


_LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]", "")


def shares_local_disk(spark: Any) -> bool:
    """Whether local paths mean the same files to this process and to Spark's executors: local mode, or a
    standalone master / Spark Connect server on this machine's loopback address (whose executors are then
    assumed to be on this machine too). Otherwise a local path is only safe on a mount every node shares."""
    if is_spark_connect(spark):
        return spark.client.host in _LOOPBACK
    master = spark.sparkContext.master
    if master.startswith("local"):
        return True
    if master.startswith("spark://"):
        hosts = [h.rsplit(":", 1)[0] for h in master.removeprefix("spark://").split(",")]
        return all(h in _LOOPBACK for h in hosts)
    return False
