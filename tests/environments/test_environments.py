"""Per-repo environments: each detection path installs what the repo declares (a dependency
only that path can bring), environments are reused by content, setup has the network and
the checks do not, and a failure is said exactly."""

from __future__ import annotations

import ast
import base64
import hashlib
import http.server
import os
import socket
import threading
import zipfile
from pathlib import Path

import pytest
from helpers import git, host_address, make_repo

from casm_dagster.environments import build
from casm_dagster.environments.detect import python_recipe
from casm_dagster.run.workspace import scratch_checkout
from casm_dagster.safety.sandbox import Sandbox

DEP = "casmdep"
USES_DEP = f"import {DEP}\n\n\ndef test_dep():\n    assert {DEP}.VALUE == 42\n"


def _wheel(where: Path, name: str = DEP, version: str = "1.0") -> Path:
    """A real, minimal wheel (PEP 427): a one-module package, built by hand."""
    where.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"VALUE = 42\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: casm-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    wheel = where / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return wheel


@pytest.fixture
def dep_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """UV_FIND_LINKS: the suite's wheelhouse (pytest, setuptools) plus casmdep."""
    wheels = tmp_path / "wheels"
    _wheel(wheels)
    monkeypatch.setenv("UV_FIND_LINKS", f"{os.environ['UV_FIND_LINKS']},{wheels}")
    return wheels


PROJECT = '[project]\nname = "proj"\nversion = "0"\n'
BUILD = '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
PATHS = {
    "groups": {"pyproject.toml": f'{PROJECT}\n[dependency-groups]\ntests = ["{DEP}"]\n'},
    "extras": {"pyproject.toml": f'{PROJECT}\n[project.optional-dependencies]\ntest = ["{DEP}"]\n\n{BUILD}',
               "proj/__init__.py": ""},
    "requirements": {"requirements-test.txt": f"{DEP}\n", "mod.py": "x = 1\n"},
    "tox": {"tox.ini": f"[tox]\nenv_list = py\n\n[testenv]\ndeps =\n    {DEP}\n    pytest\ncommands = pytest\n",
            "mod.py": "x = 1\n"},
    "setup_cfg": {"setup.cfg": f"[metadata]\nname = proj\n\n[options]\npackages = proj\n\n"
                  f"[options.extras_require]\ntesting =\n    {DEP}\n",
                  "setup.py": "from setuptools import setup\nsetup()\n", "proj/__init__.py": ""},
}  # fmt: skip


@pytest.mark.parametrize("path", sorted(PATHS))
def test_each_detection_path_installs_what_the_repo_declares(tmp_path: Path, dep_links: Path, path: str) -> None:
    repo = make_repo(tmp_path / "repo", {**PATHS[path], "tests/test_dep.py": USES_DEP})
    env = build.prepare(repo, tmp_path / "envs", 300)
    assert env.status == "ready", env.detail
    box = Sandbox(["python -m pytest -q"], allow_network=False, timeout_s=120, environment=env,
                  env_cache=tmp_path / "envs")  # fmt: skip
    with build.checking(box, repo):
        result = box.run("python -m pytest -q", repo)
    assert result.status == "passed", result.output_tail
    assert result.tests == {"tests.test_dep::test_dep": "passed"}
    # Compiled at setup: the checks see the environment read-only and would recompile each run.
    assert list((Path(env.path) / "lib").glob("python3*/site-packages/casmdep/__pycache__/__init__.*.pyc"))


def test_a_uv_lock_is_synced_frozen(tmp_path: Path, dep_links: Path) -> None:
    files = {"pyproject.toml": f'{PROJECT}requires-python = ">=3.10"\n\n[dependency-groups]\ntests = ["{DEP}"]\n',
             "tests/test_dep.py": USES_DEP}  # fmt: skip
    repo = make_repo(tmp_path / "repo", files)
    build._run([build.uv_bin(), "lock", "--python", os.sys.executable], repo, tmp_path / "envs", 300)
    assert "casmdep" in (repo / "uv.lock").read_text()
    recipe = python_recipe(repo)
    assert recipe is not None and recipe.lock and recipe.groups == ["tests"]
    env = build.prepare(repo, tmp_path / "envs", 300)
    assert env.status == "ready", env.detail
    assert any(step.startswith("uv sync --frozen --no-install-project") for step in env.steps)
    assert list((Path(env.path) / "lib").glob("python3*/site-packages/casmdep/__init__.py"))
    assert list((Path(env.path) / "lib").glob("python3*/site-packages/casmdep/__pycache__/__init__.*.pyc"))


def test_environments_are_reused_by_content_and_collected_when_old(tmp_path: Path, dep_links: Path) -> None:
    repo = make_repo(tmp_path / "repo", {**PATHS["groups"], "tests/test_dep.py": USES_DEP})
    first = build.prepare(repo, tmp_path / "envs", 300)
    again = build.prepare(repo, tmp_path / "envs", 300)
    assert not first.cached and again.cached and again.path == first.path
    (repo / "pyproject.toml").write_text(PATHS["groups"]["pyproject.toml"] + "# changed\n")
    changed = build.prepare(repo, tmp_path / "envs", 300)
    assert changed.key != first.key and not changed.cached
    assert build.collect(tmp_path / "envs", older_than_days=1) == []  # both just used
    gone = build.collect(tmp_path / "envs", older_than_days=0, dry_run=True)
    assert {Path(p).name for p, _, _ in gone} == {Path(first.path).name, Path(changed.path).name}
    assert Path(first.path).exists()  # a dry run removes nothing
    build.collect(tmp_path / "envs", older_than_days=0)
    assert not Path(first.path).exists() and not Path(changed.path).exists()


def test_an_environment_that_cannot_be_built_says_exactly_why(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"requirements-test.txt": "casm-missing-dep==9.9\n", "m.py": "x = 1\n"})
    env = build.prepare(repo, tmp_path / "envs", 300)
    assert env.status == "failed" and env.path is None
    assert env.detail.startswith("the environment could not be built: `uv pip install")
    assert "casm-missing-dep" in env.detail
    assert not list((tmp_path / "envs").glob("python-*/"))  # nothing half-built is kept


class _Index(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        return


def test_setup_reaches_the_registry_and_the_tests_reach_nothing(
    tmp_path: Path, dep_links: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A PEP 503 index on 127.0.0.1 serving casmdep: uv fetches it in setup; the repo's
    # test then tries the very same address and must not get through.
    index = tmp_path / "index"
    (index / "simple" / DEP).mkdir(parents=True)
    wheel = next(dep_links.glob("*.whl"))
    (index / "simple" / DEP / wheel.name).write_bytes(wheel.read_bytes())
    (index / "simple" / DEP / "index.html").write_text(f'<a href="{wheel.name}">{wheel.name}</a>\n')
    # The host's own address, not its loopback: setup's network cannot reach the loopback.
    host = host_address()
    server = http.server.ThreadingHTTPServer((host, 0), lambda *a: _Index(*a, directory=str(index)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    monkeypatch.delenv("UV_NO_INDEX")
    monkeypatch.setenv("UV_DEFAULT_INDEX", f"http://{host}:{port}/simple")
    monkeypatch.setenv("UV_FIND_LINKS", os.environ["UV_FIND_LINKS"].split(",")[0])  # casmdep only via the index
    probe = (
        "import socket\n\n\ndef test_no_network():\n    try:\n"
        f"        socket.create_connection(({host!r}, {port}), timeout=3).close()\n"
        "    except OSError:\n        return\n    raise AssertionError('reached the network')\n"
    )
    repo = make_repo(tmp_path / "repo", {**PATHS["requirements"], "tests/test_net.py": probe,
                                         "tests/test_dep.py": USES_DEP})  # fmt: skip
    try:
        env = build.prepare(repo, tmp_path / "envs", 300)
        assert env.status == "ready", env.detail
        with socket.create_connection((host, port), timeout=3):
            pass  # the index is up for anyone with the network
        box = Sandbox(["python -m pytest -q"], allow_network=False, timeout_s=120, environment=env,
                      env_cache=tmp_path / "envs")  # fmt: skip
        with build.checking(box, repo):
            result = box.run("python -m pytest -q", repo)
    finally:
        server.shutdown()
    assert result.network == "enforced"
    assert result.tests == {"tests.test_dep::test_dep": "passed", "tests.test_net::test_no_network": "passed"}


SETUP_PY = """
import os, socket, subprocess
from pathlib import Path
from setuptools import setup

escaped = []
# (Paths under /tmp exist inside only on the sandbox's private /tmp: checked on the host.)
for target in ({outside!r}, "/root", "/etc", "/usr/local"):
    try:
        Path(target, "PWNED").write_text("x")
        escaped.append(target)
    except OSError:
        pass
try:  # the host's loopback (the instance database, Redis live there)
    socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
    escaped.append("loopback")
except OSError:
    pass
# What setuptools-scm and hatch-vcs do: ask git about the checkout.
head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
Path("build-facts.txt").write_text(repr((escaped, head, os.getuid(), os.environ.get("CASM_TEST_SECRET"))))
setup(name="proj", version="0", packages=["proj"])
"""


def test_setup_runs_the_repos_build_code_in_the_sandbox(
    tmp_path: Path, dep_links: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build backend is the repo's own code: it sees its scratch clone's git (read-only,
    for version-from-git builds) and nothing of the host, CASM or the user's repo."""
    outside, state = tmp_path / "outside", tmp_path / "state"
    outside.mkdir()
    state.mkdir()
    monkeypatch.setenv("CASM_TEST_SECRET", "s3cret-value")
    listener = socket.create_server(("127.0.0.1", 0))
    files = {"setup.py": SETUP_PY.format(outside=str(outside), port=listener.getsockname()[1]), "proj/__init__.py": "",
             "pyproject.toml": BUILD, "tests/test_ok.py": "def test_ok():\n    pass\n"}  # fmt: skip
    repo = make_repo(tmp_path / "repo", files)
    head = git(repo, "rev-parse", "HEAD")
    with scratch_checkout(repo, head) as tree:
        env = build.prepare(tree, state / "envs", 300)
        assert env.status == "ready", env.detail
        escaped, seen_head, uid, secret = ast.literal_eval((tree / "build-facts.txt").read_text())
    listener.close()
    assert escaped == [] and not (outside / "PWNED").exists()
    assert "user-mode (slirp4netns), the host's loopback cut off" in env.detail
    assert not [p for p in state.rglob("PWNED")]
    assert seen_head == head
    assert uid == 65534 and secret is None


STEP = (
    "import sysconfig\nfrom pathlib import Path\n\n"
    "Path(sysconfig.get_paths()['purelib'], 'casm_generated.py').write_text('VALUE = 7\\n')\n"
)
USES_STEP = "import casm_generated\n\n\ndef test_generated():\n    assert casm_generated.VALUE == 7\n"


def test_casm_yaml_setup_steps_run_in_the_new_environment_when_allowlisted(tmp_path: Path, dep_links: Path) -> None:
    files = {**PATHS["requirements"], ".casm.yaml": "setup:\n  - python tools/generate.py\n",
             "tools/generate.py": STEP, "tests/test_gen.py": USES_STEP}  # fmt: skip
    repo = make_repo(tmp_path / "repo", files)
    allowed = ["python -m pytest -q", "python tools/generate.py"]
    env = build.prepare(repo, tmp_path / "envs", 300, allowed)
    assert env.status == "ready", env.detail
    assert "1 setup step from .casm.yaml" in env.detail and env.steps[-1].endswith("python tools/generate.py")
    box = Sandbox(allowed, allow_network=False, timeout_s=120, environment=env, env_cache=tmp_path / "envs")
    with build.checking(box, repo):
        result = box.run("python -m pytest -q", repo)
    assert result.tests == {"tests.test_gen::test_generated": "passed"}, result.output_tail


@pytest.mark.parametrize(
    ("casm_yaml", "why"),
    [
        ("setup:\n  - python tools/generate.py\n", "'python tools/generate.py' is not allowlisted by the template"),
        ("setup: [1, 2\n", ".casm.yaml is malformed"),
        ("setup:\n  - python -c 'raise SystemExit(3)'\n", "failed (exit 3)"),
    ],
    ids=["not-allowlisted", "malformed", "failing"],
)
def test_a_setup_step_that_cannot_run_fails_the_environment_saying_why(
    tmp_path: Path, dep_links: Path, casm_yaml: str, why: str
) -> None:
    files = {**PATHS["requirements"], ".casm.yaml": casm_yaml, "tools/generate.py": STEP}
    repo = make_repo(tmp_path / "repo", files)
    env = build.prepare(repo, tmp_path / "envs", 300, ["python -m pytest -q", "python -c 'raise SystemExit(3)'"])
    assert env.status == "failed" and why in env.detail, env.detail
    assert not list((tmp_path / "envs").glob("python-*/"))  # nothing half-built is kept


def test_a_poetry_lock_pins_the_test_group_it_declares(tmp_path: Path, dep_links: Path) -> None:
    """A Poetry project declares its tests' dependencies in a group, not in PEP 621: they
    are installed, at the version poetry.lock pins (1.0, though 2.0 is available too)."""
    _wheel(dep_links, version="2.0")
    pyproject = (
        '[tool.poetry]\nname = "proj"\nversion = "0"\n\n[tool.poetry.dependencies]\npython = "^3.8"\n\n'
        f'[tool.poetry.group.test.dependencies]\n{DEP} = ">=1"\n'
    )
    lock = f'[[package]]\nname = "{DEP}"\nversion = "1.0"\n\n[[package]]\nname = "vcs"\nversion = "1"\n'
    lock += '[package.source]\ntype = "git"\nurl = "https://example.invalid/vcs.git"\n'
    repo = make_repo(
        tmp_path / "repo", {"pyproject.toml": pyproject, "poetry.lock": lock, "tests/test_dep.py": USES_DEP}
    )
    recipe = python_recipe(repo)
    assert recipe is not None and recipe.packages == [DEP] and recipe.pins == [f"{DEP}==1.0"]
    env = build.prepare(repo, tmp_path / "envs", 300)
    assert env.status == "ready", env.detail
    assert "1 version pinned by the lock" in env.detail
    assert list((Path(env.path) / "lib").glob(f"python3*/site-packages/{DEP}-1.0.dist-info"))


@pytest.mark.parametrize(("kind", "together"), [("node", True), ("python", False)])
def test_a_node_environment_is_shared_by_checks_and_a_python_one_is_not(
    tmp_path: Path, kind: str, together: bool
) -> None:
    """A run's JS linters use its Node environment while its tests do (the tree only links
    to it, read-only); a Python environment is reinstalled per tree, so one at a time."""
    from casm_dagster.contracts.environment import Environment

    cache = tmp_path / "envs"
    (cache / f"{kind}-k" / "node_modules").mkdir(parents=True)
    env = Environment(kind=kind, status="ready", detail="", key="k", path=str(cache / f"{kind}-k"))
    box = Sandbox(["pytest"], False, 60, env, cache)
    trees = [tmp_path / "a", tmp_path / "b"]
    for tree in trees:
        tree.mkdir()
    inside, entered, release = threading.Semaphore(0), [], threading.Event()

    def check(tree: Path) -> None:
        with build.checking(box, tree):  # (not editable: the Python one locks, installs nothing)
            entered.append(tree)
            inside.release()
            release.wait(10)

    threads = [threading.Thread(target=check, args=(tree,)) for tree in trees]
    for thread in threads:
        thread.start()
    assert inside.acquire(timeout=10)
    second = inside.acquire(timeout=1)
    release.set()
    for thread in threads:
        thread.join(10)
    assert second is together and len(entered) == 2
    if kind == "node":
        assert all((tree / "node_modules").resolve() == cache / "node-k" / "node_modules" for tree in trees)
