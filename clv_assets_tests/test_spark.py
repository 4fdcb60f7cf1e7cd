"""The Spark resource's configuration and the Java check (no session started here)."""

import os
import stat

import pytest

from clv_assets.spark import JavaNotFoundError, SparkResource, check_java, parse_spark_conf


def test_parse_spark_conf():
    assert parse_spark_conf("a=1, b = x=y\nc=") == {"a": "1", "b": "x=y", "c": ""}
    assert parse_spark_conf(None) == {}
    with pytest.raises(ValueError, match="key=value"):
        parse_spark_conf("novalue")


def test_defaults_master_and_remote_from_env(monkeypatch):
    monkeypatch.delenv("CLV_SPARK_REMOTE", raising=False)
    monkeypatch.setenv("CLV_SPARK_MASTER", "spark://127.0.0.1:7077")
    monkeypatch.setenv("CLV_SPARK_CONF", "spark.executor.memory=2g,spark.sql.shuffle.partitions=16")
    conf = SparkResource.from_env().effective_conf()
    assert conf["spark.master"] == "spark://127.0.0.1:7077"
    assert conf["spark.sql.session.timeZone"] == "UTC" and conf["spark.ui.enabled"] == "false"
    assert conf["spark.sql.shuffle.partitions"] == "16" and conf["spark.executor.memory"] == "2g"
    assert "spark.driver.extraJavaOptions" not in conf  # a cluster's JVM options are its own

    monkeypatch.delenv("CLV_SPARK_MASTER")
    conf = SparkResource.from_env().effective_conf()
    assert conf["spark.master"] == "local[*]" and conf["spark.driver.extraJavaOptions"] == "-XX:+UseParallelGC"
    assert conf["spark.sql.sources.parallelPartitionDiscovery.threshold"] == "100"
    monkeypatch.setenv("CLV_SPARK_CONF", "spark.driver.extraJavaOptions=-XX:+UseG1GC")
    assert SparkResource.from_env().effective_conf()["spark.driver.extraJavaOptions"] == "-XX:+UseG1GC"

    monkeypatch.setenv("CLV_SPARK_REMOTE", "sc://127.0.0.1:15002")
    monkeypatch.setenv("CLV_SPARK_CONF", "")
    conf = SparkResource.from_env().effective_conf()
    assert conf["spark.remote"] == "sc://127.0.0.1:15002"
    assert "spark.master" not in conf and "spark.driver.memory" not in conf  # server-side settings
    assert "spark.driver.extraJavaOptions" not in conf


def test_missing_java_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nojava"))
    with pytest.raises(JavaNotFoundError, match=r"Java not found .*openjdk-17-jre-headless.*CLV_SPARK_REMOTE"):
        check_java()


def test_old_java_is_refused(monkeypatch, tmp_path):
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text('#!/bin/sh\necho \'openjdk version "1.8.0_392"\' >&2\n')
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(JavaNotFoundError, match="is Java 8"):
        check_java()


def test_installed_java_is_accepted():
    if not (os.environ.get("JAVA_HOME") or __import__("shutil").which("java")):
        pytest.skip("no java on this machine")
    assert check_java()
