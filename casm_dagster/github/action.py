"""The GitHub Action (``action.yml`` at the repo root): what its run step does, as a
program that reads the environment GitHub Actions sets and can run anywhere.

On a ``pull_request`` event it reviews the PR (pr-sentinel: the sticky comment); on any
other event it audits the repository (repo-auditor: a PR with the patches and the cost
comment). Either way it writes the run's SARIF for the upload step and sets the step's
outputs. A run held for approval (exit 3) or stopped by the budget (5) is not a failed
step — the comment or the report says what happens next; a blocked change (4) or a
failed run (1) is.

Inputs arrive as ``INPUT_<NAME>`` variables (the composite action maps its ``inputs``):
``MODE`` (auto | audit | review), ``TEMPLATE``, ``BUDGET_USD``, ``PROOF_MODE``,
``APPROVERS`` (comma-separated ``USER:<login>``/``ORG:<org>``: who may approve a held PR).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from casm_dagster.contracts.yaml12 import load_yaml
from casm_dagster.errors import ConfigError
from casm_dagster.run.templates import PR_WORKFLOW, load_template

FAILED_EXITS = frozenset({1, 2, 4})  # failed, bad input, blocked: a red check


@dataclass(frozen=True)
class Invocation:
    mode: str  # audit | review
    args: list[str]  # casm's arguments
    sarif: Path
    template_file: tuple[Path, str] | None  # (where, text): a template copy with the approvers


def _input(env: Mapping[str, str], name: str) -> str:
    return env.get(f"INPUT_{name}", "").strip()


def _pull_number(env: Mapping[str, str]) -> int | None:
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return None
    try:
        event = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"GITHUB_EVENT_PATH {path}: not readable JSON ({exc})") from None
    number = (event.get("pull_request") or {}).get("number")
    return number if isinstance(number, int) and number > 0 else None


def _approvers(raw: str) -> list[str]:
    approvers = [a.strip() for a in raw.split(",") if a.strip()]
    for a in approvers:
        kind, _, name = a.partition(":")
        if kind not in ("USER", "ORG") or not name:
            raise ConfigError(f"approvers: {a!r} is not USER:<login> or ORG:<org>")
    return approvers


def _with_approvers(template_ref: str, approvers: list[str], where: Path) -> tuple[Path, str]:
    """A copy of the template whose GitHub approvers are ``approvers``."""
    template = load_template(template_ref)
    data = load_yaml(template.path.read_text(encoding="utf-8"))  # YAML 1.2: `on:` stays a string
    data.setdefault("policy", {}).setdefault("hitl", {}).setdefault("github", {})["approvers"] = approvers
    return where / f"{template.id}.action.yaml", yaml.safe_dump(data, sort_keys=False)


def plan(env: Mapping[str, str], workdir: Path) -> Invocation:
    repo = env.get("GITHUB_REPOSITORY", "")
    if "/" not in repo:
        raise ConfigError("GITHUB_REPOSITORY is not set: run this as a GitHub Action (or set it to owner/name)")
    mode = _input(env, "MODE") or "auto"
    if mode not in ("auto", "audit", "review"):
        raise ConfigError(f"mode: {mode!r} is not auto, audit or review")
    pull = _pull_number(env)
    if mode == "auto":
        mode = "review" if env.get("GITHUB_EVENT_NAME", "").startswith("pull_request") and pull else "audit"
    if mode == "review" and pull is None:
        raise ConfigError("mode review needs a pull_request event (its payload names the PR)")
    template_ref = _input(env, "TEMPLATE") or ("pr-sentinel" if mode == "review" else "repo-auditor")
    reviews = load_template(template_ref).manifest.entrypoint.workflow == PR_WORKFLOW
    if reviews != (mode == "review"):
        raise ConfigError(
            f"template {template_ref} does not fit mode {mode} (review: pr-sentinel; audit: repo-auditor)"
        )
    sarif = workdir / "casm.sarif"
    args = ["run", "--repo", repo, "--json", "--sarif", str(sarif), "--artifacts-dir", str(workdir / "casm-artifacts")]
    if mode == "review":
        args += ["--pr", str(pull)]
    template_file = None
    approvers = _approvers(_input(env, "APPROVERS"))
    if approvers:
        template_file = _with_approvers(template_ref, approvers, workdir)
        template_ref = str(template_file[0])
    args += ["--template", template_ref]
    if budget := _input(env, "BUDGET_USD"):
        args += ["--budget-usd", budget]
    if proof := _input(env, "PROOF_MODE"):
        args += ["--proof-mode", proof]
    return Invocation(mode, args, sarif, template_file)


def _set_outputs(env: Mapping[str, str], outputs: dict[str, str]) -> None:
    path = env.get("GITHUB_OUTPUT")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as handle:
        for key, value in outputs.items():
            handle.write(f"{key}={value.replace(chr(10), ' ')}\n")


def main(env: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    workdir = Path(env.get("RUNNER_TEMP") or ".casm").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        invocation = plan(env, workdir)
    except ConfigError as exc:
        print(f"casm action: error: {exc}", file=sys.stderr)
        return 2
    if invocation.template_file:
        path, text = invocation.template_file
        path.write_text(text, encoding="utf-8")
    casm = [sys.executable, "-m", "casm_dagster.cli.main"]
    proc = subprocess.run([*casm, *invocation.args], env=env, stdout=subprocess.PIPE, text=True)
    sys.stdout.write(proc.stdout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    _set_outputs(
        env,
        {
            "mode": invocation.mode,
            "status": result.get("status", "failed"),
            "run-id": result.get("run_id") or "",
            "pull-request": result.get("pull_request") or "",
            "report": result.get("report") or "",
            "sarif-file": str(invocation.sarif) if invocation.sarif.exists() else "",
            "exit-code": str(proc.returncode),
        },
    )
    return 1 if proc.returncode in FAILED_EXITS else 0


if __name__ == "__main__":
    sys.exit(main())
