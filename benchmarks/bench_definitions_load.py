"""How long loading the definitions takes (what the UI and `dagster definitions validate` pay), next to a
one-asset project in the same environment, and whether loading starts a JVM.

    .venv/bin/python benchmarks/bench_definitions_load.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ONE_ASSET = '''
import dagster as dg

@dg.asset
def one_asset() -> int:
    return 1

defs = dg.Definitions(assets=[one_asset])
'''


def validate_seconds(module: str, cwd: Path) -> float:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-m", module],
                         cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"validate failed for {module}:\n{out.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "one_asset_project.py").write_text(ONE_ASSET)
        ours = [validate_seconds("clv_assets.definitions", root) for _ in range(args.repeat)]
        baseline = [validate_seconds("one_asset_project", Path(tmp)) for _ in range(args.repeat)]
    jvm_check = subprocess.run(
        [sys.executable, "-c", "from clv_assets.definitions import defs; defs(); from pyspark import SparkContext; "
         "print('JVM started' if SparkContext._gateway else 'no JVM started')"],
        cwd=root, capture_output=True, text=True,
    ).stdout.strip()
    m_ours, m_base = statistics.median(ours), statistics.median(baseline)
    print(f"dagster definitions validate, median of {args.repeat}:")
    print(f"  clv_assets          {m_ours:6.2f} s   (runs: {', '.join(f'{x:.2f}' for x in ours)})")
    print(f"  one-asset project   {m_base:6.2f} s   (runs: {', '.join(f'{x:.2f}' for x in baseline)})")
    print(f"  ratio               {m_ours / m_base:6.2f}x  (target <= 2x)")
    print(f"  loading definitions: {jvm_check}")


if __name__ == "__main__":
    main()
