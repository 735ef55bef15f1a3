"""``casm policy check``: score a diff with the policy engine (a pre-commit hook or CI step)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from casm_dagster.cli.common import check_sarif_path, sarif_option


@click.group()
def policy() -> None:
    """Score changes with the policy engine (usable as a pre-commit hook or CI step)."""


@policy.command("check")
@click.option("--repo", type=click.Path(path_type=Path), default=None, help="The git repository [default: .]")
@click.option("--base", metavar="REV", help="Scan base...head (from their merge base), e.g. origin/main.")
@click.option("--head", metavar="REV", help="Head of the range [default: HEAD]; needs --base.")
@click.option(
    "--diff",
    "diff_file",
    type=click.File("rb"),
    default=None,
    help="Scan this unified diff instead ('-' reads stdin); --repo/--base give its base side.",
)
@click.option(
    "--ruleset",
    "ruleset_ref",
    default="default.devtools",
    show_default=True,
    metavar="ID|PATH",
    help="A bundled ruleset id or a ruleset file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the policy_decisions.json document instead.")
@click.option(
    "--fail-on",
    type=click.Choice(["gate", "block"]),
    default="gate",
    show_default=True,
    help="The least status that fails (non-zero exit). block: a gate is reported but exits 0 (a pre-commit "
    "hook that stops only secrets and other blocking changes).",
)
@sarif_option
def policy_check(
    repo: Path | None,
    base: str | None,
    head: str | None,
    diff_file,
    ruleset_ref: str,
    as_json: bool,
    fail_on: str,
    sarif_path: Path | None,
) -> None:
    """Score a diff: the staged changes (default), a --base/--head range, or --diff.

    Exit 0 for pass or warn, 3 for gate (needs a human; 0 with --fail-on block), 4 for
    block (e.g. a secret), 2 for bad input. No raw secret or code snippet is ever printed: signals show the
    file, line, pattern id and a keyed hash of the diff hunk. It never starts Dagster
    (a pre-commit hook: well under a second on a typical commit).
    """
    from casm_dagster.policy.check import EXIT_CODES, check, render, resolve_target

    check_sarif_path(sarif_path)
    diff_bytes = diff_file.read() if diff_file is not None else None
    target = resolve_target(repo or Path.cwd(), base, head, diff_bytes, repo_given=repo is not None)
    result, document = check(target, ruleset_ref)
    if sarif_path is not None:
        from casm_dagster.run.sarif import sarif_log, write_sarif

        write_sarif(sarif_path, sarif_log([], document, "casm/policy-check/"))
    if as_json:
        click.echo(json.dumps(document, indent=2, sort_keys=True))
    else:
        click.echo(render(result), nl=False)
    code = EXIT_CODES[result.status]
    sys.exit(0 if fail_on == "block" and result.status == "gate" else code)
