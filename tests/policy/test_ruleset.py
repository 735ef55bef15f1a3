"""Rulesets load strictly with precise messages; path globs have one whole-path semantics."""

from __future__ import annotations

import copy
import hashlib
import random
import re
import string
from pathlib import Path

import pytest
import yaml
from policy_support import KEY, new_file_diff

from casm_dagster.errors import CasmError, ConfigError
from casm_dagster.policy.diff import parse_diff
from casm_dagster.policy.engine import PolicyEngine
from casm_dagster.policy.globs import GlobError, GlobSet, glob_to_regex
from casm_dagster.policy.keyed_hash import KeyedHasher
from casm_dagster.policy.ruleset import bundled_rules_dir, load_ruleset
from casm_dagster.policy.sources import PatchOnly

BUNDLED = bundled_rules_dir() / "default.devtools.yaml"

# The spec's draft ruleset (version "0.1"), trimmed; /work/shared may not exist in CI.
SPEC_V01 = """\
# Default policy ruleset v0.1 (devtools), as specified for CASM.
version: "0.1"
ruleset: default.devtools

risk_thresholds:
  warn: 0.40
  gate: 0.65
  block: 0.85

path_sensitivity:
  high: ["/auth/", "/oauth/", "/security/", ".github/workflows/", "Dockerfile", "/*.tf", "/.env*"]
  medium: ["package.json", "pnpm-lock.yaml", "package-lock.json", "/scripts/", "**/*.sh"]

diff_heuristics:
  secret_like_patterns:
    weight: 0.30
    patterns:
      - 'AKIA[0-9A-Z]{16}'
      - '-----BEGIN (RSA|EC|OPENSSH) KEY'
      - 'xox[baprs]-'
      - 'ghp_[A-Za-z0-9]{36,}'
  command_exec_additions:
    weight: 0.25
    patterns: ['child_process\\.exec', 'execSync\\(', 'eval\\(']
  dependency_risk:
    weight: 0.20
    files: ["package.json", "pnpm-lock.yaml", "package-lock.json"]
    signals: ["adds_new_dependency: true", "updates_dependency_major: true"]

gating:
  require_hitl_if:
    - "risk_score >= risk_thresholds.gate"
    - "touches_any(path_sensitivity.high)"
    - "touches_dependency_files: true"
  block_if:
    - "risk_score >= risk_thresholds.block"
    - "secret_like_detected: true"

actions:
  on_gate: ["stop_before_apply", "emit_hitl_request"]
  on_block: ["stop_immediately", "emit_security_alert"]
"""


def bundled_data() -> dict:
    return yaml.safe_load(BUNDLED.read_text(encoding="utf-8"))


def write(tmp_path: Path, data_or_text, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    text = data_or_text if isinstance(data_or_text, str) else yaml.safe_dump(data_or_text, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, data_or_text) -> str:
    path = write(tmp_path, data_or_text)
    with pytest.raises(ConfigError) as info:
        load_ruleset(str(path))
    message = str(info.value)
    assert message.startswith(str(path.resolve()) + ": ")  # the file is named first
    return message


# ---------------------------------------------------------------- loading


def test_bundled_ruleset_loads():
    ruleset = load_ruleset("default.devtools")
    assert ruleset.id == "default.devtools"
    assert ruleset.source == "bundled"
    assert ruleset.path == BUNDLED
    assert ruleset.sha256 == hashlib.sha256(BUNDLED.read_bytes()).hexdigest()
    assert ruleset.model.version == "0.2"
    thresholds = ruleset.model.risk_thresholds
    assert (thresholds.warn, thresholds.gate, thresholds.block) == (0.40, 0.65, 0.85)
    assert ruleset.high_paths().match(".github/workflows/ci.yml") == ".github/workflows/**"
    assert ruleset.dependency_files().match("svc/go.mod") == "**/go.mod"


def test_user_ruleset_path_is_an_override(tmp_path):
    data = bundled_data()
    data["ruleset"] = "team.strict"
    path = write(tmp_path, data, "team.yaml")
    ruleset = load_ruleset(str(path))
    assert (ruleset.id, ruleset.source, ruleset.path) == ("team.strict", "override", path.resolve())
    assert ruleset.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ruleset.sha256 != load_ruleset("default.devtools").sha256

    assert load_ruleset(str(path), source="template").source == "template"
    relative = load_ruleset("team.yaml", source="template", base_dir=tmp_path)
    assert (relative.path, relative.source) == (path.resolve(), "template")


def test_ruleset_hash_covers_every_byte(tmp_path):
    text = BUNDLED.read_text(encoding="utf-8")
    a = load_ruleset(str(write(tmp_path, text, "a.yaml")))
    b = load_ruleset(str(write(tmp_path, text + "# a trailing comment\n", "b.yaml")))
    assert a.sha256 == load_ruleset("default.devtools").sha256
    assert b.sha256 != a.sha256


def test_unknown_ruleset_reference(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown ruleset 'nope': not a bundled id \(default\.devtools\)"):
        load_ruleset("nope")
    with pytest.raises(ConfigError, match="cannot read ruleset"):
        load_ruleset(str(tmp_path / "missing.yaml"))


def test_override_ruleset_changes_decisions(tmp_path):
    rng = random.Random("override")
    secret = "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36))
    diff = parse_diff(new_file_diff("src/app.py", [f'TOKEN = "{secret}"']))
    bundled = PolicyEngine(load_ruleset("default.devtools"), KeyedHasher(KEY))
    assert bundled.evaluate(diff, PatchOnly()).status == "block"

    data = bundled_data()
    data["secret_allowlist"] = [re.escape(secret)]
    relaxed = PolicyEngine(load_ruleset(str(write(tmp_path, data))), KeyedHasher(KEY))
    assert "SECRET_LIKE" not in relaxed.evaluate(diff, PatchOnly()).reason_codes


# ---------------------------------------------------------------- strict errors


def test_unknown_key(tmp_path):
    data = bundled_data()
    data["risk_thresholds"]["critical"] = 0.95
    assert load_error(tmp_path, data).endswith("invalid ruleset: risk_thresholds.critical: unknown key")

    data = bundled_data()
    data["diff_heuristics"]["secret_like"]["patterns"][0]["severity"] = "high"
    assert "diff_heuristics.secret_like.patterns.0.severity: unknown key" in load_error(tmp_path, data)


def test_missing_key(tmp_path):
    data = bundled_data()
    del data["risk_thresholds"]["gate"]
    assert load_error(tmp_path, data).endswith("invalid ruleset: risk_thresholds.gate: required key is missing")

    data = bundled_data()
    del data["gating"]
    assert "gating: required key is missing" in load_error(tmp_path, data)


def test_bad_regex(tmp_path):
    data = bundled_data()
    data["diff_heuristics"]["command_execution"]["patterns"][2]["regex"] = r"(?:eval|exec\s*\("
    message = load_error(tmp_path, data)
    assert "diff_heuristics.command_execution.patterns.2.regex: invalid regular expression" in message
    assert "missing ), unterminated subpattern" in message


def test_duplicate_pattern_id(tmp_path):
    data = bundled_data()
    patterns = data["diff_heuristics"]["unsafe_deserialization"]["patterns"]
    patterns[1]["id"] = patterns[0]["id"]
    message = load_error(tmp_path, data)
    assert "diff_heuristics.unsafe_deserialization.patterns: duplicate pattern id 'py-yaml-load'" in message


def test_thresholds_out_of_order(tmp_path):
    data = bundled_data()
    data["risk_thresholds"] = {"warn": 0.4, "gate": 0.9, "block": 0.85}
    message = load_error(tmp_path, data)
    assert "risk_thresholds: thresholds must satisfy warn <= gate <= block, got 0.4/0.9/0.85" in message


def test_threshold_out_of_range(tmp_path):
    data = bundled_data()
    data["risk_thresholds"]["block"] = 1.5
    assert "risk_thresholds.block: Input should be less than or equal to 1" in load_error(tmp_path, data)


def test_unknown_gating_condition(tmp_path):
    data = bundled_data()
    data["gating"]["require_hitl_if"].append("touches_any(path_sensitivity.high)")
    message = load_error(tmp_path, data)
    assert "gating.require_hitl_if.7: Input should be 'risk_score_at_least_gate'" in message

    data = bundled_data()
    data["gating"]["block_if"] = ["secret_like_detected: true"]
    assert "gating.block_if.0: Input should be" in load_error(tmp_path, data)


@pytest.mark.parametrize(
    ("section", "pattern", "expected"),
    [
        (("path_sensitivity", "high"), "/auth/**", "must not start with '/'"),
        (("path_sensitivity", "medium"), "scripts/", "a trailing '/' is ambiguous"),
        (("dependencies", "files"), "a**b", "'**' must be a whole path segment"),
        (("path_sensitivity", "high"), "../secrets/**", "'.' and '..' segments are not allowed"),
        (("path_sensitivity", "high"), "src/[z-a].py", "invalid pattern: bad character range z-a"),
    ],
)
def test_bad_path_globs(tmp_path, section, pattern, expected):
    data = bundled_data()
    entries = data[section[0]][section[1]]
    entries[1] = pattern
    message = load_error(tmp_path, data)
    assert f"invalid ruleset: {section[0]}.{section[1]}: entry 1 {pattern!r}: " in message
    assert expected in message


def test_not_yaml(tmp_path):
    message = load_error(tmp_path, 'version: "0.2"\nruleset: [default.devtools\nrisk_thresholds: {warn: 0.4}\n')
    assert re.search(r": not valid YAML \(line \d+, column \d+\): ", message)
    assert load_error(tmp_path, "- just\n- a list\n").endswith("expected a mapping at the top level")


def test_duplicate_yaml_key(tmp_path):
    text = BUNDLED.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    gate_line = next(i for i, line in enumerate(lines) if line.startswith("  gate: "))
    lines.insert(gate_line + 1, "  gate: 0.70\n")
    message = load_error(tmp_path, "".join(lines))
    assert f"not valid YAML (line {gate_line + 2}, column 3): found duplicate key 'gate'" in message


def test_non_utf8_ruleset(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(BUNDLED.read_bytes().replace(b'description: "', b'description: "caf\xe9 '))
    with pytest.raises(ConfigError, match="a ruleset must be UTF-8 text"):
        load_ruleset(str(path))


def test_bad_secret_allowlist_regex_names_its_entry(tmp_path):
    data = bundled_data()
    data["secret_allowlist"] = ["^ok$", "(unclosed"]
    message = load_error(tmp_path, data)
    assert "invalid regular expression '(unclosed'" in message
    # the key path should point at the offending entry, as it does for every other list
    assert "secret_allowlist.1" in message


def test_spec_v01_ruleset_is_refused_with_a_hint(tmp_path):
    message = load_error(tmp_path, SPEC_V01)
    assert "version 0.1 ruleset" in message
    assert 'CASM reads version "0.2"' in message
    assert "'**/auth/**'" in message  # says what to change
    assert issubclass(ConfigError, CasmError)


def test_version_other_than_02_is_refused(tmp_path):
    data = bundled_data()
    data["version"] = "0.3"
    assert "version: Input should be '0.2'" in load_error(tmp_path, data)


def test_strict_types(tmp_path):
    data = copy.deepcopy(bundled_data())
    data["path_sensitivity"]["weight"] = "0.45"
    assert "path_sensitivity.weight: Input should be a valid number" in load_error(tmp_path, data)


# ---------------------------------------------------------------- glob semantics


def matches(pattern: str, path: str) -> bool:
    return re.match(glob_to_regex(pattern), path) is not None


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("**/auth/**", "auth/x.py", True),
        ("**/auth/**", "a/b/auth/c/d.py", True),
        ("**/auth/**", "author/x.py", False),
        ("**/auth/**", "src/oauth/x.py", False),
        ("**/auth/**", "src/auth", False),
        (".github/workflows/**", ".github/workflows/ci.yml", True),
        (".github/workflows/**", ".github/workflows/nested/ci.yml", True),
        (".github/workflows/**", "x/.github/workflows/ci.yml", False),
        (".github/workflows/**", ".github/workflows-old/ci.yml", False),
        ("**/*.tf", "main.tf", True),
        ("**/*.tf", "infra/x/main.tf", True),
        ("**/*.tf", "main.tfvars", False),
        ("**/*.tf", "main.tf.bak", False),
        ("**/Dockerfile", "Dockerfile", True),
        ("**/Dockerfile", "svc/Dockerfile", True),
        ("**/Dockerfile", "Dockerfile.dev", False),
        ("**/Dockerfile", "svc/MyDockerfile", False),
        ("**/Dockerfile", "dockerfile", False),  # case-sensitive
        ("src/*.py", "src/app.py", True),
        ("src/*.py", "src/a/app.py", False),
        ("src/*.py", "lib/src/app.py", False),  # whole path, never a substring
        ("package.json", "web/package.json", False),
        ("package.json", "package.json", True),
        ("file?.txt", "file1.txt", True),
        ("file?.txt", "file10.txt", False),
        ("file?.txt", "file/.txt", False),
        ("[abc].py", "b.py", True),
        ("[!abc].py", "d.py", True),
        ("[!abc].py", "a.py", False),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("**", "any/thing/at/all.txt", True),
        ("a+b(c).py", "a+b(c).py", True),  # regex metacharacters are literal
        ("a+b(c).py", "aab(c)xpy", False),
    ],
)
def test_glob_semantics(pattern, path, expected):
    assert matches(pattern, path) is expected


def test_character_class_stays_within_one_segment():
    # '*' and '?' never match '/', and neither should a (negated) character class
    assert not matches("a?b", "a/b")
    assert not matches("a*b", "a/b")
    assert not matches("a[!x]b", "a/b")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("/auth/**", "must not start with '/'"),
        ("auth/", "a trailing '/' is ambiguous"),
        ("a**b", "'**' must be a whole path segment"),
        ("src/**.py", "'**' must be a whole path segment"),
        ("a/../b", "'.' and '..' segments are not allowed"),
        ("./a", "'.' and '..' segments are not allowed"),
        ("", "empty pattern"),
        ("[abc", "unclosed '['"),
        ("a[]b", "empty character class"),
    ],
)
def test_glob_rejections(pattern, message):
    with pytest.raises(GlobError, match=re.escape(message)):
        glob_to_regex(pattern)


def test_a_reversed_range_is_a_glob_error_not_a_crash():
    """It translates, and fails only when compiled: found at load time, never mid-run."""
    with pytest.raises(GlobError, match="bad character range z-a"):
        GlobSet(["src/[z-a].py"])


def test_globset_reports_the_first_matching_pattern():
    globs = GlobSet(["**/*.py", "src/**", "**/app.py"])
    assert globs.match("src/app.py") == "**/*.py"
    assert globs.match("src/app.js") == "src/**"
    assert globs.match("README.md") is None
