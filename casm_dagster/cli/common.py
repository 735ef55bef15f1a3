"""What every ``casm`` command shares: the state dir, the Dagster instance, exit codes, flags."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from casm_dagster.errors import CasmError, ConfigError
from casm_dagster.run.files import DEFAULT_STATE_DIR, STATE_DIR_ENV, state_dir_from_env

EXIT_RUN_FAILED = 1
# Same codes as `casm policy check`: 3 held for a human, 4 blocked by policy.
# 5: the budget stopped the run before any model call.
RUN_EXIT_CODES = {"succeeded": 0, "awaiting_approval": 3, "blocked": 4, "stopped": 5}


def fail(message: str, code: int = 2) -> None:
    click.echo(f"casm: error: {message}", err=True)
    sys.exit(code)


class CasmGroup(click.Group):
    """Maps ``CasmError`` to a one-line message and its exit code, everywhere; loads each
    command's module only when that command runs (``casm policy check`` as a pre-commit hook
    must not pay for importing Dagster)."""

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands or {}  # name -> "module:attribute"

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy_commands:
            return super().get_command(ctx, cmd_name)
        import importlib

        module, _, attribute = self.lazy_commands[cmd_name].partition(":")
        return getattr(importlib.import_module(module), attribute)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except CasmError as exc:
            fail(str(exc), exc.exit_code)

    def main(self, *args, **kwargs):  # type: ignore[override]
        """A usage error (unknown option, bad choice) is one line too, not click's 4-line block."""
        from click.exceptions import NoArgsIsHelpError

        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except NoArgsIsHelpError as exc:
            click.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else self.name
            fail(f"{' '.join(exc.format_message().split())} (see: {where} --help)", exc.exit_code)
        except click.ClickException as exc:
            fail(" ".join(exc.format_message().split()), exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def state_dir() -> Path:
    path = state_dir_from_env()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{STATE_DIR_ENV}={path} is not a directory: point it at a folder CASM may create")
    return path


def pull_run(run_id: str) -> None:
    """Bring a run's folder to this host's state dir from the host that ran it, when this
    host's instance (an exported ``DAGSTER_HOME``) is on PostgreSQL; otherwise a no-op."""
    from casm_dagster.run.ids import is_ulid

    if not os.environ.get("DAGSTER_HOME") or not is_ulid(run_id):
        return
    from casm_dagster.resources import CasmResource

    store = CasmResource(state_dir=str(state_dir())).run_files(open_instance())
    if store is not None:
        store.pull(run_id, state_dir() / "runs" / run_id)


def open_instance():
    from casm_dagster.resources.instance import ensure_dagster_home, open_dagster_instance

    notice = ensure_dagster_home()
    if notice:
        click.echo(f"casm: {notice}", err=True)
    ignore_own_dir(state_dir(), Path(os.environ["DAGSTER_HOME"]))
    return open_dagster_instance()


def ignore_own_dir(*paths: Path) -> None:
    """``./.casm`` ignores itself (a ``.gitignore`` of ``*``, as ``.pytest_cache`` does) when
    CASM writes there: run from inside the audited repo, it never shows in ``git status``
    nor reaches a commit, so the only thing CASM adds to the repo stays its branch."""
    root = (Path.cwd() / DEFAULT_STATE_DIR).resolve()
    if any(p.resolve() == root or root in p.resolve().parents for p in paths):
        root.mkdir(parents=True, exist_ok=True)
        ignore = root / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# CASM's state, runs and artifacts: never part of the repo\n*\n", encoding="utf-8")


def read_summary(run_dir: Path) -> dict | None:
    """A run's ``run_summary.json`` (its cost summary), or None before the report stage."""
    path = run_dir / "run_summary.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object with the outcome as the last line on stdout."
)
sarif_option = click.option(
    "--sarif",
    "sarif_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    metavar="FILE",
    help="Also write the findings and policy signals as SARIF 2.1.0 (for GitHub code scanning) to FILE.",
)


def check_sarif_path(path: Path | None) -> None:
    """Bad input before any work: the SARIF file's directory must exist."""
    if path is not None and not path.resolve().parent.is_dir():
        raise CasmError(f"--sarif {path}: no such directory {path.resolve().parent}")


reason_option = click.option("--reason", required=True, help="Why (required; logged with the decision).")
