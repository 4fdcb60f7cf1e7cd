#!/usr/bin/env bash
# One command from a fresh clone to a running product: set up, generate the sample data, materialize every
# asset with local Spark, then serve the Dagster UI at http://127.0.0.1:3000 (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh

export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"
mkdir -p "$DAGSTER_HOME"
# One run at a time: each run's Spark session already uses every core (raise it on a bigger machine).
[ -f "$DAGSTER_HOME/dagster.yaml" ] || printf 'telemetry:\n  enabled: false\nconcurrency:\n  runs:\n    max_concurrent_runs: 1\n' > "$DAGSTER_HOME/dagster.yaml"

.venv/bin/clv demo --data-size "${CLV_DEMO_SIZE:-small}"
echo
echo "Dagster UI: http://${CLV_UI_HOST:-127.0.0.1}:${CLV_UI_PORT:-3000}"
exec .venv/bin/dagster dev -w workspace.yaml -h "${CLV_UI_HOST:-127.0.0.1}" -p "${CLV_UI_PORT:-3000}"
