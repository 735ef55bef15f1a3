"""The bad-input corpus: every case is one `casm run` that must end in exactly one line on
stderr (``casm: error: …`` naming the problem), exit 2, nothing on stdout and nothing
written — no state dir, no Dagster instance files, no branch, no change to the repo."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import ROOT, git, isolated_env, make_repo, run_casm

MANIFEST = (ROOT / "templates" / "repo-auditor" / "manifest.yaml").read_text()
RULESET = (ROOT / "rules" / "default.devtools.yaml").read_text()
PRICES = (ROOT / "casm_dagster" / "cost" / "prices.yaml").read_text()
REPORT = 'report_md: ".casm/artifacts/report.md"'
BOMB = "\n".join(
    ["b0: &a0 [" + ", ".join(['"lol"'] * 9) + "]"]
    + [f"b{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
)
POSTGRES = "storage:\n  postgres:\n    postgres_db:\n{extra}      username: postgres\n      db_name: test\n"


@dataclass
class Case:
    expected: str
    manifest: str | None = None  # the template, when not the bundled repo-auditor
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    dagster_yaml: str | None = None
    files: dict[str, str | bytes] = field(default_factory=dict)  # written beside the manifest
    repo_setup: Callable[[Path], None] | None = None
    default_home: bool = False  # DAGSTER_HOME unset: CASM would make ./.casm/dagster_home


def _branch(name: str) -> Callable[[Path], None]:
    return lambda repo: git(repo, "branch", name)


CASES = {
    # manifests
    "yaml alias bomb": Case("an alias bomb", manifest=BOMB + "\n" + MANIFEST),
    "50k-deep nesting": Case("nested more than 64 levels", manifest=MANIFEST + "x: " + "[" * 50_000 + "]" * 50_000),
    "5 MB manifest": Case("too large for a config file", manifest=MANIFEST + "#" + "x" * 5_000_000 + "\n"),
    "not UTF-8": Case("template manifest", manifest=MANIFEST.replace("Swarm", "Sw\udcffarm")),
    "duplicate key": Case("duplicate key", manifest=MANIFEST + "template:\n  id: again\n"),
    "report_md is '.'": Case("report_md: the path names no file", manifest=MANIFEST.replace(REPORT, 'report_md: "."')),
    "report_md is the journal": Case(
        "'events.jsonl' is a file the run itself writes", manifest=MANIFEST.replace(REPORT, 'report_md: "events.jsonl"')
    ),
    "two artifacts, one name": Case(
        "are both named 'out.md'",
        manifest=MANIFEST.replace(REPORT, 'report_md: "a/out.md"').replace(
            'cost_report_md: ".casm/artifacts/cost_report.md"', 'cost_report_md: "b/out.md"'
        ),
    ),
    "missing ruleset file": Case(
        "cannot read ruleset", manifest=MANIFEST.replace("ruleset: default.devtools", "ruleset: ./nope.yaml")
    ),
    "malformed ruleset": Case(
        "rules.yaml: not valid YAML",
        manifest=MANIFEST.replace("ruleset: default.devtools", "ruleset: ./rules.yaml"),
        files={"rules.yaml": RULESET + "\n  - [unclosed\n"},
    ),
    "reversed glob range": Case(
        "[z-a]",
        args=["--ruleset", "{dir}/rules.yaml"],
        files={"rules.yaml": RULESET.replace('- "**/auth/**"', '- "[z-a]"', 1)},
    ),
    # flags
    "budget nan": Case("--budget-usd nan: expected a finite amount", args=["--budget-usd", "nan"]),
    "budget inf": Case("--budget-usd inf: expected a finite amount", args=["--budget-usd", "inf"]),
    "budget negative": Case("--budget-usd -1.0: expected a finite amount", args=["--budget-usd", "-1"]),
    "price .inf": Case(
        "finite", args=["--prices", "{dir}/prices.yaml"], files={"prices.yaml": PRICES.replace("0.15", ".inf", 1)}
    ),
    "missing prices file": Case("--prices", args=["--prices", "{dir}/nope.yaml"]),
    "unknown routing": Case("Invalid value for '--routing': 'fastest' is not one of", args=["--routing", "fastest"]),
    "unknown template": Case("unknown template 'nope'", manifest=None, args=["--template", "nope"]),
    # environment and instance
    "state dir is a file": Case("is not a directory", env={"CASM_STATE_DIR": "{dir}/afile"}, files={"afile": "x"}),
    "relative DAGSTER_HOME": Case("DAGSTER_HOME must be an absolute path", env={"DAGSTER_HOME": "rel/home"}),
    "malformed dagster.yaml": Case("dagster.yaml): not valid YAML", dagster_yaml="run_storage: [\n"),
    "unset DAGSTER_PG_* variable": Case(
        "environment variable CASM_TEST_UNSET_PG_HOST is not set",
        dagster_yaml=POSTGRES.format(extra="      hostname: {env: CASM_TEST_UNSET_PG_HOST}\n"),
    ),
    "postgres URL without a driver": Case(
        "set `scheme: postgresql+psycopg2`", dagster_yaml=POSTGRES.format(extra="      hostname: 127.0.0.1\n")
    ),
    "unreachable PostgreSQL": Case(
        'PostgreSQL: connection to server at "127.0.0.1", port 1 failed',
        dagster_yaml=POSTGRES.format(
            extra="      scheme: postgresql+psycopg2\n      hostname: 127.0.0.1\n      port: 1\n"
        ),
    ),
    # the target repo
    "branch named casm": Case("has a branch named 'casm'", repo_setup=_branch("casm")),
    "branch named casm/<template>": Case(
        "has a branch named 'casm/repo-auditor'", repo_setup=_branch("casm/repo-auditor")
    ),
    "repo does not exist": Case("does not exist", args=["--repo", "{dir}/nowhere"]),
    "bad flag, default DAGSTER_HOME": Case("--budget-usd nan", args=["--budget-usd", "nan"], default_home=True),
    "bad manifest, default DAGSTER_HOME": Case(
        "report_md: the path names no file", manifest=MANIFEST.replace(REPORT, 'report_md: "."'), default_home=True
    ),
}


def _fill(value: str, where: Path) -> str:
    return value.replace("{dir}", str(where))


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path: Path, case: Case) -> None:
    repo = make_repo(tmp_path / "repo", {"pkg/mod.py": "import os\n", "tests/test_mod.py": "def test_x():\n    pass\n"})
    if case.repo_setup:
        case.repo_setup(repo)
    refs_before = git(repo, "for-each-ref")
    inputs, work, state = tmp_path / "inputs", tmp_path / "work", tmp_path / "state"
    inputs.mkdir()
    work.mkdir()
    for name, content in case.files.items():
        (inputs / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    template = "repo-auditor"
    if case.manifest is not None:
        (inputs / "manifest.yaml").write_bytes(case.manifest.encode("utf-8", "surrogateescape"))
        template = str(inputs / "manifest.yaml")
    env = isolated_env(tmp_path / "dagster_home") | {"CASM_STATE_DIR": str(state)}
    if case.dagster_yaml is not None:
        (tmp_path / "dagster_home" / "dagster.yaml").write_text(case.dagster_yaml)
    env |= {k: _fill(v, inputs) for k, v in case.env.items()}
    if case.default_home:
        del env["DAGSTER_HOME"]
    instance_before = sorted(p.name for p in (tmp_path / "dagster_home").iterdir())
    args = ["run", "--template", template, "--repo", str(repo), *[_fill(a, inputs) for a in case.args]]

    proc = run_casm(args, work, env, timeout=120)

    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("casm: error: "), proc.stderr[-3000:]
    assert case.expected in lines[0] and len(lines[0]) < 1000
    assert proc.stdout == ""
    assert sorted(p.name for p in (tmp_path / "dagster_home").iterdir()) == instance_before
    assert not state.exists() or state.is_file()
    assert list(work.iterdir()) == []  # no .casm/ (state, dagster_home, artifacts) in the cwd
    assert git(repo, "for-each-ref") == refs_before and git(repo, "status", "--porcelain") == ""
