"""Local wheel directories for the environments the tests build. ``WHEELHOUSE``: pytest
(the runner CASM collects per-test outcomes with) and setuptools (the fixture repos' build
backend). ``PROJECT_WHEELHOUSE``: CASM's own dependencies and build backend, for the
pre-commit hook's environment (pre-commit installs the hook repo). The suite's uv runs
with ``UV_NO_INDEX=1`` against them, so no test reaches a package index; ``.ci/run`` fills
both up front, and a local run fills them on first use (pip, from the configured registry)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = ROOT / "tests" / ".wheelhouse"
UV_CACHE = ROOT / "tests" / ".uv-cache"
PACKAGES = ("pytest", "setuptools", "wheel")
PROJECT_WHEELHOUSE = ROOT / "tests" / ".wheelhouse-casm"


def _download(where: Path, requirements: list[str] | tuple[str, ...]) -> None:
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "-d", str(where), *requirements],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"could not fill the wheelhouse {where}: {proc.stderr.strip()[-1000:]}")


def ensure(where: Path = WHEELHOUSE) -> Path:
    have = {p.name.split("-")[0].lower() for p in where.glob("*.whl")} if where.is_dir() else set()
    if not set(PACKAGES) <= have:
        _download(where, PACKAGES)
    return where


def _project_requirements() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return [*pyproject["project"]["dependencies"], *pyproject["build-system"]["requires"], "editables"]


def ensure_project(where: Path = PROJECT_WHEELHOUSE) -> Path:
    """Wheels for installing CASM itself (its dependencies and build backend); refilled when
    pyproject.toml's requirements change."""
    requirements = _project_requirements()
    stamp = hashlib.sha256("\n".join(requirements).encode()).hexdigest()
    marker = where / ".complete"
    if marker.exists() and marker.read_text() == stamp:
        return where
    _download(where, requirements)
    marker.write_text(stamp)
    return where


if __name__ == "__main__":
    print(f"test wheelhouse: {ensure()}")
    print(f"project wheelhouse: {ensure_project()}")
