"""A hostile test suite inside the allowlisted ``python -m pytest -q``: each test is one
escape attempt that must fail from inside CASM's sandbox (bubblewrap). The suite passes
only if every attempt failed, so these tests fail if the isolation regresses."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from helpers import git, make_repo

from casm_dagster.errors import SandboxError
from casm_dagster.run.workspace import scratch_checkout
from casm_dagster.safety import sandbox
from casm_dagster.safety.sandbox import Sandbox

pytestmark = pytest.mark.skipif(sandbox.bwrap_probe()[0] is None, reason=sandbox.bwrap_probe()[1])

HOSTILE = """
import ctypes, json, os, socket, subprocess, sys
from pathlib import Path

FACTS = json.loads(Path("facts.json").read_text())


def test_runs_as_nobody_without_capabilities():
    assert os.getuid() == 65534 and os.getgid() == 65534
    caps = [l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("CapEff")]
    assert caps == ["CapEff:\\t0000000000000000"]


def test_cannot_read_casm_environ():
    assert not Path(f"/proc/{FACTS['casm_pid']}/environ").exists()
    assert FACTS["secret"] not in Path("/proc/self/environ").read_bytes().decode("utf-8", "replace")
    others = [p for p in os.listdir("/proc") if p.isdigit()]
    assert len(others) < 10  # a PID namespace of its own: only this test's processes


def test_cannot_reach_the_users_repo_through_git():
    gitdir = Path(Path(".git").read_text().split(":", 1)[1].strip())
    assert FACTS["repo"] not in (gitdir / "config").read_text()  # a clone without a remote
    assert not Path(FACTS["repo"]).exists()
    assert subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True).returncode == 0  # readable


def test_cannot_write_the_scratch_git_dir():
    gitdir = Path(Path(".git").read_text().split(":", 1)[1].strip())
    for target in (gitdir / "hooks" / "post-checkout", gitdir / "config", gitdir / "refs" / "heads" / "evil"):
        try:
            target.write_text("x")
        except OSError:
            continue
        raise AssertionError(f"wrote {target}")
    assert subprocess.run(["git", "tag", "evil"], capture_output=True).returncode != 0


def test_cannot_write_outside_the_tree():
    # (Paths the binds need, like the tree's parent, exist only on the sandbox's private
    # /tmp; the host side is checked after the run.)
    for target in (FACTS["repo"], FACTS["state"], "/usr/local", "/etc", "/"):
        try:
            Path(target, "PWNED").write_text("x")
        except OSError:
            continue
        raise AssertionError(f"wrote into {target}")


def test_cannot_read_the_host_home_state_dir_or_sockets():
    for path in (FACTS["ssh"], FACTS["state"], FACTS["db"], "/var/run/postgresql", "/run/postgresql"):
        assert not Path(path).exists(), path


def test_cannot_reach_the_network_or_the_parents_namespace():
    try:
        socket.create_connection(("127.0.0.1", FACTS["port"]), timeout=3).close()
    except OSError:
        pass
    else:
        raise AssertionError("reached the host's listener")
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        fd = os.open(f"/proc/{FACTS['casm_pid']}/ns/net", os.O_RDONLY)
    except OSError:
        return
    assert libc.setns(fd, 0x40000000) != 0  # CLONE_NEWNET


def test_leaves_a_daemon_behind():
    # Detached, in a new session, holding stdout open: must die with the sandbox.
    subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(300)  # {FACTS['marker']}"],
                     start_new_session=True, stdout=sys.stdout, stderr=sys.stderr)
"""


@pytest.fixture
def hostile(tmp_path: Path):
    """The hostile repo (in a scratch clone, as CASM checks it out), the facts its
    tests look for, and a listener on 127.0.0.1 they must not reach."""
    state = tmp_path / "state"
    (state / "dagster_home").mkdir(parents=True)
    (state / "dagster_home" / "storage.db").write_text("instance")
    repo = make_repo(tmp_path / "user-repo", {"tests/test_escape.py": HOSTILE})
    checkout = scratch_checkout(repo, git(repo, "rev-parse", "HEAD"))
    tree = checkout.__enter__()
    listener = socket.create_server(("127.0.0.1", 0))
    marker = f"casm-daemon-{uuid.uuid4().hex}"
    facts = {
        "casm_pid": os.getpid(),
        "secret": "CASM-SECRET-" + uuid.uuid4().hex,
        "repo": str(repo),
        "state": str(state),
        "db": str(state / "dagster_home" / "storage.db"),
        "ssh": str(Path.home() / ".ssh"),
        "port": listener.getsockname()[1],
        "marker": marker,
    }
    (tree / "facts.json").write_text(__import__("json").dumps(facts))
    os.environ["CASM_TEST_SECRET"] = facts["secret"]
    try:
        yield tree, facts
    finally:
        os.environ.pop("CASM_TEST_SECRET", None)
        listener.close()
        checkout.__exit__(None, None, None)


def _host_processes_with(marker: str, grace_s: float = 5.0) -> list[int]:
    """Host processes whose command line holds ``marker``, after giving the kernel
    ``grace_s`` to finish killing a dead namespace's processes."""
    deadline = time.monotonic() + grace_s
    while True:
        found = _scan(marker)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _scan(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


def test_every_escape_attempt_fails_inside_the_sandbox(hostile) -> None:
    tree, facts = hostile
    box = Sandbox(["python -m pytest -q"], allow_network=False, timeout_s=120)
    started = time.monotonic()
    result = box.run("python -m pytest -q", tree)
    wall = time.monotonic() - started
    assert result.tests is not None, result.output_tail
    failed = {t: o for t, o in result.tests.items() if o != "passed"}
    assert failed == {}, result.output_tail
    assert len(result.tests) == 8
    assert result.network == "enforced" and "bubblewrap" in result.network_detail
    # The daemon held stdout open and slept 300 s: the sandbox ended it with the run.
    assert wall < 60, wall
    assert _host_processes_with(facts["marker"]) == []
    assert not (Path(facts["repo"]) / "PWNED").exists()
    assert not list(Path(facts["repo"]).parent.glob("PWNED")) and not list(tree.parent.rglob("PWNED"))


def test_a_timeout_kills_the_whole_tree_at_once(tmp_path: Path) -> None:
    marker = f"casm-sleeper-{uuid.uuid4().hex}"
    repo = make_repo(tmp_path / "repo", {
        "hang.py": "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)  # {marker}'], "
        "start_new_session=True)\ntime.sleep(300)\n",
    })  # fmt: skip
    box = Sandbox(["python hang.py"], allow_network=False, timeout_s=3)
    started = time.monotonic()
    result = box.run("python hang.py", repo)
    assert result.status == "timed_out"
    assert time.monotonic() - started < 20
    time.sleep(0.5)
    assert _host_processes_with(marker) == []


def test_without_bubblewrap_no_target_code_runs_unless_the_operator_opts_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo", {"ok.py": "print('ok')\n"})
    monkeypatch.setattr(sandbox, "bwrap_probe", lambda: (None, "bubblewrap (bwrap) is not installed"))
    monkeypatch.delenv(sandbox.SANDBOX_ENV, raising=False)
    box = Sandbox(["python ok.py"], allow_network=False, timeout_s=30)
    with pytest.raises(SandboxError, match="runs no target-repo code without its sandbox"):
        box.run("python ok.py", repo)
    monkeypatch.setenv(sandbox.SANDBOX_ENV, "unshare")
    result = box.run("python ok.py", repo)
    assert result.status == "passed"
    assert "the operator chose the weaker CASM_SANDBOX=unshare" in result.network_detail
    monkeypatch.setenv(sandbox.SANDBOX_ENV, "bogus")
    with pytest.raises(SandboxError, match="expected bwrap, unshare or none"):
        box.run("python ok.py", repo)


def test_bwrap_argv_exposes_only_the_tree_home_system_and_interpreters(tmp_path: Path) -> None:
    argv = sandbox.bwrap_prefix("bwrap", tmp_path / "tree", tmp_path / "home", ["/opt/py", "/opt/py/lib"], False)
    binds = [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == "--bind"]
    assert binds == [(str(tmp_path / "home"), str(tmp_path / "home")), (str(tmp_path / "tree"), str(tmp_path / "tree"))]
    assert "--share-net" not in argv and "--unshare-all" in argv and argv[-1] == "--"
    assert ["--cap-drop", "ALL"] == argv[argv.index("--cap-drop") : argv.index("--cap-drop") + 2]
    assert shutil.which("bwrap") is None or subprocess.run(["bwrap", "--version"], capture_output=True).returncode == 0


DRIVER = """
import json, os, sys
from pathlib import Path
from casm_dagster.contracts.environment import Environment
from casm_dagster.run.workspace import scratch_checkout
from casm_dagster.safety.sandbox import Sandbox

repo, env_dir, facts = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
facts["casm_pid"] = os.getpid()
head = os.popen(f"git -C {repo} rev-parse HEAD").read().strip()
env = Environment(kind="python", status="ready", detail="", path=str(env_dir), python=str(env_dir / "bin" / "python"))
with scratch_checkout(repo, head) as tree:
    (tree / "facts.json").write_text(json.dumps(facts))
    result = Sandbox(["python -m pytest -q"], False, 120, environment=env).run("python -m pytest -q", tree)
print(json.dumps({"tests": result.tests, "tail": result.output_tail, "network": result.network}))
"""


def _link_tree(source: Path, target: Path) -> None:
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another filesystem
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link, ignore=shutil.ignore_patterns("__pycache__"), symlinks=True)


def test_every_escape_attempt_fails_for_an_unprivileged_user(tmp_path: Path) -> None:
    """The same hostile suite, with CASM itself running as an unprivileged user (uid 65534
    on the host): bubblewrap then builds its namespaces without any privilege."""
    if os.geteuid() != 0:
        pytest.skip("the suite already runs unprivileged: the test above is this one")
    python = shutil.which("python3.11", path="/usr/bin:/usr/local/bin")
    if python is None or os.path.realpath(python).startswith("/root"):
        # CI's Debian image has one: there the unprivileged path must run, not skip.
        why = "no system Python 3.11 an unprivileged user can run"
        pytest.fail(why) if os.environ.get("CI") == "true" else pytest.skip(why)
    import site

    from casm_dagster.environments.build import uv_bin

    # Everything the unprivileged CASM needs, outside root's 0700 temp and home dirs.
    shared = Path(tempfile.mkdtemp(prefix="casm-unpriv-"))
    try:
        os.chmod(shared, 0o755)
        env_dir = shared / "env"
        uv = {**os.environ, "UV_NO_INDEX": "1"}
        subprocess.run([uv_bin(), "venv", "-q", "--python", python, str(env_dir)], check=True, env=uv)
        subprocess.run([uv_bin(), "pip", "install", "-q", "--python", str(env_dir / "bin" / "python"), "pytest"],
                       check=True, env=uv)  # fmt: skip
        repo = make_repo(shared / "user-repo", {"tests/test_escape.py": HOSTILE})
        state = shared / "state"
        (state / "dagster_home").mkdir(parents=True)
        (state / "dagster_home" / "storage.db").write_text("instance")
        subprocess.run(["chown", "-R", f"{sandbox.NOBODY}:{sandbox.NOBODY}", str(shared)], check=True)
        listener = socket.create_server(("127.0.0.1", 0))
        secret = "CASM-SECRET-" + uuid.uuid4().hex
        facts = {
            "secret": secret,
            "repo": str(repo),
            "state": str(state),
            "db": str(state / "dagster_home" / "storage.db"),
            "ssh": "/root/.ssh",
            "port": listener.getsockname()[1],
            "marker": f"casm-daemon-{uuid.uuid4().hex}",
        }
        # The checkout and its venv may sit under a 0700 dir (a `mktemp -d` clone): the
        # unprivileged CASM gets its own copies (hardlinked where the filesystem allows).
        code = shared / "code"
        checkout = Path(__file__).resolve().parents[2]
        for part in ("casm_dagster", "rules", "templates"):  # the source tree's layout (bundled_dir)
            _link_tree(checkout / part, code / part)
        shutil.copy2(checkout / "dagster.yaml", code / "dagster.yaml")
        paths = [code]
        for number, packages in enumerate(site.getsitepackages()):
            paths.append(code / f"site-{number}")
            _link_tree(Path(packages), paths[-1])
        pythonpath = os.pathsep.join(str(p) for p in paths)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(shared), "PYTHONPATH": pythonpath, "CASM_TEST_SECRET": secret,
               "TMPDIR": str(shared)}  # fmt: skip
        as_nobody = ["setpriv", f"--reuid={sandbox.NOBODY}", f"--regid={sandbox.NOBODY}", "--clear-groups"]
        proc = subprocess.run(
            [*as_nobody, python, "-c", DRIVER, str(repo), str(env_dir), json.dumps(facts)],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        listener.close()
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout.splitlines()[-1])
        assert result["tests"] and {t: o for t, o in result["tests"].items() if o != "passed"} == {}, result["tail"]
        assert len(result["tests"]) == 8 and result["network"] == "enforced"
        assert _host_processes_with(facts["marker"]) == []
        assert not list(shared.rglob("PWNED"))
    finally:
        shutil.rmtree(shared, ignore_errors=True)
