"""The JSON schemas shipped in the package are the specification's, byte for byte."""

from __future__ import annotations

import pytest
from helpers import ROOT

PACKAGE = ROOT / "casm_dagster" / "schemas"
SPEC = ROOT.parent / "shared" / "spec" / "schemas"


@pytest.mark.parametrize("name", ["policy_decisions", "routing_decisions", "cost_forecast"])
def test_packaged_schema_matches_the_spec(name: str) -> None:
    spec = SPEC / f"{name}.schema.json"
    if not spec.exists():
        pytest.skip(f"the specification is not beside this checkout ({spec})")
    assert (PACKAGE / f"{name}.schema.json").read_bytes() == spec.read_bytes()
