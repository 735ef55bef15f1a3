"""A local wheel directory for the environments the tests build: pytest (the runner CASM
collects per-test outcomes with) and setuptools (the fixture repos' build backend). The
suite's uv runs with ``UV_NO_INDEX=1`` against it, so no test reaches a package index;
``.ci/run`` fills it up front, and a local run fills it on first use (pip, from the
configured registry)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = ROOT / "tests" / ".wheelhouse"
UV_CACHE = ROOT / "tests" / ".uv-cache"
PACKAGES = ("pytest", "setuptools", "wheel")


def ensure(where: Path = WHEELHOUSE) -> Path:
    have = {p.name.split("-")[0].lower() for p in where.glob("*.whl")} if where.is_dir() else set()
    if not set(PACKAGES) <= have:
        where.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "-d", str(where), *PACKAGES],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"could not fill the test wheelhouse {where}: {proc.stderr.strip()[-1000:]}")
    return where


if __name__ == "__main__":
    print(f"test wheelhouse: {ensure()}")
