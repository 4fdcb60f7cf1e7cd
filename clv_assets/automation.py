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
