#!/usr/bin/env bash
# Builds the image of the Dockerfile with buildah (no Docker engine needed) and smoke-tests it: the non-root
# user, Java, the installed package, the definitions, a real Spark run of the CLI, then the three roles of a
# deployment (gRPC code server, webserver, daemon) started through the image's entry point, on the
# PostgreSQL instance of deploy/dagster.yaml when a PostgreSQL server is installed here (local storage
# otherwise), up to a file dropped into the landing folder and ingested by the sensor's run. Prints
# PASS/FAIL per check and exits non-zero when one fails.
#
# Run as root on Debian bookworm (not part of the pytest suite):
#   apt-get install -y buildah debootstrap    # and postgresql for the PostgreSQL instance
#   scripts/test_docker_image.sh
#
# No image registry is needed: unless BASE_IMAGE is set, the base is Debian bookworm with python3-venv made
# here with debootstrap (localhost/clv-base:bookworm, made once). The build needs PyPI and the Debian
# mirror; pip in the build gets this machine's CA bundle (and index, if pip is configured with one). The
# containers run in a network namespace of their own with only a loopback: nothing they open is reachable
# from outside, and their ports cannot clash with the machine's.
#
# Settings (environment):
#   BASE_IMAGE                  base image to build on (default: the debootstrap one)
#   DEBIAN_MIRROR               mirror for debootstrap (default http://deb.debian.org/debian)
#   CLV_IMAGE                   tag of the image (default localhost/clv-assets:test)
#   CLV_IMAGE_TEST_DIR          work folder: logs, mounts (default /var/tmp/clv-image-test)
#   CLV_IMAGE_TEST_SKIP_BUILD=1 test the image already built
#   CLV_IMAGE_TEST_POSTGRES=0   run the roles on the local-storage instance even if PostgreSQL is here
#   CLV_IMAGE_TEST_E2E=0        skip the sensor -> run -> Spark check (the slowest part)
# Images are kept in buildah's vfs storage: `buildah --storage-driver vfs images` / `... rmi IMAGE`.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"
WORK="${CLV_IMAGE_TEST_DIR:-/var/tmp/clv-image-test}"
IMAGE="${CLV_IMAGE:-localhost/clv-assets:test}"
B=(buildah --storage-driver vfs)
NS="clv-image-test-$$"
CTR="clv-image-test-$$"
PGBIN="" PGDIR="$WORK/pg-$$"
PASSED=0 FAILED=0
T_START=$(date +%s)

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0fs", b - a }'; }
note() { echo "--- $*"; }
pass() { PASSED=$((PASSED + 1)); printf 'PASS  %-70s %s\n' "$1" "${2:-}"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL  %-70s %s\n' "$1" "${2:-}"; }

# check NAME REGEX CMD...: PASS when CMD exits 0 and its output matches REGEX.
check() {
  local name="$1" pattern="$2" t0 out rc log
  shift 2
  t0=$(now)
  log="$WORK/logs/check-$(tr -c 'a-zA-Z0-9' '-' <<<"$name" | tr -s '-' | cut -c1-60).log"
  out=$("$@" 2>&1); rc=$?
  printf '%s\n' "$out" > "$log"
  if [ "$rc" -eq 0 ] && grep -Eq -- "$pattern" <<<"$out"; then
    pass "$name" "($(since "$t0"))"
  else
    fail "$name" "(exit $rc, $(since "$t0"); log: $log)"
    tail -n 15 <<<"$out" | sed 's/^/      | /'
  fi
}

stop_postgres() {
  [ -n "$PGBIN" ] && [ -f "$PGDIR/data/postmaster.pid" ] || return 0
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast -w -t 60 stop >> "$WORK/logs/postgres.log" 2>&1 \
    || kill -INT "$(head -1 "$PGDIR/data/postmaster.pid")" 2>/dev/null
}
cleanup() {
  stop_postgres
  "${B[@]}" rm "$CTR" >/dev/null 2>&1
  rm -rf "$PGDIR"
  ip netns del "$NS" 2>/dev/null
}
trap cleanup EXIT
trap 'echo interrupted; exit 130' INT TERM

[ "$(id -u)" -eq 0 ] || { echo "Run as root (buildah with chroot isolation, debootstrap, ip netns)." >&2; exit 2; }
for tool in buildah debootstrap ip; do
  command -v "$tool" >/dev/null || { echo "Missing $tool: apt-get install -y buildah debootstrap iproute2" >&2; exit 2; }
done
mkdir -p "$WORK/logs" "$WORK/pip" "$WORK/run/logs"
rm -f "$WORK"/logs/check-*.log "$WORK"/run/logs/*.log
note "$("${B[@]}" --version), work folder $WORK"

# ------------------------------------------------------------------------------------------------ base image
if [ -z "${BASE_IMAGE:-}" ]; then
  BASE_IMAGE=localhost/clv-base:bookworm
  if ! "${B[@]}" inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
    note "debootstrap bookworm from $mirror (log: $WORK/logs/debootstrap.log)"
    t0=$(now)
    rm -rf "$WORK/base" && mkdir -p "$WORK/base/rootfs"
    if ! nice debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
         bookworm "$WORK/base/rootfs" "$mirror" > "$WORK/logs/debootstrap.log" 2>&1; then
      fail "debootstrap bookworm" "(log: $WORK/logs/debootstrap.log)"; exit 1
    fi
    # apt sources as in the official images (bookworm, -updates, -security), no downloaded lists
    rm -rf "$WORK"/base/rootfs/etc/apt/sources.list "$WORK"/base/rootfs/var/lib/apt/lists/* \
           "$WORK"/base/rootfs/var/cache/apt/*.bin "$WORK"/base/rootfs/var/cache/apt/archives/*.deb
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: %s\n\n' \
      "$mirror" /usr/share/keyrings/debian-archive-keyring.gpg > "$WORK/base/rootfs/etc/apt/sources.list.d/debian.sources"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\nSigned-By: %s\n' \
      "${mirror%/debian}/debian-security" /usr/share/keyrings/debian-archive-keyring.gpg \
      >> "$WORK/base/rootfs/etc/apt/sources.list.d/debian.sources"
    tar -C "$WORK/base/rootfs" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
      -cf "$WORK/base/rootfs.tar" .
    rm -rf "$WORK/base/rootfs"
    printf 'FROM scratch\nADD rootfs.tar /\nENV LANG=C.UTF-8\nCMD ["bash"]\n' > "$WORK/base/Containerfile"
    if "${B[@]}" bud --isolation chroot -t "$BASE_IMAGE" "$WORK/base" > "$WORK/logs/base-build.log" 2>&1; then
      pass "base image $BASE_IMAGE (debootstrap bookworm + python3-venv)" "($(since "$t0"))"
    else
      fail "base image $BASE_IMAGE" "(log: $WORK/logs/base-build.log)"; exit 1
    fi
    rm -rf "$WORK/base"
  fi
fi

# ----------------------------------------------------------------------------------------------------- build
# pip in the build reads a mounted /etc/pip.conf: this machine's CA bundle, and its index when it has one.
ca="$(python3 -m pip config get global.cert 2>/dev/null)"
[ -f "$ca" ] || ca=/etc/ssl/certs/ca-certificates.crt
cp "$ca" "$WORK/pip/ca-bundle.crt"
index="$(python3 -m pip config get global.index-url 2>/dev/null)"
{
  printf '[global]\ncert = /etc/pip-ca-bundle.crt\ntimeout = 180\n'
  case "$index" in http://*|https://*) echo "index-url = $index" ;; esac
} > "$WORK/pip/pip.conf"

if [ "${CLV_IMAGE_TEST_SKIP_BUILD:-0}" != 1 ]; then
  old_image="$("${B[@]}" images -q "$IMAGE" 2>/dev/null | head -1)"
  note "buildah bud --build-arg BASE_IMAGE=$BASE_IMAGE -t $IMAGE (log: $WORK/logs/build.log)"
  t0=$(now)
  # --layers=false: with vfs storage every cached layer is a full copy of the file system
  if nice "${B[@]}" bud --isolation chroot --layers=false --build-arg "BASE_IMAGE=$BASE_IMAGE" \
       -v "$WORK/pip/pip.conf:/etc/pip.conf:ro" -v "$WORK/pip/ca-bundle.crt:/etc/pip-ca-bundle.crt:ro" \
       -t "$IMAGE" "$REPO" > "$WORK/logs/build.log" 2>&1; then
    pass "build $IMAGE" "($(since "$t0"))"
    # the previous build of the tag, now untagged, would stay in the vfs storage
    [ -n "$old_image" ] && "${B[@]}" rmi "$old_image" >/dev/null 2>&1
  else
    fail "build $IMAGE" "($(since "$t0"); log: $WORK/logs/build.log)"; tail -n 25 "$WORK/logs/build.log"; exit 1
  fi
fi
note "image $IMAGE: $("${B[@]}" images --format '{{.Size}}' "$IMAGE" | head -1)"

# ------------------------------------------------------------------------------------- the image, one command
if ip netns add "$NS" && ip netns exec "$NS" ip link set lo up; then
  IN_NS=(ip netns exec "$NS")
else
  echo "ip netns failed: cannot isolate the containers' network" >&2; exit 2
fi
"${B[@]}" from --name "$CTR" "$IMAGE" >/dev/null || { fail "buildah from $IMAGE"; exit 1; }
# The image's ENTRYPOINT (buildah run does not apply it) and CMD.
mapfile -t EP < <("${B[@]}" inspect --format '{{range .OCIv1.Config.Entrypoint}}{{println .}}{{end}}' "$IMAGE" | sed '/^$/d')
CMD_DEFAULT="$("${B[@]}" inspect --format '{{range .OCIv1.Config.Cmd}}{{.}} {{end}}' "$IMAGE")"
# ep [VAR=VALUE ...] ARGS...: run through the entry point, as the image's user, in the private namespace.
# tini is not PID 1 under buildah run: TINI_SUBREAPER makes it reap the children all the same.
ep() {
  local envs=()
  while [[ "${1:-}" == *=* ]]; do envs+=("$1"); shift; done
  "${IN_NS[@]}" "${B[@]}" run --isolation chroot -v "$WORK/run:/clv-test" "$CTR" -- \
    env TINI_SUBREAPER=1 "${envs[@]}" "${EP[@]}" "$@"
}
SMALL_SPARK="CLV_SPARK_CONF=spark.driver.memory=1g,spark.sql.shuffle.partitions=2"

check "ENTRYPOINT tini + entrypoint.sh, CMD webserver" '^ok$' bash -c \
  '[ "$1" = "/usr/bin/tini -- /opt/clv/deploy/entrypoint.sh" ] && [ "$2" = "webserver " ] && echo ok' _ "${EP[*]}" "$CMD_DEFAULT"
check "runs as the non-root user clv (id)" 'uid=10001\(clv\)' ep id
check "java -version: Java 17" 'version "17\.' ep java -version
check "clv_assets installed in /opt/venv, not editable, no dev extras" '^ok /opt/venv/lib/python3\.[0-9]+/site-packages/clv_assets/' \
  ep python -c '
import importlib.metadata as md, importlib.util as u, json, clv_assets, dagster_postgres, pyspark
direct = json.loads(md.distribution("clv-assets").read_text("direct_url.json") or "{}")
assert not direct.get("dir_info", {}).get("editable"), direct
assert not [m for m in ("pytest", "duckdb", "lifetimes", "moto") if u.find_spec(m)], "dev extras installed"
print("ok", clv_assets.__file__)'
check "dagster definitions validate -m clv_assets.definitions" 'Validation successful' \
  ep dagster definitions validate -m clv_assets.definitions
check "clv historical --data-size small (local Spark in the image)" 'total historical CLV' \
  ep "$SMALL_SPARK" clv historical --data-size small --output /tmp/clv-out

# ------------------------------------------------------------------------------------------ the three roles
ROLE_ENV=()
PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
if [ "${CLV_IMAGE_TEST_POSTGRES:-1}" != 0 ] && [ -x "$PGBIN/postgres" ]; then
  t0=$(now)
  rm -rf "$PGDIR" && mkdir -p "$PGDIR" && chown postgres: "$PGDIR"
  if runuser -u postgres -- "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
       > "$WORK/logs/postgres.log" 2>&1 \
     && "${IN_NS[@]}" runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w \
       -o "-c listen_addresses=127.0.0.1 -p 5432 -k $PGDIR" start >> "$WORK/logs/postgres.log" 2>&1 \
     && runuser -u postgres -- "$PGBIN/psql" -h "$PGDIR" -v ON_ERROR_STOP=1 -q \
       -c "CREATE ROLE dagster LOGIN PASSWORD 'clv-test'" -c "CREATE DATABASE dagster OWNER dagster" \
       >> "$WORK/logs/postgres.log" 2>&1; then
    pass "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') started in the namespace" "($(since "$t0"))"
    ROLE_ENV=(DAGSTER_PG_HOST=127.0.0.1 DAGSTER_PG_USER=dagster DAGSTER_PG_PASSWORD=clv-test DAGSTER_PG_DB=dagster)
  else
    fail "PostgreSQL start" "(log: $WORK/logs/postgres.log)"; PGBIN=""
  fi
else
  PGBIN=""
  note "no PostgreSQL server here (or CLV_IMAGE_TEST_POSTGRES=0): the roles use the local-storage instance"
fi

# The roles check runs inside the image, with its python: it starts each role through the entry point as a
# process group of its own, as separate containers would be, and checks that they work together.
cat > "$WORK/run/roles_check.py" <<'PY'
import json, os, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path

EP = sys.argv[1:]  # the image's entry point
LOGS = Path("/clv-test/logs")
UI, GRPC, UI_OPEN = 3000, 4000, 3001
LOOPBACK = {"127.0.0.1", "::1"}
procs, ok = [], True
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # on timeout, still stop the roles (finally below)

def report(name, passed, detail=""):
    print(f"CHECK {'PASS' if passed else 'FAIL'} {name}" + (f" -- {detail}" if detail else ""), flush=True)
    return passed

def start(role, log, **env):
    p = subprocess.Popen([*EP, role], env={**os.environ, **env}, stdout=open(LOGS / log, "w"),
                         stderr=subprocess.STDOUT, start_new_session=True)
    procs.append(p)
    return p

def stop(p):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
            p.wait(30)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            pass

def listening(port):
    """Addresses listening on a TCP port, from /proc/net/tcp and tcp6."""
    addrs = set()
    for path, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in open(path).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            ip_hex, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                raw = b"".join(bytes.fromhex(ip_hex[i:i + 8])[::-1] for i in range(0, len(ip_hex), 8))
                addrs.add(socket.inet_ntop(family, raw).removeprefix("::ffff:"))
    return addrs

def loopback_only(port):
    return bool(listening(port)) and listening(port) <= LOOPBACK

def wait_for(pred, timeout, step=2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if value := pred():
                return value
        except Exception:
            pass
        time.sleep(step)
    return None

def gql(query):
    req = urllib.request.Request(f"http://127.0.0.1:{UI}/graphql", json.dumps({"query": query}).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)["data"]

try:
    t0 = time.time()
    start("code-server", "code-server.log", CLV_SENSORS="on", CLV_SENSOR_INTERVAL_SECONDS="5")
    up = wait_for(lambda: subprocess.run(["dagster", "api", "grpc-health-check", "-p", str(GRPC)],
                                         capture_output=True).returncode == 0, 240)
    ok &= report(f"code server: gRPC health check on port {GRPC} ({time.time() - t0:.0f}s)", bool(up))
    ok &= report("code server listens on 127.0.0.1 only by default", loopback_only(GRPC),
                 str(sorted(listening(GRPC))))

    t0 = time.time()
    start("webserver", "webserver.log", CLV_CODE_SERVER_HOST="127.0.0.1")
    info = wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{UI}/server_info", timeout=10).status == 200, 240)
    ok &= report(f"webserver: /server_info answers ({time.time() - t0:.0f}s)", bool(info))
    ok &= report("webserver listens on 127.0.0.1 only by default", loopback_only(UI),
                 str(sorted(listening(UI))))
    q = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus displayMetadata { key value }
             locationOrLoadError { ... on RepositoryLocation { repositories { assetNodes { id } } } } } } } }"""
    entries = wait_for(lambda: [e for e in gql(q)["workspaceOrError"]["locationEntries"] if e["loadStatus"] == "LOADED"], 120)
    entry = (entries or [{}])[0]
    meta = {m["key"]: m["value"] for m in entry.get("displayMetadata", [])}
    n_assets = sum(len(r["assetNodes"]) for r in (entry.get("locationOrLoadError") or {}).get("repositories", []))
    ok &= report("webserver loads location clv_assets from the code server (deploy/workspace.yaml)",
                 entry.get("name") == "clv_assets" and meta.get("port") == str(GRPC) and n_assets > 10,
                 f"{entry.get('name')}, {meta}, {n_assets} assets")
    info = gql("{ instance { info } }")["instance"]["info"] or ""
    want = "PostgresRunStorage" if os.environ.get("DAGSTER_PG_HOST") else "SqliteRunStorage"
    ok &= report(f"instance seen by the webserver: {want}", want in info)

    t0 = time.time()
    start("daemon", "daemon.log", CLV_CODE_SERVER_HOST="127.0.0.1")
    q = "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"
    def daemons_healthy():
        required = [s for s in gql(q)["instance"]["daemonHealth"]["allDaemonStatuses"] if s["required"]]
        return required if required and all(s["healthy"] for s in required) else None
    healthy = wait_for(daemons_healthy, 240, step=5)
    ok &= report(f"daemon: every required daemon healthy ({time.time() - t0:.0f}s)", bool(healthy),
                 ", ".join(s["daemonType"] for s in healthy or []))

    if os.environ.get("CLV_IMAGE_TEST_E2E", "1") != "0":
        import dagster as dg
        from clv_assets.sample_data import SampleSpec, simulate

        landing = Path(os.environ["CLV_LANDING_PATH"])
        landing.mkdir(parents=True, exist_ok=True)
        tx, _ = simulate(SampleSpec(n_customers=150, start="2023-01-01", end="2023-03-31", seed=7))
        tx["transaction_date"] = tx["transaction_date"].dt.strftime("%Y-%m-%d")
        tx.to_csv(landing / "q1.csv", index=False)
        instance = dg.DagsterInstance.get()

        def materialized(asset, partition=None):
            flt = dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None)
            return instance.fetch_materializations(flt, limit=1).records

        t0 = time.time()
        got = wait_for(lambda: materialized("transactions", "2023-03-01"), 480, step=5)
        ok &= report(f"file in landing -> sensor -> daemon -> run in the code server -> Spark: transactions "
                     f"2023-03 materialized ({time.time() - t0:.0f}s)", bool(got))
        if got:
            t0 = time.time()
            got = wait_for(lambda: materialized("historical_clv"), 480, step=5)
            ok &= report(f"automation condition then refreshes historical_clv ({time.time() - t0:.0f}s)", bool(got))
        runs = instance.get_runs()
        ok &= report("no failed run", bool(runs) and not any(r.status.value == "FAILURE" for r in runs),
                     ", ".join(f"{r.job_name}:{r.status.value}" for r in runs))
        instance.dispose()
finally:
    for p in reversed(procs):
        stop(p)

# Opened on purpose: CLV_UI_HOST=0.0.0.0 (still inside the private namespace here).
t0 = time.time()
p = start("webserver", "webserver-open.log", CLV_UI_HOST="0.0.0.0", CLV_UI_PORT=str(UI_OPEN))
addrs = wait_for(lambda: listening(UI_OPEN), 240)
stop(p)
ok &= report(f"CLV_UI_HOST=0.0.0.0: the webserver listens on 0.0.0.0 ({time.time() - t0:.0f}s)", addrs == {"0.0.0.0"}, str(addrs))
left = [port for port in (UI, GRPC, UI_OPEN) if listening(port)]
ok &= report("roles stopped, no port left open", not left, str(left))
sys.exit(0 if ok else 1)
PY
chown -R 10001:10001 "$WORK/run"
note "roles: code server, webserver, daemon on the $([ -n "$PGBIN" ] && echo PostgreSQL || echo local-storage) instance (logs: $WORK/run/logs)"
t0=$(now)
ep "${ROLE_ENV[@]}" DAGSTER_HOME=/tmp/roles-home CLV_LANDING_PATH=/tmp/roles-data/landing \
  CLV_WAREHOUSE_URI=/tmp/roles-data/warehouse CLV_HISTORY_START=2023-01-01 CLV_HISTORY_END=2023-04-01 \
  CLV_IMAGE_TEST_E2E="${CLV_IMAGE_TEST_E2E:-1}" "$SMALL_SPARK" \
  timeout -k 30 1500 python /clv-test/roles_check.py "${EP[@]}" > "$WORK/logs/roles.log" 2>&1
rc=$?
while IFS= read -r line; do
  case "$line" in
    "CHECK PASS "*) pass "${line#CHECK PASS }" ;;
    "CHECK FAIL "*) fail "${line#CHECK FAIL }" ;;
  esac
done < "$WORK/logs/roles.log"
if [ "$rc" -ne 0 ] && ! grep -q '^CHECK FAIL' "$WORK/logs/roles.log"; then
  fail "roles check exited $rc" "(log: $WORK/logs/roles.log)"; tail -n 20 "$WORK/logs/roles.log" | sed 's/^/      | /'
fi
note "roles took $(since "$t0")"
if [ -n "$PGBIN" ]; then
  stop_postgres && sleep 2
  check "PostgreSQL stopped" '^stopped$' bash -c '! pgrep -f "postgres -D $1/data" >/dev/null && echo stopped' _ "$PGDIR"
fi

echo
echo "$PASSED passed, $FAILED failed; total $(( $(date +%s) - T_START ))s (image $IMAGE from $BASE_IMAGE)"
[ "$FAILED" -eq 0 ]
