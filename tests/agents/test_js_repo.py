"""A non-Python repo: language-agnostic findings, its allowlisted npm scripts, and a
report that says which analysers ran and why the others did not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import last_json, make_repo, run_casm

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
