"""Declarative refresh rules shared by the assets.

``REFRESH_AFTER_UPSTREAM``: materialize after any upstream asset (or partition) is updated, once nothing
upstream is still running. Unlike ``AutomationCondition.eager()`` it does not wait for every upstream
partition to exist: months with no data yet (the current month, say) must not hold back the refresh.
"""

import dagster as dg

REFRESH_AFTER_UPSTREAM = (
    dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing()).with_label("refresh after upstream updates")
)
