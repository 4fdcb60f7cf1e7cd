"""Model artifacts on s3:// through dagster-aws, against a real S3 API on loopback (moto's server)."""

import json
import shutil
from pathlib import Path

import boto3
import dagster as dg
import pandas as pd
import pytest

from clv_assets import artifacts
from clv_assets.landing import LandingZone
from clv_assets.sample_data import SampleSpec, write_sample
from clv_assets.storage import SparkParquetIOManager


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def read_tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}


def test_publish_and_fetch_a_folder_tree_with_a_version_switch(s3_endpoint, tmp_path):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="models")
    writer, reader = tmp_path / "writer/clv_model", tmp_path / "reader/clv_model"
    v1_files = {"random_forest/metadata/part-00000": "rf v1", "random_forest/metadata/.part-00000.crc": "checksum",
                "calibration/part-0.parquet": "cal v1", "manifest.json/part-0.txt": json.dumps({"paths": {"rf": f"{writer}/random_forest"}})}
    write_tree(writer, v1_files)
    with pytest.raises(FileNotFoundError, match="materialize clv_model"):
        artifacts.fetch(s3, "models", "team/clv_model", reader)

    v1 = artifacts.publish(s3, writer, "models", "team/clv_model")
    assert artifacts.current(s3, "models", "team/clv_model")["version"] == v1
    version, etags = artifacts.fetch(s3, "models", "team/clv_model", reader)
    assert version == v1 and set(etags) == {"random_forest/metadata/part-00000", "calibration/part-0.parquet", "manifest.json/part-0.txt"}
    copy = read_tree(reader)
    assert ".crc" not in "".join(copy) and copy["random_forest/metadata/part-00000"] == "rf v1"
    # The manifest names files by absolute path: the reader's copy points at the reader's folder.
    assert json.loads(copy["manifest.json/part-0.txt"]) == {"paths": {"rf": f"{reader}/random_forest"}}

    # Files of a version that is not current (an upload in progress, or abandoned) are never read.
    s3.put_object(Bucket="models", Key="team/clv_model/versions/20000101T000000.000000Z-broken/random_forest/metadata/part-00000", Body=b"half")
    assert artifacts.fetch(s3, "models", "team/clv_model", reader, etags)[0] == v1
    assert read_tree(reader)["random_forest/metadata/part-00000"] == "rf v1"

    # A new model without a calibration set replaces the old one completely, the abandoned upload included.
    write_tree(tmp_path / "writer2", {"random_forest/metadata/part-00000": "rf v2", "manifest.json/part-1.txt": "{}"})
    v2 = artifacts.publish(s3, tmp_path / "writer2", "models", "team/clv_model")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="models", Prefix="team/")["Contents"])
    assert v2 > v1 and keys == ["team/clv_model/CURRENT.json", f"team/clv_model/versions/{v2}/manifest.json/part-1.txt",
                                f"team/clv_model/versions/{v2}/random_forest/metadata/part-00000"]
    assert artifacts.fetch(s3, "models", "team/clv_model", reader, etags)[0] == v2
    assert read_tree(reader) == {"random_forest/metadata/part-00000": "rf v2", "manifest.json/part-1.txt": "{}"}
    assert not (reader / "calibration").exists()

    # Unchanged files are not downloaded again.
    _, etags = artifacts.fetch(s3, "models", "team/clv_model", reader)
    (reader / "random_forest/metadata/part-00000").write_text("local marker")
    artifacts.fetch(s3, "models", "team/clv_model", reader, etags)
    assert (reader / "random_forest/metadata/part-00000").read_text() == "local marker"


def test_a_remote_cluster_is_refused(monkeypatch, tmp_path):
    class RemoteSpark:
        _jsc = None  # a classic session (not Spark Connect)

        class sparkContext:  # noqa: N801 - mimics SparkSession.sparkContext
            master = "spark://10.0.0.5:7077"

    monkeypatch.delenv("CLV_ARTIFACTS_URI", raising=False)
    store = artifacts.ArtifactStore(uri="s3://models/team", cache_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match="s3a://"):
        store.for_reading(RemoteSpark())
    assert store.folder == str(tmp_path / "models/team/clv_model")
    assert artifacts.ArtifactStore.from_env("/wh").folder == "/wh/_artifacts/clv_model"


# ------------------------------------------------------------------------------------------------ the assets

# One year, 700 customers: just enough (200 by mid-year) for the 3-month backtest of the ML models.
SPEC = SampleSpec(n_customers=700, start="2023-01-01", end="2023-12-31", seed=5)
MONTHS = {"dagster/asset_partition_range_start": "2023-01-01", "dagster/asset_partition_range_end": "2023-12-01"}
RUN_CONFIG = {"ops": {"clv_features": {"config": {"horizon_months": 3}},
                      # The ensemble refits all three ML models, so every kind of artifact goes to S3 (another
                      # served model would refit only itself).
                      "clv_model": {"config": {"rf_num_trees": 5, "gbt_max_iter": 3, "model_type": "ensemble"}}}}
PREDICTION = ["clv_model", "clv_predictions", "clv_drift"]


@pytest.mark.slow
@pytest.mark.usefixtures("interpreted_plans")
def test_prediction_assets_with_s3_artifacts(spark_resource, spark, s3_endpoint, tmp_path, monkeypatch):
    from clv_assets.definitions import defs

    write_sample(SPEC, tmp_path / "landing")
    wh = tmp_path / "wh"
    resources = {"spark": spark_resource, "landing": LandingZone(path=str(tmp_path / "landing")),
                 "io_manager": SparkParquetIOManager(spark=spark_resource, base_uri=str(wh))}
    assets = defs().assets
    monkeypatch.delenv("CLV_ARTIFACTS_URI", raising=False)

    def materialize(selection, **kwargs):
        with dg.instance_for_test() as instance:
            run_config = {"ops": {op: config for op, config in RUN_CONFIG["ops"].items() if op in selection}}
            result = dg.materialize(assets, selection=selection, resources=resources, instance=instance, run_config=run_config, **kwargs)
        assert result.success
        return {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}

    def predictions() -> pd.DataFrame:
        return spark.read.parquet(str(wh / "clv_predictions")).toPandas().sort_values("customer_id").reset_index(drop=True)

    # Today's behaviour: artifacts under the warehouse.
    materialize(["transactions", "clv_features", *PREDICTION], tags=MONTHS)
    assert (wh / "_artifacts/clv_model/manifest.json").is_dir()
    local = predictions()

    # The same model with its artifacts on S3.
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="models")
    for name, value in {"CLV_ARTIFACTS_URI": "s3://models/team", "CLV_S3_ENDPOINT_URL": s3_endpoint,
                        "CLV_ARTIFACTS_CACHE": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(name, value)
    meta = materialize(PREDICTION)

    def listing() -> tuple[str, set[str]]:
        version = json.loads(s3.get_object(Bucket="models", Key="team/clv_model/CURRENT.json")["Body"].read())["version"]
        keys = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="models") for o in page.get("Contents", [])}
        return version, keys

    version, keys = listing()
    root = f"team/clv_model/versions/{version}"
    assert meta["clv_model"]["artifact_root"].value == f"s3://models/{root}"
    for name in ("manifest.json/_SUCCESS", "bgnbd_gamma_gamma.json/_SUCCESS", "drift_reference.json/_SUCCESS", "lift_chart.png",
                 "random_forest/metadata/_SUCCESS", "gradient_boosting/metadata/_SUCCESS", "linear_regression/metadata/_SUCCESS"):
        assert f"{root}/{name}" in keys, name
    for folder in ("calibration/", "random_forest/stages/", "gradient_boosting/stages/"):
        assert any(k.startswith(f"{root}/{folder}") and k.endswith(".parquet") for k in keys), folder
    assert not any(k.endswith(".crc") for k in keys)
    pd.testing.assert_frame_equal(predictions(), local)
    reference = json.loads(s3.get_object(Bucket="models", Key=next(k for k in keys if k.startswith(f"{root}/drift_reference.json/part-")))["Body"].read())
    assert "predicted_clv" in reference  # the predictions' profile, recorded by clv_predictions, is on S3 too
    assert "clv_drift" in meta

    # A new model replaces the old one completely; a reader with an empty cache gets the same predictions.
    materialize(["clv_model"])
    new_version, new_keys = listing()
    assert new_version != version
    assert {k for k in new_keys if not k.startswith(f"team/clv_model/versions/{new_version}/")} == {"team/clv_model/CURRENT.json"}
    shutil.rmtree(tmp_path / "cache")  # the manifest's paths must now point into the new cache
    monkeypatch.setenv("CLV_ARTIFACTS_CACHE", str(tmp_path / "other_cache"))
    materialize(["clv_predictions", "clv_drift"])
    pd.testing.assert_frame_equal(predictions(), local)
