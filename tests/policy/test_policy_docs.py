"""docs/policy.md stays in step with the code: every reason code and gating condition."""

from __future__ import annotations

import typing

from helpers import ROOT

from casm_dagster.policy.engine import REASONS
from casm_dagster.policy.ruleset import BlockCondition, GateCondition, load_ruleset

DOC = (ROOT / "docs" / "policy.md").read_text(encoding="utf-8")


def test_every_reason_code_is_documented() -> None:
    missing = [code for code in REASONS if f"`{code}`" not in DOC]
    assert not missing, f"reason codes missing from docs/policy.md: {missing}"


def test_every_gating_condition_is_documented() -> None:
    for condition in [*typing.get_args(GateCondition), *typing.get_args(BlockCondition)]:
        assert condition in DOC, condition


def test_the_bundled_ruleset_gates_on_every_condition_it_documents() -> None:
    gating = load_ruleset("default.devtools").model.gating
    assert set(gating.require_hitl_if) == set(typing.get_args(GateCondition))
    assert set(gating.block_if) == set(typing.get_args(BlockCondition))
