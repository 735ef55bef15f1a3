"""A non-Python repo: language-agnostic findings, its allowlisted npm scripts, and a
report that says which analysers ran and why the others did not."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import git, last_json, make_repo, run_casm

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_js_repo_gets_todo_scan_and_npm_checks(tmp_path: Path, workdir: Path, casm_env) -> None:
    package = {"name": "js-demo", "version": "1.0.0", "private": True,
               "scripts": {"test": "node test.js"}}  # fmt: skip
    repo = make_repo(tmp_path / "js", {
        "package.json": json.dumps(package, indent=2) + "\n",
        "index.js": "// TODO: validate input\nmodule.exports = (a, b) => a + b;\n",
        "test.js": "const add = require('./index');\nif (add(1, 2) !== 3) { process.exit(1); }\n",
    })  # fmt: skip
    proc = run_casm(["run", "--template", "repo-auditor", "--repo", str(repo), "--json"], workdir, casm_env)
    assert proc.returncode == 0, proc.stderr
    out = last_json(proc.stdout)
    assert out["branch"] is None and out["patches"] == 0 and out["checks"] == 1
    issues = json.loads((Path(out["artifacts_dir"]) / "issues.json").read_text())
    status = {a["name"]: (a["status"], a["detail"]) for a in issues["analysers"]}
    assert status["ruff"] == ("skipped", "no Python files") and status["bandit"][0] == "skipped"
    assert status["todo-scan"][0] == "ran"
    assert [(f["rule"], f["file"], f["line"]) for f in issues["findings"]] == [("TODO", "index.js", 1)]
    report = Path(out["report"]).read_text()
    assert "| `npm test` | passed" in report  # `npm run lint` has no script here: not run
    assert "npm run lint" not in report


TS_PACKAGE = {
    "name": "ts-demo",
    "version": "1.0.0",
    "private": True,
    "type": "module",
    "scripts": {"test": "eslint . && prettier --check src && node --test test/"},
    "devDependencies": {"eslint": "9.39.5", "prettier": "3.10.1", "typescript": "5.9.3", "typescript-eslint": "8.74.0"},
}
TS_FILES = {
    "eslint.config.js": 'import tseslint from "typescript-eslint";\n\nexport default tseslint.config('
    '...tseslint.configs.recommended, {\n  rules: { "prefer-const": "error" },\n});\n',
    ".prettierrc.json": '{ "trailingComma": "all" }\n',
    "src/math.ts": "export function add(a: number, b: number): number {\n  let total = a + b;\n  return total;\n}\n",
    "src/format.ts": "export const double = (x:number)=>x*2\n",
    "README.md": "# ts-demo\n* not   prettier's style\n",  # prettier would rewrite it: not a JS/TS source, left alone
    "test/math.test.js": 'import assert from "node:assert";\nimport { readFileSync } from "node:fs";\nimport { test } '
    'from "node:test";\n\ntest("add is exported", () => {\n  assert.match(readFileSync("src/math.ts", "utf8"), '
    "/export function add/);\n});\n",
}
# A test that pins the source line the eslint fix rewrites: the fix must be rejected, per test.
PINNING_TEST = (
    'import assert from "node:assert";\nimport { readFileSync } from "node:fs";\nimport { test } from "node:test";\n\n'
    'test("total is a let", () => {\n  assert.match(readFileSync("src/math.ts", "utf8"), /let total/);\n});\n'
)


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


@pytest.mark.skipif(shutil.which("npm") is None and os.environ.get("CI") != "true", reason="npm is not installed")
def test_ts_repo_is_linted_fixed_and_validated_with_its_own_tools(tmp_path: Path, workdir: Path, casm_env) -> None:
    """eslint (typescript-eslint) and prettier from the repo's own environment: their
    findings, their fixes as patch groups, `npm test` (node --test, eslint, prettier) as the
    check with Node's per-test outcomes."""
    files = {"package.json": json.dumps(TS_PACKAGE, indent=2) + "\n", **TS_FILES}
    repo = make_repo(tmp_path / "ts", files)
    # A committed symlink to the file with the lint error: eslint lints it too, but CASM
    # audits no symlink (skipped), so the tool's findings there are not reported.
    (repo / "src" / "alias.ts").symlink_to("math.ts")
    git(repo, "add", "src/alias.ts")
    git(repo, "commit", "--quiet", "-m", "alias")
    proc = run_casm(["run", "--template", "repo-auditor", "--repo", str(repo), "--json"], workdir, casm_env)
    assert proc.returncode == 0, proc.stderr
    out = last_json(proc.stdout)
    issues = json.loads((Path(out["artifacts_dir"]) / "issues.json").read_text())
    ran = {a["name"]: (a["status"], a["findings"]) for a in issues["analysers"]}
    assert ran["eslint"] == ("ran", 1) and ran["prettier"] == ("ran", 1)
    found = {(f["analyser"], f["rule"], f["file"], f["line"], f["fix_group"]) for f in issues["findings"]}
    assert ("eslint", "prefer-const", "src/math.ts", 2, "eslint-fix") in found
    assert ("prettier", "format", "src/format.ts", 0, "prettier-format") in found
    assert not any(f["file"] in ("README.md", "src/alias.ts") for f in issues["findings"])
    run_dir = Path(out["run_dir"])
    plan = json.loads((run_dir / "plan.json").read_text())
    assert [(g["group_id"], g["tool"], g["files"]) for g in plan["groups"]] == [
        ("01-eslint-fix", "eslint", ["src/math.ts"]),
        ("02-prettier-format", "prettier", ["src/format.ts"]),
    ]
    # `npm test` fails at HEAD (the lint errors, before any test ran) and passes on the
    # patched tree: that validates.
    assert out["branch"] and out["patches"] == 2
    decisions = [e["data"].get("decision") for e in _events(run_dir) if e["type"] == "decision"]
    assert "validated_by_fix" in decisions
    report = Path(out["report"]).read_text()
    assert "| `npm test` | failed (" in report and "| passed: 1 passed, 0 failed (" in report  # per test, from Node
    shown = subprocess.run(["git", "-C", str(repo), "show", f"{out['branch']}:src/math.ts"], capture_output=True,
                           text=True, check=True).stdout  # fmt: skip
    assert "const total = a + b;" in shown
    readme = subprocess.run(["git", "-C", str(repo), "show", f"{out['branch']}:README.md"], capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    assert readme == TS_FILES["README.md"]

    # The same repo with a test pinning the line the eslint fix rewrites: Node's per-test
    # report shows the fix breaks a passing test, so that group is rejected; the formatting
    # one is still delivered (the tests that passed still pass).
    # The tests run first here, so they report at HEAD too.
    tests_first = {**TS_PACKAGE, "scripts": {"test": "node --test test/ && eslint . && prettier --check src"}}
    package = json.dumps(tests_first, indent=2) + "\n"
    pinned = make_repo(tmp_path / "ts-pinned", {**files, "package.json": package, "test/pin.test.js": PINNING_TEST})
    proc = run_casm(["run", "--template", "repo-auditor", "--repo", str(pinned), "--json"], workdir, casm_env)
    assert proc.returncode == 0, proc.stderr
    out = last_json(proc.stdout)
    validated = next(e["data"] for e in _events(Path(out["run_dir"])) if e["type"] == "stage_completed"
                     and e["stage"] == "validate")  # fmt: skip
    assert validated["accepted"] == ["02-prettier-format"]
    assert "breaks 1 passing test" in validated["rejected"]["01-eslint-fix"]
    assert "total is a let" in validated["rejected"]["01-eslint-fix"]


CORPUS = Path(os.environ.get("CASM_CORPUS", Path(__file__).resolve().parents[3] / "shared" / "corpus"))


@pytest.mark.skipif(not (CORPUS / "chalk.bundle").is_file(), reason=f"no chalk bundle in {CORPUS} (set CASM_CORPUS)")
def test_chalk_is_audited_with_xo_and_its_npm_test(tmp_path: Path, workdir: Path, casm_env) -> None:
    """chalk at its pinned commit (the corpus): its own xo finds nothing, `npm test` (xo, c8
    ava, tsd) passes at baseline, nothing is delivered. (xo's own fixes as a patch group,
    validated by `npm test`, are the TypeScript fixture's eslint case above: a second chalk
    run would cost the suite another half minute.)"""
    repo = tmp_path / "chalk"
    subprocess.run(["git", "clone", "-q", str(CORPUS / "chalk.bundle"), str(repo)], check=True, capture_output=True)
    args = ["run", "--template", "repo-auditor", "--repo", str(repo), "--json"]
    proc = run_casm(args, workdir, casm_env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = last_json(proc.stdout)
    issues = json.loads((Path(out["artifacts_dir"]) / "issues.json").read_text())
    ran = {a["name"]: (a["status"], a["findings"]) for a in issues["analysers"]}
    assert ran["xo"] == ("ran", 0)
    assert "| `npm test` | passed (" in Path(out["report"]).read_text()
    assert out["branch"] is None and out["patches"] == 0
