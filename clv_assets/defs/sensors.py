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


# ------------------------------------------------------------------------------------------- retraining
#: The model and everything computed from it: what a retrain refreshes.
retrain_clv_model = dg.define_asset_job(
    "retrain_clv_model",
    selection=dg.AssetSelection.assets("clv_model").downstream(),
    description="Retrain the CLV models (backtest, champion, refit) and refresh the predictions, drift figures, "
    "insights and summary. Launch it on demand, or let the drift sensor or the retrain schedule do it.",
)


@dg.asset_sensor(
    asset_key=dg.AssetKey("clv_drift"),
    name="model_drift",
    job=retrain_clv_model,
    minimum_interval_seconds=SENSOR_INTERVAL,
    default_status=SENSOR_STATUS,
    description="Requests a retrain when clv_drift reports that predicted CLV's mean moved by CLV_DRIFT_MEAN_SHIFT "
    "(default 10%) or a feature's PSI reached CLV_DRIFT_MAX_PSI (default 0.25) since the model was trained.",
)
def model_drift(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    from clv_assets import drift

    materialization = asset_event.asset_materialization
    figures = {k: v.value for k, v in materialization.metadata.items()} if materialization else {}
    figures = {k: (v if isinstance(v, (int, float)) and not isinstance(v, bool) else None) if k != "max_psi_feature" else v
               for k, v in figures.items()}
    thresholds = drift.DriftThresholds.from_env()
    drifted, reasons = drift.drifted_from_figures(figures, thresholds)
    if not drifted:
        return dg.SkipReason(
            f"No drift: predicted CLV mean shift {figures.get('predicted_clv_mean_shift')}, "
            f"largest feature PSI {figures.get('max_feature_psi')} (thresholds {thresholds.mean_shift:.0%}, {thresholds.max_psi:g})"
        )
    context.log.info(f"Drift: {'; '.join(reasons)}: requesting a retrain")
    return dg.RunRequest(
        run_key=f"drift-{asset_event.run_id}-{asset_event.timestamp}",
        tags={"clv/retrain_reason": "; ".join(reasons)[:200], "clv/drift_run": asset_event.run_id},
    )


#: Schedules start stopped unless CLV_SCHEDULES=on (turn them on in the UI: Automation > Schedules).
SCHEDULE_STATUS = dg.DefaultScheduleStatus.RUNNING if os.environ.get("CLV_SCHEDULES") == "on" else dg.DefaultScheduleStatus.STOPPED

retrain_schedule = dg.ScheduleDefinition(
    name="scheduled_retrain",
    job=retrain_clv_model,
    cron_schedule=os.environ.get("CLV_RETRAIN_CRON", "0 3 * * 0"),
    execution_timezone=os.environ.get("CLV_SCHEDULE_TIMEZONE", "UTC"),
    default_status=SCHEDULE_STATUS,
    description="Retrains the models on a cron (CLV_RETRAIN_CRON, default Sundays 03:00), drift or not.",
)

nightly_refresh_job = dg.define_asset_job(
    "nightly_refresh",
    selection=dg.AssetSelection.assets("transactions", "quarantined_transactions").downstream()
    - dg.AssetSelection.assets("clv_model")
    - dg.AssetSelection.groups("cohorts"),
    partitions_def=monthly_partitions,
    description="Re-ingest the latest month and refresh customer metrics, CLV, features, predictions (with the "
    "current model), RFM segments, insights and summary. For set-ups without the new-data sensor.",
)


@dg.schedule(
    job=nightly_refresh_job,
    cron_schedule=os.environ.get("CLV_NIGHTLY_CRON", "0 2 * * *"),
    execution_timezone=os.environ.get("CLV_SCHEDULE_TIMEZONE", "UTC"),
    default_status=SCHEDULE_STATUS,
    description="Every night (CLV_NIGHTLY_CRON, default 02:00): the latest month partition and what depends on it.",
)
def nightly_refresh(context: dg.ScheduleEvaluationContext):
    keys = monthly_partitions.get_partition_keys(current_time=context.scheduled_execution_time)
    if not keys:
        return dg.SkipReason("No month partitions yet.")
    return dg.RunRequest(partition_key=keys[-1])
