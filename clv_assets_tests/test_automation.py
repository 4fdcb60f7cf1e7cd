"""The declarative refresh rules of the real definitions, tick by tick, without running anything (no Spark):
what the automation sensor would request after `transactions` changes, after a model is trained, and when
inputs are still being written."""

import dagster as dg
import pytest

from clv_assets.definitions import defs
from clv_assets.partitions import monthly_partitions


@pytest.fixture(scope="module")
def definitions():
    return defs()


def written(instance, *assets, partition=None):
    for asset in assets:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=partition))


def requested(result) -> dict[str, set]:
    """Asset name -> the partitions requested on this tick ({None} for an unpartitioned asset)."""
    keys = {r.key for r in result.results if isinstance(r.key, dg.AssetKey)}
    return {key.to_user_string(): set(result.get_requested_partitions(key)) for key in keys if result.get_num_requested(key)}


def tick(definitions, instance, cursor=None):
    result = dg.evaluate_automation_conditions(defs=definitions, instance=instance, cursor=cursor)
    return requested(result), result.cursor


def test_new_transactions_refresh_customers_then_every_cohort_partition_then_the_report(definitions):
    months = monthly_partitions.get_partition_keys()
    with dg.instance_for_test() as instance:
        _, cursor = tick(definitions, instance)  # first tick: nothing has data, nothing runs
        written(instance, "transactions", partition=months[0])
        first, cursor = tick(definitions, instance, cursor)
        assert {"customer_metrics", "customer_monthly_activity", "historical_clv", "clv_features", "rfm_segments"} <= set(first)
        assert not {"monthly_cohorts", "quarterly_cohorts", "yearly_cohorts", "clv_predictions"} & set(first)

        written(instance, "customer_metrics", "historical_clv", "clv_features", "rfm_segments")
        waiting, cursor = tick(definitions, instance, cursor)
        assert "monthly_cohorts" not in waiting  # the monthly activity they are built from is not written yet

        written(instance, "customer_monthly_activity")
        second, cursor = tick(definitions, instance, cursor)
        assert second["monthly_cohorts"] == set(months)  # every cohort's curve may change, not only the latest
        assert "cohort_retention" not in second  # waits until the cohorts are written
        assert "clv_predictions" not in second  # no model yet: no predictions, and new data never retrains

        again, cursor = tick(definitions, instance, cursor)
        assert "monthly_cohorts" not in again  # requested once per update

        written(instance, "monthly_cohorts", partition=months[0])
        third, cursor = tick(definitions, instance, cursor)
        assert "cohort_retention" in third


def test_a_trained_model_refreshes_predictions_and_what_follows(definitions):
    with dg.instance_for_test() as instance:
        _, cursor = tick(definitions, instance)
        written(instance, "customer_metrics", "historical_clv", "clv_features", "rfm_segments", "clv_model")
        result, cursor = tick(definitions, instance, cursor)
        assert "clv_predictions" in result and "clv_model" not in result
