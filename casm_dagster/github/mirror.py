"""The local bare mirror a GitHub-mode run audits: fetched with the token, pushed back with it.

The token travels as an ``http.<origin>.extraHeader`` in ``GIT_CONFIG_*`` environment
variables — never in argv (visible in ``ps``), never in a remote URL or ``.git/config``
(it would outlive the run), and never in an error message. Only http(s) clone URLs are
accepted: a hostile API answer cannot make git run ``ext::`` or read ``file://``.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from casm_dagster.errors import RepoError
from casm_dagster.safety import gitops


def mirror_path(state_dir: Path, partition_key: str) -> Path:
    return state_dir / "github" / f"{partition_key}.git"


def auth_env(clone_url: str, token: str) -> dict[str, str]:
    parts = urlsplit(clone_url)
    if parts.scheme not in ("https", "http") or not parts.netloc or "@" in parts.netloc:
        raise RepoError(f"refusing clone URL {clone_url!r}: only http(s) URLs without credentials are fetched")
    origin = f"{parts.scheme}://{parts.netloc}/"
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {
        "GIT_ALLOW_PROTOCOL": "http:https",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"http.{origin}.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
    }


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One git writer per mirror at a time (the sensor's runs and the CLI may overlap)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f"{path.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch(path: Path, clone_url: str, token: str, refs: dict[str, str]) -> dict[str, str]:
    """Fetch ``{remote ref: local ref}`` into the mirror (created on first use); returns
    ``{remote ref: commit}``."""
    env = auth_env(clone_url, token)
    with _locked(path):
        if not (path / "HEAD").exists():
            path.mkdir(parents=True, exist_ok=True)
            gitops.git(path, "init", "--quiet", "--bare")
        specs = [f"+{remote}:{local}" for remote, local in refs.items()]
        gitops.git(path, "fetch", "--quiet", "--no-tags", clone_url, *specs, env=env, secrets=(token,))
        return {remote: gitops.git_text(path, "rev-parse", f"{local}^{{commit}}") for remote, local in refs.items()}


def push(path: Path, clone_url: str, token: str, branch: str, commit: str) -> None:
    """Point ``branch`` on GitHub at ``commit``. CASM's branches are its own (named after the
    run), so a rerun may move it: forced."""
    if not branch.startswith("casm/"):
        raise RepoError(f"refusing to push {branch!r}: CASM only pushes its own casm/ branches")
    env = auth_env(clone_url, token)
    with _locked(path):
        gitops.git(
            path,
            "push",
            "--quiet",
            "--no-verify",
            clone_url,
            f"+{commit}:refs/heads/{branch}",
            env=env,
            secrets=(token,),
        )


def show_file(path: Path, commit: str, name: str) -> bytes | None:
    """A file's content at ``commit`` (None when absent)."""
    probe = gitops.git(path, "cat-file", "-e", f"{commit}:{name}", check=False)
    if probe.returncode != 0:
        return None
    return gitops.git(path, "show", f"{commit}:{name}").stdout
