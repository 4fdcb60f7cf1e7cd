#!/usr/bin/env bash
# Shared set-up for scripts/demo.sh and scripts/test.sh: checks Python and Java, then creates .venv and
# installs the project with its pinned dependencies (again only when pyproject.toml changes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 14)))'; then
      PYTHON="$candidate"; break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  echo "clv-assets needs Python 3.11, 3.12 or 3.13 (python3 is $(python3 --version 2>&1 || echo missing))." >&2
  exit 1
fi

java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
if [ -z "${CLV_SPARK_REMOTE:-}" ]; then
  if ! command -v "$java_bin" >/dev/null 2>&1; then
    cat >&2 <<'MSG'
Java not found. Spark needs Java 17 or newer:
  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless
  macOS:         brew install openjdk@17   (then follow brew's note to put it on PATH)
  other:         Temurin 17 from https://adoptium.net, then set JAVA_HOME
Or use a remote Spark Connect server: export CLV_SPARK_REMOTE=sc://host:15002
MSG
    exit 1
  fi
  java_major=$("$java_bin" -version 2>&1 | sed -n 's/.*version "\([0-9]*\)\.\{0,1\}\([0-9]*\).*/\1 \2/p' | head -1)
  set -- $java_major
  major=${1:-0}; [ "$major" = "1" ] && major=${2:-0}
  if [ "$major" -lt 17 ]; then
    echo "Spark needs Java 17 or newer; $java_bin is Java $major. Install Java 17 (e.g. openjdk-17-jre-headless) and set JAVA_HOME." >&2
    exit 1
  fi
fi

stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
