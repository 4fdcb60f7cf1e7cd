"""Keeping results fresh: a sensor that ingests new landing files, and the automation that refreshes what
depends on them."""

import datetime as dt
import hashlib
import json
import os

import dagster as dg

from clv_assets import sensing
from clv_assets.landing import LandingZone
from clv_assets.partitions import monthly_partitions


#: Sensors start stopped (turn them on in the UI) unless CLV_SENSORS=on; CLV_SENSOR_INTERVAL_SECONDS sets how often they tick.
SENSOR_STATUS = dg.DefaultSensorStatus.RUNNING if os.environ.get("CLV_SENSORS") == "on" else dg.DefaultSensorStatus.STOPPED
SENSOR_INTERVAL = int(os.environ.get("CLV_SENSOR_INTERVAL_SECONDS", "30"))


@dg.sensor(
    name="new_transaction_files",
    asset_selection=dg.AssetSelection.assets("transactions", "quarantined_transactions"),
    minimum_interval_seconds=SENSOR_INTERVAL,
    default_status=SENSOR_STATUS,
    description="Ingests new or changed landing files (local folder or S3 prefix): one run per new file version, "
    "over the month partitions the files touch.",
)
def new_transaction_files(context: dg.SensorEvaluationContext, landing: LandingZone) -> dg.SensorResult:
    state = sensing.parse_cursor(context.cursor)
    since = None
    if state.get("newest_s3_modified"):
        since = dt.datetime.fromisoformat(state["newest_s3_modified"]) - sensing.S3_LOOKBACK
    current = sensing.landing_fingerprints(landing, since)
    changed = sensing.new_or_changed(current, state["seen"])
    if not changed:
        return dg.SensorResult(skip_reason=f"No new or changed files in {landing.path}")

    valid_keys = set(monthly_partitions.get_partition_keys())
    months = sorted(sensing.months_touched(landing, list(changed)) & valid_keys)
    state["seen"].update(changed)
    s3_times = [fp.split("@", 1)[1] for fp in current.values() if "@" in fp]
    if s3_times:
        state["newest_s3_modified"] = max(s3_times + ([state["newest_s3_modified"]] if state.get("newest_s3_modified") else []))
    cursor = json.dumps(state, sort_keys=True)
    if not months:
        context.log.warning(f"{len(changed)} new files but no month partition in them: {sorted(changed)[:3]}")
        return dg.SensorResult(cursor=cursor, skip_reason="New files touch no month partition")

    run_key = hashlib.sha1(json.dumps(changed, sort_keys=True).encode()).hexdigest()
    context.log.info(f"{len(changed)} new or changed files touch {len(months)} months: {months[0]} .. {months[-1]}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=run_key,
                asset_selection=[dg.AssetKey("transactions"), dg.AssetKey("quarantined_transactions")],
                tags={
                    "dagster/asset_partition_range_start": months[0],
                    "dagster/asset_partition_range_end": months[-1],
                    "clv/new_files": str(len(changed)),
                },
            )
        ],
        cursor=cursor,
    )


clv_automation = dg.AutomationConditionSensorDefinition(
    "clv_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=SENSOR_INTERVAL,
    description="Evaluates the assets' automation conditions: refreshes what depends on data that changed.",
)
