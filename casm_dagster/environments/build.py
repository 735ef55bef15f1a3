"""Build (or reuse) a repo's test environment, and put the tree under test into it.

Environments live in ``<state dir>/envs/<kind>-<key>/``, content-addressed (``detect.
cache_key``) and reused across runs and repos. A build holds a file lock on its key and
writes a ``.casm-ready`` marker last, so a killed build is rebuilt, never half-used.
Setup is the only phase with network (package registries): uv and npm, and the build
backends they start (the repo's own code), run in the sandbox (``safety.setup_box``) with
a user-mode network that cannot reach the host's loopback, a scrubbed environment (only
index/proxy/certificate settings pass), their own caches beside the environments, and the
template's command timeout; all they can write is the tree, the environment being built
and those caches.
The checks run later in the sandbox without network, against the patched tree installed
editable (``activate``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from casm_dagster.contracts.environment import Environment
from casm_dagster.environments.detect import PythonRecipe, cache_key, node_manager, python_recipe, setup_steps
from casm_dagster.errors import SandboxError
from casm_dagster.prsentinel.settings import SETTINGS_FILE
from casm_dagster.run.journal import utc_now
from casm_dagster.run.leftovers import owned_prefix
from casm_dagster.safety import sandbox, setup_box
from casm_dagster.safety.redact import redact

READY = ".casm-ready"
OUTPUT_TAIL = 1500
# Settings a setup step may need to reach the registries; nothing else of CASM's
# environment (no token, no key) reaches uv, npm or the repo's build backend.
SETUP_PASSTHROUGH = (
    "PATH",
    "LANG",
    "LC_ALL",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_INDEX",
    "UV_FIND_LINKS",
    "UV_NO_INDEX",
    "UV_OFFLINE",
    "UV_INSECURE_HOST",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "npm_config_registry",
)


class SetupFailed(Exception):
    """A setup step failed; the message says which and why (redacted output tail)."""


def uv_bin() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def _caches(cache_root: Path) -> dict[str, str]:
    return {
        "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR") or str(cache_root / "uv-cache"),
        "npm_config_cache": str(cache_root / "npm-cache"),
    }


def _setup_env(cache_root: Path, home: Path) -> dict[str, str]:
    env = {k: os.environ[k] for k in SETUP_PASSTHROUGH if k in os.environ}
    env.update(
        _caches(cache_root),
        HOME=str(home),
        TMPDIR=str(home),
        UV_PYTHON_DOWNLOADS="never",  # the interpreter is CASM's; never fetch another
        UV_NO_PROGRESS="1",
        # The cache and the environment are separate mounts in the sandbox: no hardlinks.
        UV_LINK_MODE="copy",
        npm_config_update_notifier="false",
        NO_COLOR="1",
    )
    return env


def _local_links() -> list[str]:
    """Local wheel directories named in UV_FIND_LINKS: the sandbox must see them."""
    links = os.environ.get("UV_FIND_LINKS", "").replace(",", " ").split()
    return [link for link in links if "://" not in link or link.startswith("file://")]


def _run(
    argv: list[str],
    cwd: Path,
    cache_root: Path,
    timeout_s: int,
    extra: dict[str, str] | None = None,
    writable: tuple[Path, ...] = (),
) -> None:
    """One setup step, in the sandbox with the network: ``cwd`` (the tree, or a Node
    environment) and ``writable`` (the environment being built) plus the package caches
    are all it can write."""
    with tempfile.TemporaryDirectory(prefix=owned_prefix("casm-setup-")) as home:
        env = {**_setup_env(cache_root, Path(home)), **(extra or {})}
        tools = [os.path.dirname(os.path.dirname(os.path.realpath(argv[0])))]  # a Node install outside /usr
        node = shutil.which("node")
        tools += [os.path.dirname(os.path.dirname(os.path.realpath(node)))] if node else []
        writes = [os.path.realpath(p) for p in (*writable, *_caches(cache_root).values())]
        try:
            proc = setup_box.run(argv, cwd, env, Path(home), [*_local_links(), *tools], writes, timeout_s)
        except subprocess.TimeoutExpired:
            raise SetupFailed(f"`{_shown(argv)}` timed out after {timeout_s}s") from None
        except OSError as exc:
            raise SetupFailed(f"`{_shown(argv)}` could not start: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        out = (proc.stderr or proc.stdout).decode("utf-8", "replace").strip()
        raise SetupFailed(f"`{_shown(argv)}` failed (exit {proc.returncode}): {redact(out)[-OUTPUT_TAIL:]}")


def _shown(argv: list[str]) -> str:
    return " ".join(Path(a).name if i == 0 else a for i, a in enumerate(argv))


@contextlib.contextmanager
def locked(path: Path, shared: bool = False) -> Iterator[None]:
    """A lock on ``path`` (a file beside the environment), across processes and threads:
    exclusive, or ``shared`` with other shared holders (never with an exclusive one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare(tree: Path, cache_root: Path, timeout_s: int, allowed: list[str] | None = None) -> Environment:
    """The environment for ``tree``'s checks: reused when its key is cached, else built.
    ``allowed``: the template's command allowlist, which every ``.casm.yaml`` setup step
    must be on."""
    recipe = python_recipe(tree)
    node = node_manager(tree) if recipe is None else None
    if recipe is None and node is None:
        return Environment(kind="none", status="none", detail="no Python or Node manifest: nothing to install")
    kind = "python" if recipe is not None else "node"
    key = cache_key(tree)
    env_dir = cache_root / f"{kind}-{key}"
    started = time.monotonic()
    with locked(cache_root / f"{kind}-{key}.lock"):
        marker = env_dir / READY
        if marker.is_file():
            data = json.loads(marker.read_text(encoding="utf-8"))
            os.utime(marker)  # last use, for gc
            return Environment(**{**data, "cached": True, "seconds": round(time.monotonic() - started, 3)})
        shutil.rmtree(env_dir, ignore_errors=True)  # a build that was killed half-way
        env_dir.mkdir(parents=True)
        steps: list[list[str]] = []
        try:
            if recipe is not None:
                detail = _build_python(tree, env_dir, recipe, cache_root, timeout_s, steps)
            else:
                detail = _build_node(tree, env_dir, node, cache_root, timeout_s, steps)  # type: ignore[arg-type]
            detail += _repo_steps(tree, env_dir, kind, cache_root, timeout_s, allowed or [], steps)
            detail += f"; setup network: {setup_box.network_mode()}"
        except SetupFailed as exc:
            shutil.rmtree(env_dir, ignore_errors=True)
            return Environment(
                kind=kind,
                status="failed",
                detail=f"the environment could not be built: {exc}",
                key=key,
                steps=[_shown(s) for s in steps],
                seconds=round(time.monotonic() - started, 3),
            )
        env = Environment(
            kind=kind,
            status="ready",
            detail=detail,
            key=key,
            path=str(env_dir),
            python=str(env_dir / "bin" / "python") if kind == "python" else None,
            editable=kind == "python" and bool(recipe and recipe.installable),
            steps=[_shown(s) for s in steps],
        )
        marker.write_text(env.model_dump_json(exclude={"cached", "seconds"}), encoding="utf-8")
    return env.model_copy(update={"seconds": round(time.monotonic() - started, 3)})


def _build_python(
    tree: Path, env_dir: Path, recipe: PythonRecipe, cache_root: Path, timeout_s: int, steps: list[list[str]]
) -> str:
    uv = uv_bin()
    # Bytecode is compiled once, here: the checks see the environment read-only, so without
    # it every test run would compile its dependencies again (pluggy's: 0.9 s -> 0.6 s).
    compiled = "--compile-bytecode"
    if recipe.lock:
        argv = [uv, "sync", "--frozen", "--no-install-project", "--python", sys.executable, compiled]
        argv += [a for g in recipe.groups for a in ("--group", g)]
        argv += [a for e in recipe.extras for a in ("--extra", e)]
        steps.append(argv)
        _run(argv, tree, cache_root, timeout_s, {"UV_PROJECT_ENVIRONMENT": str(env_dir)}, (env_dir,))
    else:
        argv = [uv, "venv", "--quiet", "--python", sys.executable, str(env_dir)]
        steps.append(argv)
        _run(argv, tree, cache_root, timeout_s, writable=(env_dir,))
        install = [uv, "pip", "install", compiled, "--python", str(env_dir / "bin" / "python")]
        extras = f"[{','.join(recipe.extras)}]" if recipe.extras else ""
        targets = [f".{extras}"] if recipe.installable else []
        targets += [a for r in recipe.requirements for a in ("-r", r)]
        targets += [a for g in recipe.groups for a in ("--group", f"pyproject.toml:{g}")]
        targets += recipe.packages
        if targets and recipe.pins:  # the lock's versions, as constraints
            constraints = env_dir / "casm-lock-constraints.txt"
            constraints.write_text("\n".join(recipe.pins) + "\n", encoding="utf-8")
            targets += ["-c", str(constraints)]
        if targets:
            steps.append([*install, *targets])
            _run([*install, *targets], tree, cache_root, timeout_s, writable=(env_dir,))
    # pytest is how CASM collects per-test verdicts; a repo that tests with unittest
    # still declares no runner, so the environment gets one (never into the tree).
    if not (env_dir / "bin" / "pytest").exists():
        argv = [uv, "pip", "install", compiled, "--python", str(env_dir / "bin" / "python"), "pytest"]
        steps.append(argv)
        _run(argv, tree, cache_root, timeout_s, writable=(env_dir,))
    return f"Python ({recipe.describe()})"


def _build_node(
    tree: Path, env_dir: Path, node: tuple[str, str | None], cache_root: Path, timeout_s: int, steps: list[list[str]]
) -> str:
    manager, lock = node
    program = shutil.which(manager)
    if program is None:
        raise SetupFailed(f"{manager} is not installed (the repo's lockfile asks for it)")
    for name in ("package.json", *([lock] if lock else []), ".npmrc"):
        if (tree / name).is_file() and not (tree / name).is_symlink():
            shutil.copyfile(tree / name, env_dir / name)
    quiet = ["--ignore-scripts"]  # install scripts are code; the tests run the repo's own
    if manager == "npm":
        argv = [program, "ci" if lock else "install", *quiet, "--no-audit", "--no-fund"]
        if not lock:
            argv.append("--no-package-lock")
    else:
        argv = [program, "install", "--frozen-lockfile", *quiet]
    steps.append(argv)
    _run(argv, env_dir, cache_root, timeout_s)
    how = f"{manager} with {lock}" if lock else f"{manager}, no lockfile: the declared ranges"
    return f"Node ({how}; install scripts not run)"


def _repo_steps(
    tree: Path, env_dir: Path, kind: str, cache_root: Path, timeout_s: int, allowed: list[str], steps: list[list[str]]
) -> str:
    """Run the ``.casm.yaml`` setup steps in the new environment (its ``bin`` first on
    ``PATH``; ``python`` is its interpreter). A step the template does not allowlist, or
    that fails, fails the environment: the repo says its checks need it."""
    wanted, problem = setup_steps(tree)
    if problem:
        raise SetupFailed(problem)
    bin_dir = env_dir / ("bin" if kind == "python" else "node_modules/.bin")
    search = os.pathsep.join([str(bin_dir), os.environ.get("PATH", os.defpath)])
    for command in wanted:
        if command not in allowed:
            raise SetupFailed(f"{SETTINGS_FILE} setup step {command!r} is not allowlisted by the template")
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise SetupFailed(f"{SETTINGS_FILE} setup step {command!r} cannot be split: {exc}") from None
        if kind == "python" and argv[0] in ("python", "python3"):
            program: str | None = str(env_dir / "bin" / "python")
        elif "/" in argv[0]:
            found = (tree / argv[0]).resolve()
            program = str(found) if found.is_relative_to(tree.resolve()) and found.is_file() else None
        else:
            program = shutil.which(argv[0], path=search)
        if program is None:
            raise SetupFailed(f"{SETTINGS_FILE} setup step {command!r}: {argv[0]!r} is not installed")
        steps.append([program, *argv[1:]])
        _run([program, *argv[1:]], tree, cache_root, timeout_s, {"PATH": search}, (env_dir,))
    return f"; {len(wanted)} setup step{'s' if len(wanted) != 1 else ''} from {SETTINGS_FILE}" if wanted else ""


def activate(env: Environment, tree: Path, cache_root: Path, timeout_s: int) -> None:
    """Make ``tree`` the code under test: the project installed editable from it (Python),
    or its ``node_modules`` pointing at the environment's (Node)."""
    if env.status != "ready" or env.path is None:
        return
    if env.kind == "python" and env.editable and env.python:
        argv = [uv_bin(), "pip", "install", "--python", env.python, "--no-deps", "-e", "."]
        _run(argv, tree, cache_root, timeout_s, writable=(Path(env.path),))
    elif env.kind == "node":
        link = tree / "node_modules"
        if not link.exists() and not link.is_symlink():
            with contextlib.suppress(FileExistsError):  # a check beside this one linked it first
                link.symlink_to(Path(env.path) / "node_modules")


@contextlib.contextmanager
def checking(box: sandbox.Sandbox, tree: Path) -> Iterator[None]:
    """Checks on ``tree`` run inside this block: the box's environment (if any) is locked
    and has ``tree`` installed as the code under test. A Node environment is shared: the
    tree only links to it and the checks see it read-only, so a run's linters and its tests
    can use it at once. A Python one is exclusive: activating a tree reinstalls it."""
    env = box.environment
    if env is None or env.path is None or box.env_cache is None:
        yield
        return
    with locked(box.env_cache / f"{Path(env.path).name}.lock", shared=env.kind == "node"):
        try:
            activate(env, tree, box.env_cache, box.timeout_s)
        except SetupFailed as exc:
            raise SandboxError(f"could not install the tree under test into its environment: {exc}") from None
        yield


def collect(cache_root: Path, older_than_days: float, dry_run: bool = False) -> list[tuple[str, int, str]]:
    """Environments unused for ``older_than_days`` (and half-built ones): (path, bytes, last
    use); removed unless ``dry_run``. A locked environment (in use, or being built) stays."""
    if not cache_root.is_dir():
        return []
    cutoff = time.time() - older_than_days * 86_400
    removed = []
    for env_dir in sorted(p for p in cache_root.iterdir() if p.is_dir() and p.name.startswith(("python-", "node-"))):
        marker = env_dir / READY
        used = marker.stat().st_mtime if marker.is_file() else 0.0
        if used > cutoff:
            continue
        lock = cache_root / f"{env_dir.name}.lock"
        with open(lock, "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            size = sum(f.stat().st_size for f in env_dir.rglob("*") if f.is_file() and not f.is_symlink())
            when = utc_now() if not used else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(used))
            removed.append((str(env_dir), size, when if used else "never finished"))
            if not dry_run:
                shutil.rmtree(env_dir, ignore_errors=True)
            fcntl.flock(handle, fcntl.LOCK_UN)
    return removed
