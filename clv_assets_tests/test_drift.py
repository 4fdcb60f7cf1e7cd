"""Drift: PSI and mean shift by hand, profiles on Spark, and the drift sensor above and below its thresholds."""

import math

import dagster as dg
import pytest

from clv_assets import drift
from clv_assets.defs.sensors import model_drift


def test_psi_by_hand():
    assert drift.psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    # (0.7 - 0.5) ln(0.7/0.5) + (0.3 - 0.5) ln(0.3/0.5)
    assert drift.psi([0.5, 0.5], [0.7, 0.3]) == pytest.approx(0.2 * math.log(1.4) - 0.2 * math.log(0.6))
    # an empty bin counts as 0.0001, not as infinity
    assert drift.psi([0.5, 0.5], [1.0, 0.0]) == pytest.approx(0.5 * math.log(2) + (1e-4 - 0.5) * math.log(1e-4 / 0.5))
    assert drift.relative_shift(100.0, 112.0) == pytest.approx(0.12) and drift.relative_shift(-50.0, -40.0) == pytest.approx(0.2)
    assert drift.relative_shift(0.0, 5.0) is None


def test_profile_and_compare_on_spark(spark):
    ref = spark.createDataFrame([(float(v), float(v % 3)) for v in range(1, 101)], "monetary double, frequency double")
    profile = drift.profile(ref, ["monetary", "frequency", "not_there"])
    assert set(profile) == {"monetary", "frequency"}
    assert profile["monetary"]["edges"] == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]
    assert profile["monetary"]["shares"] == pytest.approx([0.1] * 10) and profile["monetary"]["mean"] == 50.5
    assert profile["frequency"]["edges"] == [0.0, 1.0, 2.0]  # ties collapse the deciles to distinct cut points
    assert profile["frequency"]["shares"] == pytest.approx([0.33, 0.34, 0.33, 0.0])

    same = {r["measure"]: r for r in drift.compare(profile, ref)}
    assert same["monetary"]["psi"] == pytest.approx(0.0) and same["monetary"]["relative_mean_shift"] == pytest.approx(0.0)
    doubled = spark.createDataFrame([(2.0 * v, float(v % 3)) for v in range(1, 101)], "monetary double, frequency double")
    rows = {r["measure"]: r for r in drift.compare(profile, doubled)}
    # doubled spend 2, 4, ..., 200: five values in each of the nine bins up to 90, the other 55 above 90
    shares = [0.05] * 9 + [0.55]
    assert rows["monetary"]["psi"] == pytest.approx(drift.psi([0.1] * 10, shares))
    assert rows["monetary"]["relative_mean_shift"] == pytest.approx(1.0)
    assert rows["frequency"]["psi"] == pytest.approx(0.0)


def test_profile_of_values_on_the_driver_matches_the_spark_profile(spark):
    import numpy as np

    rows = [(float(v), float(v % 3)) for v in range(1, 101)] + [(None, None)]
    df = spark.createDataFrame(rows, "monetary double, frequency double")
    for column in ("monetary", "frequency"):
        values = np.array([np.nan if r[column] is None else r[column] for r in df.collect()])
        local, on_spark = drift.profile_values(values), drift.profile(df, [column])[column]
        assert local["edges"] == on_spark["edges"] and local["mean"] == pytest.approx(on_spark["mean"])
        assert local["shares"] == pytest.approx(on_spark["shares"])
    assert drift.profile_values(np.array([1.0, 2.0, 3.0, 4.0]), bins=4) == {
        "edges": [1.0, 2.0, 3.0], "shares": [0.25, 0.25, 0.25, 0.25], "mean": 2.5}
    assert drift.profile_values(np.array([np.nan])) == {"edges": [], "shares": [0.0], "mean": None}
    assert drift.profile(df.filter("monetary is null"), ["monetary"])["monetary"] == {"edges": [], "shares": [0.0], "mean": None}


def test_verdict_names_each_crossed_threshold():
    t = drift.DriftThresholds(mean_shift=0.10, max_psi=0.25)
    rows = [{"measure": "recency", "psi": 0.30}, {"measure": "T", "psi": 0.05},
            {"measure": "predicted_clv", "psi": 0.02, "relative_mean_shift": -0.12}]
    drifted, reasons = drift.verdict(rows, t)
    assert drifted and reasons == ["recency PSI 0.300 (threshold 0.25)", "mean predicted CLV moved -12.0% (threshold 10%)"]
    assert drift.verdict([{"measure": "predicted_clv", "psi": 0.3, "relative_mean_shift": 0.099}], t) == (False, [])


# ------------------------------------------------------------------------------------------------ the sensor
def record_drift(instance, **figures):
    metadata = {"drifted": False, "model_version": "run-1", "max_psi_feature": "recency", **figures}
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="clv_drift", metadata=metadata))


def evaluate(instance, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    result = model_drift.evaluate_tick(context)
    return result


def test_drift_sensor_above_threshold_requests_one_retrain():
    with dg.instance_for_test() as instance:
        record_drift(instance, max_feature_psi=0.05, predicted_clv_psi=0.04, predicted_clv_mean_shift=0.15)
        first = evaluate(instance)
        assert len(first.run_requests) == 1
        request = first.run_requests[0]
        assert "mean predicted CLV moved +15.0%" in request.tags["clv/retrain_reason"]
        assert model_drift.job_name == "retrain_clv_model"
        again = evaluate(instance, first.cursor)  # re-tick: the same materialization is not acted on twice
        assert again.run_requests == []


def test_drift_sensor_feature_psi_above_threshold():
    with dg.instance_for_test() as instance:
        record_drift(instance, max_feature_psi=0.31, predicted_clv_psi=0.02, predicted_clv_mean_shift=0.01)
        result = evaluate(instance)
        assert len(result.run_requests) == 1 and "recency PSI 0.310" in result.run_requests[0].tags["clv/retrain_reason"]


def test_drift_sensor_below_threshold_skips_and_thresholds_are_configurable(monkeypatch):
    with dg.instance_for_test() as instance:
        record_drift(instance, max_feature_psi=0.1, predicted_clv_psi=0.05, predicted_clv_mean_shift=-0.08)
        below = evaluate(instance)
        assert below.run_requests == [] and "No drift" in below.skip_message
        monkeypatch.setenv("CLV_DRIFT_MEAN_SHIFT", "0.05")
        record_drift(instance, max_feature_psi=0.1, predicted_clv_psi=0.05, predicted_clv_mean_shift=-0.08)
        stricter = evaluate(instance, below.cursor)
        assert len(stricter.run_requests) == 1 and "-8.0%" in stricter.run_requests[0].tags["clv/retrain_reason"]


def test_drift_sensor_ignores_missing_figures():
    with dg.instance_for_test() as instance:
        record_drift(instance, max_feature_psi="n/a", predicted_clv_mean_shift="n/a")
        assert evaluate(instance).run_requests == []


# ------------------------------------------------------------------------------------------------ schedules
def test_schedules_are_off_by_default_and_nightly_refresh_targets_the_latest_month():
    import datetime as dt

    from clv_assets.definitions import defs
    from clv_assets.defs.sensors import monthly_partitions, nightly_refresh, retrain_schedule

    assert nightly_refresh.default_status == retrain_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    keys = monthly_partitions.get_partition_keys()
    day_after_third_month = dt.datetime.fromisoformat(keys[2]) + dt.timedelta(days=40)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=day_after_third_month,
                                            repository_def=defs().get_repository_def())
        requests = nightly_refresh.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == [keys[3]]  # the month in progress on that day (data so far)
