"""Cost and KPI assets from a real run plus synthetic calls: the tables reconcile with the raw
calls to the cent, the merge outcome comes from the repo, the metadata a person reads is
there (totals, previews, charts), and the asset checks fail on corrupted inputs."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
from helpers import git, last_json, run_casm

from casm_dagster.assets import economics
from casm_dagster.economics.kpis import CustomersConfig, load_customers
from casm_dagster.errors import ConfigError
from casm_dagster.resources import CasmResource, GitHubResource
from economics.test_diurnal_dagster import _insert
from economics.test_routing_policy import NOW, SYNTHETIC, _calls

pytestmark = pytest.mark.slow


def _materialize(instance, state_dir: Path, customers: Path | None) -> dg.ExecuteInProcessResult:
    config = {"business_kpis": {"config": {"customers_file": str(customers or ""), "as_of": NOW.isoformat()}}}
    return dg.materialize(
        [*economics.ECONOMICS_ASSETS, *economics.ECONOMICS_CHECKS],
        instance=instance,
        resources={"casm": CasmResource(state_dir=str(state_dir)), "github": GitHubResource()},
        run_config={"ops": {"routing_policy": {"config": {"as_of": NOW.isoformat()}}, **config}},
        raise_on_error=False,
    )


def _meta(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(asset)[0].metadata.items()}


def test_kpis_reconcile_render_and_follow_outcomes(
    tmp_path: Path, demo_repo: Path, casm_env: dict, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = run_casm(["run", "--template", "repo-auditor", "--repo", str(demo_repo), "--json"], workdir, casm_env)
    assert proc.returncode == 0, proc.stderr
    out = last_json(proc.stdout)
    git(demo_repo, "merge", "--quiet", "--no-edit", out["branch"])  # the delivered branch is merged
    monkeypatch.setenv("DAGSTER_HOME", casm_env["DAGSTER_HOME"])
    with dg.DagsterInstance.from_config(casm_env["DAGSTER_HOME"]) as instance:
        _check_kpis(tmp_path, demo_repo, out, instance)


def _check_kpis(tmp_path: Path, demo_repo: Path, out: dict, instance: dg.DagsterInstance) -> None:
    state = Path(out["run_dir"]).parents[1]
    # A run's timestamps are "now"; the synthetic calls sit in the KPI window too.
    rows = _calls(SYNTHETIC).to_dict(orient="records")
    for row in rows:
        row["repo"] = str(demo_repo)
    _insert(instance, rows)
    customers = tmp_path / "customers.yaml"
    customers.write_text(
        "version: 1\n"
        "plans:\n"
        "  sentinel-team: {business_line: sentinel, price_usd_month: 499}\n"
        "  pay-per-run: {business_line: templates, price_per_run_usd: 2.5}\n"
        "customers:\n"
        f"  - {{id: acme, name: Acme, plan: sentinel-team, repos: ['{demo_repo}']}}\n"
        "  - {id: globex, name: Globex, plan: pay-per-run, repos: [globex/app]}\n"
    )
    result = _materialize(instance, state, customers)
    assert result.success
    calls_total = sum(Decimal(r["cost_usd"]) for r in rows)
    events = _meta(result, "call_events")
    assert Decimal(str(events["total_cost_usd"])) == calls_total  # the run's offline calls cost $0
    for table in ("cost_by_run", "cost_by_model", "cost_by_task_type", "cost_by_repo"):
        meta = _meta(result, table)
        assert Decimal(str(meta["total_cost_usd"])) == calls_total, table
        assert meta["dagster/row_count"] > 0 and "|" in meta["preview"]
    assert _meta(result, "cost_by_model")["daily_spend_by_model"].startswith("![daily spend by model](data:image/png")
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks and all(checks.values()), checks

    outcomes = _meta(result, "run_outcomes")
    assert outcomes["outcomes"] == {"merged": 1}
    units = _meta(result, "unit_economics")
    summary = json.loads((Path(out["run_dir"]) / "run_summary.json").read_text())
    outcome_cost = float(summary["totals"]["outcome_cost_usd"])
    assert units["cost_per_pr_merged"] == pytest.approx(outcome_cost)
    assert units["cost_per_issue_found"] == pytest.approx(outcome_cost / out["findings"])

    kpis = _meta(result, "business_kpis")
    assert kpis["dagster/row_count"] == 2 and kpis["mrr_usd"] == 499.0  # globex ran nothing: $0 this month
    assert "sentinel" in kpis["by_business_line"] and "templates" in kpis["by_business_line"]
    assert kpis["margin_per_customer"].startswith("![margin per customer](data:image/png")
    assert "churn_why" in kpis["preview"]


def test_asset_checks_fail_on_corrupted_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with dg.instance_for_test() as instance:
        rows = _calls([("fix", ("openai", "gpt-4.1-mini"), 3, 0)]).to_dict(orient="records")
        rows[1]["cost_usd"] = "-0.5000"  # a refund booked as a call: not a cost
        _insert(instance, rows)
        result = _materialize(instance, tmp_path / "state", None)
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks["call_costs_non_negative"] is False
        assert checks["call_events_unique"] is True


def test_reconciliation_check_catches_a_call_counted_twice() -> None:
    from casm_dagster.assets.economics import _reconcile
    from casm_dagster.economics.kpis import cost_by

    calls = _calls(SYNTHETIC)
    table = cost_by(calls, "model")
    assert _reconcile(table, calls).passed
    doubled = cost_by(__import__("pandas").concat([calls, calls.head(1)]), "model")
    assert not _reconcile(doubled, calls).passed


def test_customers_file_is_validated(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("version: 1\nplans: {p: {business_line: sentinel}}\ncustomers: [{id: a, name: A, plan: gold}]\n")
    with pytest.raises(ConfigError, match="unknown plan 'gold'"):
        load_customers(bad)
    bad.write_text("version: 1\nplans: {p: {business_line: resale}}\ncustomers: []\n")
    with pytest.raises(ConfigError, match="business_line"):
        load_customers(bad)
    assert CustomersConfig(plans={}, customers=[]).customers == []


def test_the_example_customers_file_is_valid() -> None:
    config = load_customers(Path(__file__).resolve().parents[2] / "examples" / "customers.yaml")
    assert {c.id for c in config.customers} == {"acme", "globex", "initech"}
    assert {p.business_line for p in config.plans.values()} == {"templates", "sentinel", "agentforge"}


def test_github_outcomes_come_from_the_pull_request(tmp_path: Path) -> None:
    from github_fake.fake_github import FakeGitHub
    from helpers import make_repo

    from casm_dagster.economics.outcomes import outcome_reader
    from casm_dagster.github.connector import GitHubConnector, GitHubSettings

    source = make_repo(tmp_path / "src", {"a.py": "x = 1\n"})
    for name in ("casm/repo-auditor/main", "casm/other"):
        git(source, "checkout", "-q", "-b", name.replace("/", "-"))
        (source / "a.py").write_text(f"x = '{name}'\n")
        git(source, "commit", "-qam", name)
        git(source, "checkout", "-q", "main")
    with FakeGitHub(token="ghp_" + "o" * 36) as gh:
        gh.create_repo("acme/widgets", source)
        gh.push_branch("acme/widgets", "casm/repo-auditor/main", source, ref="refs/heads/casm-repo-auditor-main")
        gh.push_branch("acme/widgets", "casm/other", source, ref="refs/heads/casm-other")
        merged = gh.open_pr("acme/widgets", "casm/repo-auditor/main")
        closed = gh.open_pr("acme/widgets", "casm/other")
        gh.merge_pr("acme/widgets", merged)
        gh.close_pr("acme/widgets", closed)
        settings = GitHubSettings(token=gh.token, api_url=gh.api_url, write_interval_s=0, backoff_s=0.01, retries=1)
        connector = GitHubConnector(settings)
        outcome_of = outcome_reader(connector, tmp_path / "state")
        assert outcome_of({"repo": "acme/widgets", "branch": "casm/repo-auditor/main"}) == "merged"
        # Someone reverts the merge on main: the next reading says reverted.
        merge_sha = gh.branch_sha("acme/widgets", "main")
        clone = tmp_path / "clone"
        git(tmp_path, "clone", "-q", str(gh.repo_path("acme/widgets")), str(clone))
        git(clone, "-c", "user.name=t", "-c", "user.email=t@t", "revert", "--no-edit", "-m", "1", merge_sha)
        gh.push_branch("acme/widgets", "main", clone)
        assert (
            outcome_reader(connector, tmp_path / "state")({"repo": "acme/widgets", "branch": "casm/repo-auditor/main"})
            == "reverted"
        )
        assert outcome_of({"repo": "acme/widgets", "branch": "casm/other"}) == "closed_unmerged"
        assert outcome_of({"repo": "acme/widgets", "branch": "casm/none"}) == "no_pr"
        assert outcome_reader(None)({"repo": "acme/widgets", "branch": "casm/other"}) == "unknown"
