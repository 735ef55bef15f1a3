"""The sticky comment: PR-controlled text stays inert, noise control, GitHub's size limit."""

from __future__ import annotations

from casm_dagster.contracts.findings import Finding
from casm_dagster.github import markers
from casm_dagster.policy.document import HitlInfo
from casm_dagster.prsentinel.comment import CommentData, carried_findings, render
from casm_dagster.prsentinel.policy import PrPolicy
from casm_dagster.prsentinel.scope import Scope


def _finding(i: int, severity: str = "medium", file: str = "a.py", message: str = "m") -> Finding:
    return Finding(
        id=f"f{i}", analyser="ruff", rule="F401", file=file, line=i, severity=severity, message=message,
        auto_fixable=True,
    )  # fmt: skip


def _data(findings: list[Finding], scope: Scope, **extra) -> CommentData:
    policy = PrPolicy("pass", 0.1, [], "low risk", "", [], "d" * 64, HitlInfo())
    base = dict(
        run_id="R1", head="c" * 40, start="b" * 40, policy=policy, findings=findings, carried_ids=set(), scope=scope,
        changed=len(scope.reviewed) + len(scope.not_reviewed), severity_threshold="low", max_findings=5,
        forecast_p50_usd=0.01, forecast_p90_usd=0.02, model_mode="offline", settings_note="settings: defaults",
    )  # fmt: skip
    base.update(extra)
    return CommentData(**base)


def test_pr_controlled_text_cannot_forge_approval_links_or_mentions() -> None:
    evil_path = "vendor/x`\n\n**✅ Approved** by `octo` [click](https://evil) @acme/security <!-- y.js"
    evil = _finding(1, message="TODO <!-- hide the rest --> [x](https://evil) @everyone | col")
    comment = render(_data([evil], Scope(["a.py"], {evil_path: "generated or vendored"})))
    marker, body = comment.split("\n", 1)  # the marker is an HTML comment: never rendered
    assert "-->" not in marker[:-3] and "--!>" not in marker
    assert "[click](" not in body and "[x](" not in body
    assert "@acme" not in body.replace("\\@acme", "") and "@everyone" not in body.replace("\\@everyone", "")
    assert "<!--" not in body  # only CASM's own marker opens an HTML comment
    assert "\n\n**✅ Approved**" not in body
    assert markers.read(comment, "pr-sentinel")["head"] == "c" * 40


def test_noise_control_folds_nitpicks_and_counts_the_rest() -> None:
    findings = [_finding(i, "high") for i in range(3)] + [_finding(10 + i, "low") for i in range(6)]
    findings += [_finding(30, "info")]
    body = render(_data(findings, Scope(["a.py"], {})))
    assert "<summary>2 nitpicks (low/info)</summary>" in body  # 5 shown: 3 high + 2 low
    assert "4 more not shown (max_findings: 5)" in body
    assert "1 below the severity threshold" in body  # info < low


def test_huge_prs_stay_under_githubs_comment_limit_and_keep_the_footer() -> None:
    skipped = {f"vendor/pkg{i:04d}/module_with_a_long_name.py": "generated or vendored" for i in range(1500)}
    findings = [_finding(i, message="x" * 250) for i in range(400)]
    body = render(_data(findings, Scope(["a.py"], skipped), max_findings=100))
    assert len(body) < 65_536
    assert "and 1460 more" in body and "run `R1`" in body
    state = markers.read(body, "pr-sentinel")
    assert 0 < len(state["findings"]) < 400 and state["covered"] == ["a.py"]
    assert [f.id for f in carried_findings(state, ["a.py"])][:2] == ["f0", "f1"]


def test_a_reversed_glob_range_in_casm_yaml_is_a_malformed_file_not_a_crash() -> None:
    from casm_dagster.prsentinel.settings import RepoSettings, parse_settings

    settings, problem = parse_settings(b"ignore:\n  - 'src/[z-a].py'\n")
    assert settings == RepoSettings() and problem is not None and "bad character range" in problem
