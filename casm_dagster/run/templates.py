"""Template discovery: ``templates/<id>/manifest.yaml`` (bundled in the wheel, or the
source tree's top-level ``templates/``), or a manifest given by path. Each manifest's
``entrypoint.workflow`` names one of the workflows below."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from casm_dagster.contracts.events import STAGES
from casm_dagster.contracts.manifest import TemplateManifest, load_manifest
from casm_dagster.errors import TemplateError

PR_WORKFLOW, NOOP_WORKFLOW, AUDIT_WORKFLOW = "pr_sentinel_v1", "noop_v1", "repo_auditor_v1"
WORKFLOWS: dict[str, tuple[str, ...]] = {
    AUDIT_WORKFLOW: STAGES,
    NOOP_WORKFLOW: ("ingest", "report"),
    # pr-sentinel reviews a PR's diff and comments: nothing is applied or validated.
    PR_WORKFLOW: ("ingest", "forecast", "analyze", "policy", "report", "telemetry"),
}
# The Dagster job each workflow runs as (casm_dagster/jobs): only a real audit materializes
# the audit assets; noop is an op job, pr-sentinel has its own asset.
JOB_OF_WORKFLOW = {AUDIT_WORKFLOW: "audit_job", NOOP_WORKFLOW: "noop_job", PR_WORKFLOW: "pr_sentinel_job"}


def require_job(template_id: str, workflow: str, job: str) -> None:
    """A template launched in another workflow's job (from the UI or a schedule's config)
    fails at once, naming the job it runs as."""
    if JOB_OF_WORKFLOW[workflow] != job:
        raise TemplateError(
            f"template {template_id} (workflow {workflow}) runs as {JOB_OF_WORKFLOW[workflow]}, not {job}"
        )


_PACKAGE = Path(__file__).resolve().parents[1]  # casm_dagster/


def bundled_dir(name: str) -> Path:
    """``templates``/``rules``: inside the installed wheel, else the source tree's top level."""
    inside = _PACKAGE / "_bundled" / name
    return inside if inside.is_dir() else _PACKAGE.parent / name


@dataclass(frozen=True)
class Template:
    manifest: TemplateManifest
    path: Path

    @property
    def id(self) -> str:
        return self.manifest.template.id

    @property
    def stages(self) -> tuple[str, ...]:
        return WORKFLOWS[self.manifest.entrypoint.workflow]

    @property
    def job(self) -> str:
        return JOB_OF_WORKFLOW[self.manifest.entrypoint.workflow]


def _checked(manifest: TemplateManifest, path: Path) -> Template:
    if manifest.entrypoint.workflow not in WORKFLOWS:
        known = ", ".join(sorted(WORKFLOWS))
        raise TemplateError(
            f"{path}: entrypoint.workflow: unknown workflow {manifest.entrypoint.workflow!r} (known: {known})"
        )
    return Template(manifest=manifest, path=path)


def template_ids(root: Path | None = None) -> list[str]:
    base = root or bundled_dir("templates")
    return sorted(p.parent.name for p in base.glob("*/manifest.yaml"))


def load_template(name_or_path: str, root: Path | None = None) -> Template:
    """A template id (``repo-auditor``) or a path to a manifest file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        if not candidate.is_file():
            raise TemplateError(f"template manifest not found: {candidate}")
        path = candidate.resolve()
    else:
        ids = template_ids(root)
        if name_or_path not in ids:
            raise TemplateError(f"unknown template {name_or_path!r} (available: {', '.join(ids) or 'none'})")
        path = (root or bundled_dir("templates")) / name_or_path / "manifest.yaml"
    return _checked(load_manifest(path), path)


def list_templates(root: Path | None = None) -> list[Template]:
    return [load_template(i, root) for i in template_ids(root)]
