#!/usr/bin/env bash
# Entry point of the clv-assets image: one image, one role per container.
#
#   webserver [ARGS]     Dagster UI (dagster-webserver) on $CLV_UI_HOST:$CLV_UI_PORT (default 127.0.0.1:3000)
#   daemon [ARGS]        dagster-daemon run: sensors, automation, the run queue
#   code-server [ARGS]   gRPC code server for clv_assets.definitions on $CLV_CODE_SERVER_BIND:$CLV_CODE_SERVER_PORT
#                        (default 127.0.0.1:4000)
#   clv ARGS             the clv command line (clv historical --data-size small, ...)
#   anything else        run as given (bash, dagster ..., java -version)
#
# Nothing listens beyond the container's loopback unless the operator says so: CLV_UI_HOST=0.0.0.0 for the
# UI, CLV_CODE_SERVER_BIND=0.0.0.0 for the code server.
#
# The webserver and the daemon load the code from the gRPC code server at $CLV_CODE_SERVER_HOST (port
# $CLV_CODE_SERVER_PORT, through deploy/workspace.yaml) when it is set, otherwise they load
# clv_assets.definitions themselves (deploy/workspace-local.yaml). CLV_WORKSPACE names another workspace file.
#
# The Dagster instance is $DAGSTER_HOME/dagster.yaml. When there is none (nothing mounted there), it is
# created: the PostgreSQL one (deploy/dagster.yaml) when DAGSTER_PG_HOST is set, otherwise local storage
# under $DAGSTER_HOME; telemetry off in both.
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export DAGSTER_HOME="${DAGSTER_HOME:-/opt/dagster/dagster_home}"
export DAGSTER_PG_PORT="${DAGSTER_PG_PORT:-5432}"
export DAGSTER_MAX_CONCURRENT_RUNS="${DAGSTER_MAX_CONCURRENT_RUNS:-1}"
export CLV_UI_PORT="${CLV_UI_PORT:-3000}"
export CLV_CODE_SERVER_PORT="${CLV_CODE_SERVER_PORT:-4000}"
LOCATION_NAME="clv_assets"

# Local Spark (no CLV_SPARK_REMOTE, a local[...] master): the driver listens on the loopback only, and does
# not need the container's host name to resolve. A cluster master needs a reachable driver: set SPARK_LOCAL_IP.
if [ -z "${CLV_SPARK_REMOTE:-}" ] && [[ "${CLV_SPARK_MASTER:-local[*]}" == local* ]]; then
  export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
fi

log() { echo "clv-entrypoint: $*" >&2; }

prepare_instance() {
  local config="$DAGSTER_HOME/dagster.yaml"
  if [ -n "${DAGSTER_PG_HOST:-}" ]; then
    local var missing=()
    for var in DAGSTER_PG_USER DAGSTER_PG_PASSWORD DAGSTER_PG_DB; do
      [ -n "${!var:-}" ] || missing+=("$var")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
      log "DAGSTER_PG_HOST is set, but not ${missing[*]}: the PostgreSQL instance needs DAGSTER_PG_HOST, DAGSTER_PG_USER, DAGSTER_PG_PASSWORD and DAGSTER_PG_DB."
      exit 2
    fi
  fi
  if [ ! -f "$config" ]; then
    if ! mkdir -p "$DAGSTER_HOME" 2>/dev/null || [ ! -w "$DAGSTER_HOME" ]; then
      log "warning: DAGSTER_HOME=$DAGSTER_HOME is not writable; Dagster's defaults apply"
      return 0
    fi
    if [ -n "${DAGSTER_PG_HOST:-}" ]; then
      cp "$DEPLOY_DIR/dagster.yaml" "$config"
      log "instance: PostgreSQL at $DAGSTER_PG_HOST:$DAGSTER_PG_PORT/$DAGSTER_PG_DB ($config)"
    else
      printf 'telemetry:\n  enabled: false\n' > "$config"
      log "instance: local storage under $DAGSTER_HOME (set DAGSTER_PG_HOST & co. for PostgreSQL)"
    fi
  elif [ -n "${DAGSTER_PG_HOST:-}" ] && ! grep -q postgres "$config"; then
    log "warning: DAGSTER_PG_HOST is set but $config does not use PostgreSQL; it is used as it is."
  fi
}

# Where the webserver and the daemon find the code: a workspace file, the gRPC code server, or the module.
if [ -n "${CLV_WORKSPACE:-}" ]; then
  location_args=(-w "$CLV_WORKSPACE")
elif [ -n "${CLV_CODE_SERVER_HOST:-}" ]; then
  location_args=(-w "$DEPLOY_DIR/workspace.yaml")
else
  location_args=(-w "$DEPLOY_DIR/workspace-local.yaml")
fi

role="${1:-webserver}"
[ "$#" -gt 0 ] && shift

case "$role" in
  -h|--help|help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac

prepare_instance

case "$role" in
  webserver)
    host="${CLV_UI_HOST:-127.0.0.1}"
    if [ "$host" = "127.0.0.1" ] || [ "$host" = "localhost" ]; then
      log "the UI listens on $host:$CLV_UI_PORT, inside the container only; set CLV_UI_HOST=0.0.0.0 to reach it through a published port"
    fi
    exec dagster-webserver -h "$host" -p "$CLV_UI_PORT" "${location_args[@]}" "$@"
    ;;
  daemon)
    exec dagster-daemon run "${location_args[@]}" "$@"
    ;;
  code-server)
    exec dagster code-server start -h "${CLV_CODE_SERVER_BIND:-127.0.0.1}" -p "$CLV_CODE_SERVER_PORT" \
      -m clv_assets.definitions --location-name "$LOCATION_NAME" "$@"
    ;;
  clv)
    exec clv "$@"
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
