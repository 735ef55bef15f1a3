"""The sandbox's cost: the demo audit's wall time with bubblewrap against the same audit
with only a network namespace (``CASM_SANDBOX=unshare``), measured in the same run.

    python benchmarks/sandbox_overhead.py [--repeat 3]

Prints the median wall time of each mode and their ratio (bubblewrap / unshare).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASM = str(Path(sys.executable).parent / "casm")


def audit(mode: str, work: Path) -> float:
    state = Path(tempfile.mkdtemp(prefix=f"casm-{mode}-", dir=work))
    home = state / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "CASM_"))}
    env.update(DAGSTER_HOME=str(home), CASM_STATE_DIR=str(state), CASM_MODEL_PROVIDER="offline")
    if mode != "bwrap":
        env["CASM_SANDBOX"] = mode
    started = time.monotonic()
    proc = subprocess.run([CASM, "demo", "--json", "--artifacts-dir", str(state / "artifacts")], cwd=state, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{mode}: casm demo failed: {proc.stderr[-800:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"unshare": [], "bwrap": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):  # interleaved, so drift hits both modes alike
            for mode in times:
                times[mode].append(audit(mode, Path(tmp)))
    medians = {mode: statistics.median(t) for mode, t in times.items()}
    result = {"median_s": medians, "ratio_bwrap_to_unshare": round(medians["bwrap"] / medians["unshare"], 3)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
