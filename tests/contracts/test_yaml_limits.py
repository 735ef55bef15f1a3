"""Hostile YAML in any CASM config (manifest, ruleset, `.casm.yaml`, price registry) is one
clear error, fast, never a RecursionError, a hang or gigabytes of alias expansion."""

from __future__ import annotations

import pytest

from casm_dagster.contracts.yaml12 import MAX_YAML_CHARS, YamlLimitError, load_yaml
from casm_dagster.prsentinel.settings import RepoSettings, parse_settings

BOMB = "\n".join(
    ["b0: &a0 [" + ", ".join(['"lol"'] * 9) + "]"]
    + [f"b{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (BOMB, "an alias bomb"),
        ("x: " + "[" * 50_000 + "]" * 50_000, "nested more than 64 levels"),
        ("x: " + "{a: " * 100 + "1" + "}" * 100, "nested more than 64 levels"),
        ("x: &a [*a]", "refers to a node that contains it"),
        ("#" * (MAX_YAML_CHARS + 1), "more than a config file may hold"),
    ],
    ids=["alias bomb", "50k brackets", "100 mappings", "self-referential alias", "too long"],
)
def test_hostile_yaml_is_refused(text: str, problem: str) -> None:
    with pytest.raises(YamlLimitError, match=problem):
        load_yaml(text)


def test_aliases_and_nesting_within_bounds_still_load() -> None:
    assert load_yaml("base: &b {x: 1}\nother: *b\n") == {"base": {"x": 1}, "other": {"x": 1}}
    assert load_yaml("x: " + "[" * 60 + "]" * 60) is not None


def test_pr_sentinel_keeps_its_defaults_on_a_hostile_casm_yaml() -> None:
    """`.casm.yaml` is the PR author's to write: a bad one is a note, the review goes on."""
    for raw in (b"ignore: " + b"[" * 50_000 + b"]" * 50_000, BOMB.encode()):
        settings, problem = parse_settings(raw)
        assert settings == RepoSettings() and problem is not None and ".casm.yaml" in problem
