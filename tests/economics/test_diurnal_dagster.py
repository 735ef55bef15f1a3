"""The closed loop through Dagster: synthetic telemetry in the instance's database →
``diurnal_optimization_job`` materializes ``routing_policy`` (metadata checked) → the next
run's spec records the policy, its router sends fix to the stronger model and keeps review
cheap, its forecast moves, and ``casm explain --decision`` tells why."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from helpers import isolated_env, run_casm

from casm_dagster.assets import economics
from casm_dagster.cost.forecast import price
from casm_dagster.cost.formulas import CostRates
from casm_dagster.economics.policy_view import routing_view
from casm_dagster.resources import CasmResource, GitHubResource, latest_routing_policy
from casm_dagster.resources.instance import instance_db_url
from casm_dagster.run.spec import build_spec, resolve_local_repo
from casm_dagster.run.templates import load_template
from casm_dagster.stages.forecast import as_model_task, planning_router, route_for_forecast
from casm_dagster.stores.db import engine_for, model_calls_table
from economics.test_routing_policy import NOW, SYNTHETIC, _calls, _task


def _insert(instance: dg.DagsterInstance, rows: list[dict]) -> None:
    engine = engine_for(instance_db_url(instance))
    defaults = {
        "task_id": "t", "stage": "plan", "repo": "acme/app", "template_id": "repo-auditor", "profile": "code_mid",
        "attempt": 1, "retries": 0, "cache_read_tokens": 0,
        "cache_write_tokens": 0, "reasoning_tokens": 0, "route_reason": "strategy:cost_aware_quality_floor",
        "quality": 1.0, "priced_by_default": False, "price_registry": "2026-11-23",
    }  # fmt: skip
    with engine.begin() as conn:
        conn.execute(sa.insert(model_calls_table), [{**defaults, **r} for r in rows])


def _optimize(instance: dg.DagsterInstance, as_of: str, state_dir: Path, **config) -> dg.ExecuteInProcessResult:
    """What diurnal_optimization_job runs: every economics asset and check, in-process."""
    return dg.materialize(
        [*economics.ECONOMICS_ASSETS, *economics.ECONOMICS_CHECKS],
        instance=instance,
        resources={"casm": CasmResource(state_dir=str(state_dir)), "github": GitHubResource()},
        run_config={"ops": {"routing_policy": {"config": {"as_of": as_of}}, **config}},
        raise_on_error=False,
    )


@pytest.mark.slow
def test_daily_job_retunes_routing_for_the_next_run(
    tmp_path: Path, demo_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    env = isolated_env(home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("CASM_STATE_DIR", str(tmp_path / "state"))
    with dg.DagsterInstance.from_config(str(home)) as instance:  # as a context: Dagster's own scoping
        _closed_loop(tmp_path, demo_repo, env, instance, monkeypatch)


def _closed_loop(tmp_path: Path, demo_repo: Path, env: dict, instance: dg.DagsterInstance, monkeypatch) -> None:
    rows = _calls(SYNTHETIC).to_dict(orient="records")
    _insert(instance, rows)

    result = _optimize(instance, NOW.isoformat(), tmp_path / "state")
    assert result.success
    (events,) = [result.asset_materializations_for_node("call_events")]
    meta = events[0].metadata
    assert meta["dagster/row_count"].value == len(rows)
    assert Decimal(str(meta["total_cost_usd"].value)) == sum(Decimal(r["cost_usd"]) for r in rows)
    policy_meta = result.asset_materializations_for_node("routing_policy")[0].metadata
    assert "anthropic/claude-sonnet-4-5" in policy_meta["choices"].value
    changes = policy_meta["changes"].value
    assert "| fix " in changes and "| anthropic/claude-sonnet-4-5 " in changes
    assert "gpt-4.1-mini" in policy_meta["evidence"].value
    assert policy_meta["dagster/row_count"].value == 4  # (task type, model) pairs measured

    policy = latest_routing_policy(instance)
    assert policy["version"] == policy_meta["version"].value
    assert policy["choices"]["fix"]["model"] == "claude-sonnet-4-5"

    # The next run records the policy and routes by it (keys make the providers available).
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-" + "x" * 24)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-" + "x" * 24)
    template = load_template("repo-auditor")
    info = resolve_local_repo(str(demo_repo))

    def spec_with(view):
        return build_spec(template, str(demo_repo), info, tmp_path / "state", tmp_path / "art", routing_policy=view)

    before, after = spec_with(None), spec_with(routing_view(policy))
    assert after.models.routing_policy["version"] == policy["version"]
    fix, review = _task("fix", "code_mid"), _task("review", "reasoning_low")
    rates = CostRates(Decimal(0), Decimal(0), Decimal(0))

    def routed(spec, task):
        router = planning_router(spec)
        return router.route(as_model_task(task)).selected.model, price([task], route_for_forecast(router), 0, rates)

    (fix_before, fix_cost_before), (fix_after, fix_cost_after) = routed(before, fix), routed(after, fix)
    assert (fix_before, fix_after) == ("gpt-4.1-mini", "claude-sonnet-4-5")
    assert fix_cost_after.llm_p50 > fix_cost_before.llm_p50
    (_, review_cost_before), (review_after, review_cost_after) = routed(before, review), routed(after, review)
    assert review_after == "gpt-4.1-mini" and review_cost_after.llm_p50 < review_cost_before.llm_p50

    # The next day with too little new evidence: the choices are kept, a new version recorded.
    again = _optimize(instance, NOW.replace(day=NOW.day + 1).isoformat(), tmp_path / "state")
    assert again.success
    kept = latest_routing_policy(instance)
    assert kept["previous_version"] == policy["version"] and kept["choices"]["fix"]["why"].startswith("kept")

    # casm explain --decision: why fix changed, with the evidence (from the previous policy's change).
    work = tmp_path / "work"
    work.mkdir()
    proc = run_casm(["explain", "--decision", "fix"], work, env)
    assert proc.returncode == 0, proc.stderr
    assert f"routing policy {kept['version']}" in proc.stdout
    assert "unchanged: anthropic/claude-sonnet-4-5" in proc.stdout and "kept" in proc.stdout


def test_explain_decision_before_any_policy(tmp_path: Path) -> None:
    from casm_dagster.economics.policy_view import explain_decision
    from casm_dagster.economics.routing_policy import compute

    assert "no routing policy yet" in explain_decision(None, "fix")
    policy = compute(_calls(SYNTHETIC), NOW, lambda p, m: True)
    text = explain_decision(policy, "fix")
    assert "changed: catalog default → anthropic/claude-sonnet-4-5" in text
    assert "avoid:   openai/gpt-4.1-mini" in text and "drift: invalid_output" in text


def test_routing_decisions_name_the_policy_and_stay_schema_valid(tmp_path: Path, demo_repo: Path) -> None:
    import json

    import jsonschema

    from casm_dagster.cost.proof import routing_document
    from casm_dagster.economics.routing_policy import compute

    policy = routing_view(compute(_calls(SYNTHETIC), NOW, lambda p, m: True))
    template = load_template("repo-auditor")
    spec = build_spec(
        template, str(demo_repo), resolve_local_repo(str(demo_repo)), tmp_path / "s", tmp_path / "a",
        routing_policy=policy,
    )  # fmt: skip
    spec.run_dir.mkdir(parents=True)
    document = routing_document(spec, "2026-11-24T04:00:00Z")
    assert document["routing_strategy"]["version"].endswith(f"+policy.{policy['version']}")
    assert f"routing policy {policy['version']}" in document["summary"]["notes"]
    assert "fix → anthropic/claude-sonnet-4-5" in document["summary"]["notes"]
    schema_path = Path(__file__).resolve().parents[2] / "casm_dagster" / "schemas" / "routing_decisions.schema.json"
    jsonschema.validate(document, json.loads(schema_path.read_text()))
