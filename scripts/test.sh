#!/usr/bin/env bash
# Set up (as scripts/demo.sh does) and run the whole test suite, slow integration tests included.
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not slow"` for the quick ones only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
