"""`casm run` with a live provider (the real openai SDK against the local wire-format
server): model findings, a model-written fix, exact telemetry, proof-mode artifacts valid
against the schemas, the replay reproducing the decisions, the counterfactual cost, the
budget stop, and no key anywhere."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
from helpers import ROOT, isolated_env, last_json, make_repo, run_casm

from casm_dagster.cost.prices import load_prices
from casm_dagster.cost.usage import Usage, llm_cost
from llm.fakes import FakeModelServer, Reply, openai_usage

KEY = "sk-proj-" + "Qm9vTmV2ZXJMZWFrcw" * 3
SCHEMAS = ROOT / "casm_dagster" / "schemas"
APP = "def total(items):\n    result = 0\n    for i in items:\n        result = result + i\n    return result\n"
FIX = (
    "--- a/app.py\n+++ b/app.py\n@@ -1,5 +1,2 @@\n def total(items):\n"
    "-    result = 0\n-    for i in items:\n-        result = result + i\n-    return result\n+    return sum(items)\n"
)
TEST = "from app import total\n\n\ndef test_total():\n    assert total([1, 2, 3]) == 6\n"


def _answer(api: str, body: dict) -> Reply:
    system = body["messages"][0]["content"]
    user = body["messages"][1]["content"]
    usage = openai_usage(len(user) // 4 + 20, 40, cached=8)
    if "code reviewer" in system:
        text = '{"findings": []}'
        if "File: app.py" in user:
            text = json.dumps(
                {
                    "findings": [
                        {
                            "line": 3,
                            "severity": "low",
                            "category": "smell",
                            "message": "Use sum() instead of a manual loop.",
                        }
                    ]
                }
            )
        return Reply(text, usage=usage)
    if "fixer" in system:
        return Reply(FIX if "File: app.py" in user else "NO_CHANGE", usage=usage)
    if "documentation" in system:
        return Reply("NO_CHANGE", usage=usage)
    return Reply('{"verdict": "ok", "score": 0.1, "concerns": []}', usage=usage)


@pytest.fixture
def live(tmp_path):
    repo = make_repo(tmp_path / "target", {"app.py": APP, "tests/test_app.py": TEST})
    with FakeModelServer(responder=_answer) as server:
        env = isolated_env(tmp_path / "dh")
        env |= {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.openai_base}
        yield repo, tmp_path, env, server


def _validate(doc: dict, name: str) -> None:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(doc)


def _calls(home: Path, run_id: str) -> list[dict]:
    with sqlite3.connect(home / "casm.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("select * from casm_model_calls where run_id = ?", (run_id,))]


def _normalized(path: Path, ids: list[str]) -> str:
    text = path.read_text()
    for i in ids:
        text = text.replace(i, "<RUN>")
    text = re.sub(r'"(decision_id)": "[0-9A-Z]{26}"', r'"\1": "<ID>"', text)
    return re.sub(r'"(started_at|completed_at|created_at)": "[^"]+"', r'"\1": "<TS>"', text)


def test_live_run_with_proof_mode_and_replay(live):
    repo, work, env, server = live
    proc = run_casm(
        ["run", "--template", "repo-auditor", "--repo", str(repo), "--proof-mode", "true", "--json"], work, env
    )
    assert proc.returncode == 0, proc.stderr
    out = last_json(proc.stdout)
    run_id, artifacts = out["run_id"], Path(out["artifacts_dir"])

    # model review: the finding is in issues.json, from the "model" analyser
    issues = json.loads((artifacts / "issues.json").read_text())
    model_findings = [f for f in issues["findings"] if f["analyser"] == "model"]
    assert [(f["file"], f["line"], f["rule"]) for f in model_findings] == [("app.py", 3, "model-smell")]
    # model fix: a patch group written by the model, validated (the test still passes) and delivered
    plan = json.loads((artifacts / "plan.json").read_text())
    model_groups = [g for g in plan["groups"] if g["tool"] == "model"]
    assert [g["files"] for g in model_groups] == [["app.py"]]
    branch_app = subprocess.run(
        ["git", "-C", str(repo), "show", f"{out['branch']}:app.py"], capture_output=True, text=True
    ).stdout
    assert "return sum(items)" in branch_app

    # telemetry: every request the server saw is one recorded call, tokens and cost exact
    calls = _calls(Path(env["DAGSTER_HOME"]), run_id)
    assert len(calls) == len(server.requests) > 0
    prices = load_prices()
    for call in calls:
        usage = Usage(call["input_tokens"], call["output_tokens"], call["cache_read_tokens"])
        assert call["cache_read_tokens"] == 8 and call["provider"] == "openai"
        assert Decimal(call["cost_usd"]) == llm_cost(usage, prices.rates("openai", call["model"]))
    summary = json.loads((artifacts / "run_summary.json").read_text())
    assert Decimal(summary["totals"]["llm_usd"]) == sum(Decimal(c["cost_usd"]) for c in calls)
    assert summary["model_mode"] == "live" and summary["calls"]["count"] == len(calls)
    assert "## Per call" in (artifacts / "cost_report.md").read_text()

    # proof mode: each document valid against the specification's schema, exactly
    for name in ("routing_decisions", "cost_forecast", "policy_decisions"):
        _validate(json.loads((artifacts / f"{name}.json").read_text()), name)
    routing = json.loads((artifacts / "routing_decisions.json").read_text())
    assert {t["task_type"] for t in routing["tasks"]} == {"review", "fix", "docgen", "redteam"}
    events = [json.loads(x) for x in (Path(out["run_dir"]) / "events.jsonl").read_text().splitlines()]
    scored = next(e for e in events if e["type"] == "decision" and e["data"].get("decision") == "policy_pass")
    assert scored["data"]["semantic"] == {"score": 0.1, "source": "model:openai/o4-mini"}  # redteam-lite's verdict

    # no key anywhere: artifacts, run dir, stdout, stderr
    assert KEY not in proc.stdout + proc.stderr
    for path in [*artifacts.rglob("*"), *(work / ".casm").rglob("*")]:
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path

    # the replay: same decisions, routing and forecast; no request reaches a model
    script = artifacts / "run_replay.sh"
    assert script.read_text().startswith("#!/usr/bin/env sh\n") and "set -eu" in script.read_text()
    requests_before = len(server.requests)
    replay_env = {**env, "PATH": f"{Path(__import__('sys').executable).parent}:{env['PATH']}"}
    replay_env.pop("OPENAI_API_KEY")  # a replay needs no key
    rp = subprocess.run(
        ["sh", str(script), "--json"], cwd=work, env=replay_env, capture_output=True, text=True, timeout=300
    )
    assert rp.returncode == 0, rp.stderr
    again = last_json(rp.stdout)
    replayed = Path(again["artifacts_dir"])
    assert len(server.requests) == requests_before
    ids = [run_id, again["run_id"]]
    for name in ("routing_decisions.json", "policy_decisions.json"):
        assert _normalized(replayed / name, ids) == _normalized(artifacts / name, ids), name
    first, second = (json.loads((d / "cost_forecast.json").read_text()) for d in (artifacts, replayed))
    assert first["forecast"] == second["forecast"] and first["budget"] == second["budget"]
    assert first["actual"]["llm"]["cost_usd"] == second["actual"]["llm"]["cost_usd"]
    assert "same routing and prices" in rp.stdout

    # the counterfactual: the same run under another routing strategy costs something else
    cf = subprocess.run(
        ["sh", str(script), "--routing", "quality_first"],
        cwd=work,
        env=replay_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cf.returncode == 0, cf.stderr
    line = next(x for x in cf.stdout.splitlines() if "counterfactual" in x)
    before, after = (Decimal(x) for x in re.findall(r"\$([0-9.]+)", line)[:2])
    assert after > before  # quality_first picks pricier models for the same tokens


def test_a_budget_too_small_for_any_model_work_stops_the_run(live):
    repo, work, env, server = live
    proc = run_casm(
        ["run", "--template", "repo-auditor", "--repo", str(repo), "--budget-usd", "0.000001", "--json"]
        + ["--sarif", str(work / "stopped.sarif")],
        work,
        env,
    )
    assert proc.returncode == 5, proc.stderr
    out = last_json(proc.stdout)
    assert out["status"] == "stopped" and server.requests == []
    # Nothing was analysed: no SARIF, whose empty upload would close every open alert.
    assert "sarif:     not written" in proc.stdout and not (work / "stopped.sarif").exists()
    events = [json.loads(x) for x in (Path(out["run_dir"]) / "events.jsonl").read_text().splitlines()]
    steps = [
        e["data"]["action"]
        for e in events
        if e["type"] == "decision" and e["data"].get("decision", "").startswith("budget_")
    ]
    assert steps[0] == "none" and steps[-1] == "stop"  # the cascade's order: tests/llm/test_forecast_budget.py
    report = (Path(out["artifacts_dir"]) / "report.md").read_text()
    assert "stopped by the budget" in report
    import dagster as dg

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:  # Dagster says SUCCESS; the tag says why
        run = instance.get_run_by_id(out["dagster_run_id"])
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["casm/status"] == "stopped"


def test_casm_cost_prints_the_last_runs_summary_with_margin(tmp_path):
    env = isolated_env(tmp_path / "dh")
    proc = run_casm(["demo", "--json"], tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    out = last_json(proc.stdout)
    cost = run_casm(["cost", "--last-run", "--price-usd", "2", "--json"], tmp_path, env)
    assert cost.returncode == 0, cost.stderr
    data = last_json(cost.stdout)
    summary = json.loads((Path(out["artifacts_dir"]) / "run_summary.json").read_text())
    assert data["run_id"] == out["run_id"] and summary["model_mode"] == "offline"
    outcome = Decimal(summary["totals"]["outcome_cost_usd"])
    assert outcome > 0 and Decimal(summary["totals"]["llm_usd"]) == 0
    assert data["gross_margin"] == float(round(1 - outcome / 2, 4))
    assert "model mode:   offline" in cost.stdout
    missing = run_casm(["cost", "--run-id", "01NOTARUN"], tmp_path, env)
    assert missing.returncode == 2 and "no run_summary.json" in missing.stderr
