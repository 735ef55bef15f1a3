"""The secret benchmark reads gitleaks-style rule files (written here: gitleaks itself is
not shipped) and scores their false and true positives with the real policy engine."""

from __future__ import annotations

import importlib.util
import json
import random
import string
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "secret_false_positives.py"

RULE_FILE = r"""package rules

func Example() *config.Rule {
	r := config.Rule{RuleID: "example"}
	tps := []string{`not a false positive`}
	fps := []string{
		// a comment, with "quotes", `backticks`, commas, and {braces}
		`token = "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"`, // trailing comment
		"escaped \"quote\", a tab\t and \x41",
		`multi` + "part",
		secrets.NewSecret(utils.Hex("32")),
		fmt.Sprintf("%s-%s", a, b),
	}
	r.FPs = append(fps, `appended one`)
	names := map[string]string{"not": "fps"}
	return &r
}

func Files() *config.Rule {
	fps := map[string]string{
		"foo.php": `$config = array(
	secret_key => "placeholder",
);`,
		"bar.yml": "key: value",
	}
	return nil
}
"""


def run(*rules: Path) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--rules", *map(str, rules), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, json.loads(proc.stdout)


def test_reads_every_literal_of_every_fp_list_and_leaves_code_out() -> None:
    spec = importlib.util.spec_from_file_location("secret_false_positives", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    try:
        spec.loader.exec_module(module)
        samples, built = module.listed(RULE_FILE, "example.go")
    finally:
        del sys.modules[spec.name]

    assert [s.value for s in samples] == [
        'token = "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"',
        'escaped "quote", a tab\t and A',
        "multipart",
        "appended one",
        '$config = array(\n\tsecret_key => "placeholder",\n);',
        "key: value",
    ]
    assert built == 3  # NewSecret(...), Sprintf(...), and `fps` itself in append(fps, ...)
    assert samples[0].source == "example.go:6"


def test_a_listed_real_token_is_counted_and_fails_the_bar(tmp_path) -> None:
    (tmp_path / "example.go").write_text(RULE_FILE)
    code, report = run(tmp_path)
    assert (code, report["false_positives"], report["reported_as_secret"]) == (0, 6, 0)

    rng = random.Random(7)
    real = "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36))
    (tmp_path / "more.go").write_text(f'package rules\nvar x = func() {{\n\tfps := []string{{"GH={real}"}}\n}}\n')
    code, report = run(tmp_path)

    assert code == 1 and report["reported_as_secret"] == 1 and report["rate"] == round(1 / 7, 4)
    assert report["by_pattern"] == {"github-token-classic": 1}
    assert report["reported"][0]["value"] == "GH=ghp_" + real[4:9] + "…"  # shortened unless --show

    # Two directories may hold files of the same name: both are read.
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "example.go").write_text('package rules\nvar fps = []string{"another"}\n')
    assert run(tmp_path, tmp_path / "more")[1]["false_positives"] == 8


def test_a_true_positive_taken_for_a_placeholder_is_lost_recall(tmp_path) -> None:
    rng = random.Random(8)
    real = "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36))
    npm = "npm_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36))
    tps = (
        f'\ttps := []string{{`token = "{real}"`, "not a token"}}\n\ttps = utils.GenerateSampleSecrets("npm", "{npm}")\n'
    )
    (tmp_path / "rule.go").write_text(f"package rules\nfunc R() {{\n{tps}}}\n")
    code, report = run(tmp_path)
    assert code == 0 and (report["true_positives"], report["true_positives_in_casm_formats"]) == (3, 2)
    assert report["true_positives_dismissed"] == []

    # A must-report string that reads as a placeholder (an alphabet run) is named.
    sequential = "ghp_" + "abcdefghij" + real[14:]
    (tmp_path / "rule.go").write_text(f'package rules\nfunc R() {{\n\ttps := []string{{"{sequential}"}}\n}}\n')
    code, report = run(tmp_path)
    assert code == 0 and report["true_positives_in_casm_formats"] == 1  # listed, to be read
    (lost,) = report["true_positives_dismissed"]
    assert lost["source"] == "rule.go:3" and "github-token-classic: placeholder text" in lost["why"]
