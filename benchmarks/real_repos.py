"""Would a maintainer merge it? CASM on the real repositories of the corpus.

For each git bundle in the corpus (default ``../shared/corpus``): clone it, build an
environment for it *independently of CASM* (plain uv, every test-ish group and extra),
measure the repo's own lint + one test run there directly (after an untimed warm-up run),
then audit it with ``casm run``
twice on a fresh state dir (cold: the environment is built; warm: reused) and check the
delivered branch in the independent environment: tests broken against HEAD (per test),
new lint errors under the repo's own ruff configuration, changed lines.

    python benchmarks/real_repos.py [--corpus DIR] [--repos click,attrs] [--json]

Prints one row per repo, the warm-audit / direct (lint + tests) ratio, and CASM's floor
(``noop_s``: the noop template on the same repo and state, which runs no analyser and no
check: no audit can be faster). Needs the package registries (the environments are built
from them) and takes minutes per repo.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from casm_dagster.agents.python_tools import ruff_settings  # noqa: E402
from casm_dagster.environments.build import uv_bin  # noqa: E402
from casm_dagster.environments.detect import TEST_NAMES, node_manager  # noqa: E402
from casm_dagster.safety import junit  # noqa: E402

CASM = str(Path(sys.executable).parent / "casm")
TEST_TIMEOUT = 1800


def sh(argv: list[str], cwd: Path, env: dict | None = None, timeout: int = TEST_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def independent_env(repo: Path, where: Path) -> Path | None:
    """A Python environment made without CASM's code: uv, every test-ish group and extra."""
    uv = uv_bin()
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text()) if (repo / "pyproject.toml").exists() else {}
    groups = [g for g in pyproject.get("dependency-groups", {}) if g in TEST_NAMES]
    extras = [e for e in pyproject.get("project", {}).get("optional-dependencies", {}) if e in TEST_NAMES]
    python = where / "bin" / "python"
    sh([uv, "venv", "--quiet", "--python", sys.executable, str(where)], repo)
    args = [uv, "pip", "install", "--python", str(python), "-e", f".[{','.join(extras)}]" if extras else "."]
    args += [a for g in groups for a in ("--group", f"pyproject.toml:{g}")]
    args += [a for r in sorted(repo.glob("requirements*dev*.txt")) for a in ("-r", r.name)]
    args += [a for r in sorted(repo.glob("requirements/test*.txt")) for a in ("-r", str(r.relative_to(repo)))]
    args += [*tox_deps(repo, pyproject), "pytest"]
    proc = sh(args, repo)
    if proc.returncode != 0:
        print(f"  independent env failed: {proc.stderr[-500:]}", file=sys.stderr)
        return None
    return python


def tox_deps(repo: Path, pyproject: dict) -> list[str]:
    """tox's ``[testenv]`` deps as a maintainer's tox would install them, minus factor-only
    lines and what is not on a package registry (tqdm's suite needs pytest-timeout's and
    pytest-asyncio's options; its tox config lives in ``[tool.tox] legacy_tox_ini``)."""
    tox = configparser.ConfigParser(interpolation=None)
    if (repo / "tox.ini").exists():
        tox.read_string((repo / "tox.ini").read_text())
    elif legacy := pyproject.get("tool", {}).get("tox", {}).get("legacy_tox_ini"):
        tox.read_string(legacy)

    def lines(section: str, key: str) -> list[str]:
        out = []
        for line in (tox.get(section, key, fallback="") or "").splitlines():
            if ref := re.fullmatch(r"\s*\{\[(.+)\](\w+)\}\s*", line):
                out += lines(ref.group(1), ref.group(2))
            elif line.strip() and not re.match(r"\s*[\w,!-]+:\s|\s*(-|git\+|https?:)", line):
                out.append(line.strip())
        return out

    return lines("testenv", "deps")


def run_tests(python: Path, tree: Path) -> tuple[dict[str, str], float]:
    """Per-test outcomes of one ``python -m pytest -q`` run in ``tree``, and its wall time."""
    sh([uv_bin(), "pip", "install", "--python", str(python), "--no-deps", "-e", "."], tree)
    report = tree.parent / f"{tree.name}-junit.xml"
    started = time.monotonic()
    sh([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *junit.report_args(report)], tree)
    return junit.read(report, tree) or {}, time.monotonic() - started


def lint_errors(tree: Path) -> tuple[int, float]:
    settings = ruff_settings(tree)
    if not settings.config:
        return 0, 0.0
    files = sh(["git", "ls-files", "*.py", "*.pyi"], tree).stdout.split()
    started = time.monotonic()
    proc = sh([sys.executable, "-m", "ruff", "check", *settings.args(), "--output-format=json", "--exit-zero", *files],
              tree)  # fmt: skip
    return len(json.loads(proc.stdout or "[]")), time.monotonic() - started


def audit(repo: Path, state: Path, template: str = "repo-auditor") -> tuple[dict, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "CASM_"))}
    env.update(CASM_STATE_DIR=str(state), DAGSTER_HOME=str(state / "dagster_home"), CASM_MODEL_PROVIDER="offline")
    (state / "dagster_home").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", state / "dagster_home" / "dagster.yaml")
    started = time.monotonic()
    proc = sh([CASM, "run", "--template", template, "--repo", str(repo), "--json",
               "--artifacts-dir", str(state / "artifacts")], state, env)  # fmt: skip
    wall = time.monotonic() - started
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1]), wall
    except (IndexError, ValueError):
        return {"status": "crashed", "error": proc.stderr[-800:]}, wall


def node_direct(repo: Path) -> tuple[str, float]:
    sh(["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--no-package-lock"], repo)
    sh(["npm", "test"], repo)  # warm-up, untimed: a maintainer's second run, as CASM's is
    started = time.monotonic()
    proc = sh(["npm", "test"], repo)
    return ("passed" if proc.returncode == 0 else f"failed ({proc.returncode})"), time.monotonic() - started


def measure(bundle: Path, work: Path) -> dict:
    name = bundle.stem
    repo = work / name
    sh(["git", "clone", "--quiet", str(bundle), str(repo)], work)
    row: dict = {"repo": name}
    state = work / f"{name}-state"
    state.mkdir()
    out, cold = audit(repo, state)
    out2, warm = audit(repo, state)
    # CASM's floor on this machine: the noop template (CLI and Dagster start, ingest, the
    # report; no analyser, no check) on the same state. No audit can take less.
    _, floor = audit(repo, state, "noop")
    row.update(status=out.get("status"), cold_s=round(cold, 1), warm_s=round(warm, 1), noop_s=round(floor, 1))
    run_dir = Path(out["run_dir"]) if out.get("run_dir") else None
    validation = json.loads((run_dir / "validation.json").read_text()) if run_dir else {}
    envfile = run_dir / "environment.json" if run_dir else None
    environment = json.loads(envfile.read_text()) if envfile and envfile.exists() else {}
    before = [c for c in validation.get("checks", []) if c["phase"] == "before"]
    tests_before = sum(len(c.get("tests") or {}) for c in before)
    passed_before = sum(o == "passed" for c in before for o in (c.get("tests") or {}).values())
    row["environment"] = environment.get("status", "-")
    row["baseline_validated"] = "yes" if passed_before or any(c["status"] == "passed" for c in before) else "no"
    # Without per-test outcomes (a JS runner), name the checks that passed instead of "0".
    row["tests_run"] = tests_before or ", ".join(c["command"] for c in before if c["status"] == "passed") or 0
    row["groups_kept"] = len(validation.get("accepted_groups", []))
    row["groups_rejected"] = len(validation.get("rejected_groups", {}))
    branch = out.get("branch")
    row["branch"] = branch or "-"
    if node_manager(repo) and not (repo / "pyproject.toml").exists():
        result, direct = node_direct(repo)
        row.update(direct_tests=result, direct_s=round(direct, 1), tests_broken="-", new_lint_errors="-")
    else:
        python = independent_env(repo, work / f"{name}-env")
        # A warm-up first, untimed (bytecode, ruff's cache): the maintainer's usual run, as
        # the warm audit is CASM's (its environments are compiled when built).
        lint_errors(repo)
        if python:
            run_tests(python, repo)
        lint_head, lint_s = lint_errors(repo)
        head_tests, test_s = run_tests(python, repo) if python else ({}, 0.0)
        row["direct_s"] = round(lint_s + test_s, 1)
        row["direct_tests"] = f"{sum(o == 'passed' for o in head_tests.values())} passed"
        row["tests_broken"] = 0
        row["new_lint_errors"] = 0
        if branch and python:
            tree = work / f"{name}-branch"
            sh(["git", "worktree", "add", "--quiet", "--detach", str(tree), branch], repo)
            branch_tests, _ = run_tests(python, tree)
            broken = [t for t, o in head_tests.items() if o == "passed" and branch_tests.get(t) != "passed"]
            row["tests_broken"] = len(broken)
            row["new_lint_errors"] = max(0, lint_errors(tree)[0] - lint_head)
    if branch:
        stat = sh(["git", "diff", "--numstat", f"HEAD..{branch}"], repo).stdout.splitlines()
        row["changed_lines"] = sum(int(a) + int(b) for a, b, _ in (s.split("\t") for s in stat) if a != "-")
    else:
        row["changed_lines"] = 0
    row["second_run_branch"] = out2.get("branch") or "-"
    # A direct run that ran no test (its independent environment failed) is no baseline for a ratio.
    ran = row.get("direct_tests") not in (None, "0 passed")
    row["warm_over_direct"] = round(warm / row["direct_s"], 2) if row.get("direct_s") and ran else None
    return row


COLUMNS = ["repo", "environment", "baseline_validated", "tests_run", "groups_kept", "groups_rejected",
           "tests_broken", "new_lint_errors", "changed_lines", "cold_s", "warm_s", "noop_s", "direct_s",
           "warm_over_direct"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--repos", default="", help="comma-separated bundle names (default: all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    wanted = {r for r in args.repos.split(",") if r}
    bundles = sorted(b for b in args.corpus.glob("*.bundle") if not wanted or b.stem in wanted)
    rows = []
    with tempfile.TemporaryDirectory(prefix="casm-real-") as tmp:
        for bundle in bundles:
            print(f"{bundle.stem} …", file=sys.stderr, flush=True)
            row = measure(bundle, Path(tmp))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "-")) for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
