"""Declarative refresh rules shared by the assets.

``REFRESH_AFTER_UPSTREAM``: materialize after any upstream asset (or partition) is updated, once nothing
upstream is still running. Unlike ``AutomationCondition.eager()`` it does not wait for every upstream
partition to exist: months with no data yet (the current month, say) must not hold back the refresh.
"""

import dagster as dg

REFRESH_AFTER_UPSTREAM = (
    dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing()).with_label("refresh after upstream updates")
)


def refresh_once_present(*required: str) -> dg.AutomationCondition:
    """``REFRESH_AFTER_UPSTREAM``, but never while one of the ``required`` upstream assets has not been
    materialized yet (predictions wait for a trained model instead of failing)."""
    missing = dg.AutomationCondition.any_deps_match(dg.AutomationCondition.missing()).allow(dg.AssetSelection.assets(*required))
    return (REFRESH_AFTER_UPSTREAM & ~missing).with_label(f"refresh after upstream updates, once {', '.join(required)} exist")


def refresh_after_update_of(*inputs: str) -> dg.AutomationCondition:
    """Every partition, after one of ``inputs`` has been *written* (not merely requested on the same tick, as
    ``eager`` allows), once they exist and nothing upstream is running. For assets partitioned differently
    from their inputs (the cohorts read every month through ``customer_monthly_activity``): they run in runs
    of their own, which must not start before their input is written. Every partition refreshes, because new
    transactions extend the curves of every earlier cohort, not only the latest one."""
    selection = dg.AssetSelection.assets(*inputs)
    written = dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.newly_updated() & ~dg.AutomationCondition.executed_with_root_target()
    ).allow(selection)
    # Every input has data (for a partitioned input: at least one partition; missing ones are read as empty).
    have_data = dg.AutomationCondition.all_deps_match(~dg.AutomationCondition.missing()).allow(selection)
    return (
        written.since_last_handled() & have_data & ~dg.AutomationCondition.any_deps_in_progress() & ~dg.AutomationCondition.in_progress()
    ).with_label(f"refresh every partition after {', '.join(inputs)} is written")
