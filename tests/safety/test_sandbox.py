"""casm_dagster.safety.sandbox: allowlisted argv only, scrubbed env, timeouts, network isolation."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from casm_dagster.errors import SandboxError
from casm_dagster.safety.redact import REDACTED
from casm_dagster.safety.sandbox import Sandbox, network_isolation_prefix, scrubbed_env


def _py(code: str, *args: str) -> str:
    """An allowlistable command string running ``code`` under ``python -c``."""
    return shlex.join(["python", "-c", code, *args])


def _run(command: str, cwd: Path, *, allow_network: bool = True, timeout_s: int = 10):
    return Sandbox([command], allow_network=allow_network, timeout_s=timeout_s).run(command, cwd)


# --- allowlist -----------------------------------------------------------------------------


def test_command_not_in_allowlist_is_refused_before_anything_runs(tmp_path: Path) -> None:
    box = Sandbox(["python -m pytest -q"], allow_network=True, timeout_s=5)
    marker = tmp_path / "ran"
    command = _py(f"open({str(marker)!r}, 'w').write('x')")
    with pytest.raises(SandboxError) as info:
        box.run(command, tmp_path)
    assert str(info.value) == f"command not allowlisted by the template: {command!r}"
    assert not marker.exists()


@pytest.mark.parametrize("near_miss", ["python -m pytest -q ", "python -m pytest", "python  -m pytest -q"])
def test_allowlist_match_is_exact(near_miss: str) -> None:
    box = Sandbox(["python -m pytest -q"], allow_network=True, timeout_s=5)
    with pytest.raises(SandboxError, match="not allowlisted"):
        box.argv(near_miss)


def test_allowlisted_command_is_split_into_argv() -> None:
    box = Sandbox(["npm run lint", "python -c 'a b'"], allow_network=True, timeout_s=5)
    assert box.argv("npm run lint") == ["npm", "run", "lint"]
    assert box.argv("python -c 'a b'") == ["python", "-c", "a b"]


def test_unsplittable_allowlisted_command_is_a_sandbox_error() -> None:
    box = Sandbox(['python -c "unterminated'], allow_network=True, timeout_s=5)
    with pytest.raises(SandboxError, match="cannot be split"):
        box.argv('python -c "unterminated')


def test_runs_without_a_shell_metacharacters_stay_literal(tmp_path: Path) -> None:
    command = (
        'python -c "import sys, json; print(json.dumps(sys.argv[1:]))" '
        "'$(touch pwned)' 'a; touch pwned2' '$HOME' '`id`' '*' '|'"
    )
    result = _run(command, tmp_path)
    assert result.status == "passed", result.output_tail
    assert result.exit_code == 0
    assert json.loads(result.output_tail) == ["$(touch pwned)", "a; touch pwned2", "$HOME", "`id`", "*", "|"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing created: no shell ran


def test_python_means_the_casm_interpreter(tmp_path: Path) -> None:
    result = _run(_py("import sys; print(sys.executable)"), tmp_path)
    assert result.output_tail.strip() == sys.executable


def test_exit_code_and_failed_status(tmp_path: Path) -> None:
    result = _run(_py("import sys; print('bye'); sys.exit(3)"), tmp_path)
    assert (result.status, result.exit_code) == ("failed", 3)
    assert result.output_tail == "bye\n"
    assert result.command == _py("import sys; print('bye'); sys.exit(3)")


def test_runs_in_the_given_cwd_with_stderr_merged(tmp_path: Path) -> None:
    result = _run(_py("import os, sys; print(os.getcwd(), flush=True); sys.stderr.write('on-stderr\\n')"), tmp_path)
    assert result.output_tail.splitlines() == [str(tmp_path), "on-stderr"]


# --- environment ---------------------------------------------------------------------------


def test_env_is_scrubbed_and_home_is_a_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    github = "ghp_" + "A1b2C3d4" * 5  # a real-looking token
    openai = "sk-proj-" + "Zz9" * 10
    monkeypatch.setenv("GITHUB_TOKEN", github)
    monkeypatch.setenv("OPENAI_API_KEY", openai)
    monkeypatch.setenv("CASM_TEST_PLAIN", "plain-value")
    # Values are hex-encoded by the child so that output redaction cannot hide a leak.
    command = _py("import os, json; print(json.dumps({k: v.encode().hex() for k, v in os.environ.items()}))")
    result = _run(command, tmp_path)
    assert result.status == "passed", result.output_tail
    env = {k: bytes.fromhex(v).decode() for k, v in json.loads(result.output_tail).items()}
    assert "GITHUB_TOKEN" not in env
    assert "OPENAI_API_KEY" not in env
    assert "CASM_TEST_PLAIN" not in env  # only an allowlist of variables passes through
    assert github not in env.values() and openai not in env.values()
    assert not any(github in v or openai in v for v in env.values())
    assert set(env) <= {"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "HOME", "TMPDIR",
                        "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED", "NO_COLOR", "PWD"}  # fmt: skip
    home = Path(env["HOME"])
    assert home.name.startswith("casm-home-")
    assert home != Path.home()
    assert env["TMPDIR"] == env["HOME"]
    assert not home.exists()  # removed after the run
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["PYTHONHASHSEED"] == "0"


def test_scrubbed_env_directly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG")
    monkeypatch.setenv("LANG", "C.UTF-8")
    env = scrubbed_env(tmp_path)
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert env["LANG"] == "C.UTF-8"
    assert env["HOME"] == str(tmp_path)


def test_output_containing_a_secret_env_value_is_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", "s3cr3t-value-123456")
    # The child never sees the variable; it prints the value itself (as a leaky tool would).
    command = _py("print('value=' + 's3cr3t-' + 'value-123456' + ' done'); print('ghp_' + 'x' * 36)")
    result = _run(command, tmp_path)
    assert result.status == "passed"
    assert "s3cr3t-value-123456" not in result.output_tail
    assert "ghp_" not in result.output_tail
    assert result.output_tail == f"value={REDACTED} done\n{REDACTED}\n"


def test_output_tail_is_truncated_to_the_end(tmp_path: Path) -> None:
    result = _run(_py("print('a' * 10000 + 'END')"), tmp_path)
    assert len(result.output_tail) == 4000
    assert result.output_tail.endswith("aEND\n")


# --- unavailable ---------------------------------------------------------------------------


def test_missing_executable_is_unavailable(tmp_path: Path) -> None:
    command = "casm-no-such-tool-xyz --version"
    result = Sandbox([command], allow_network=False, timeout_s=5).run(command, tmp_path)
    assert result.status == "unavailable"
    assert result.exit_code is None
    assert result.duration_s == 0.0
    assert result.output_tail == "'casm-no-such-tool-xyz' is not installed"
    assert result.network == "not_requested"


# --- timeout -------------------------------------------------------------------------------

CHILD = """
import subprocess, sys, time
grandchild = subprocess.Popen(
    [sys.executable, "-c",
     "import sys, time\\nwhile True:\\n    open(sys.argv[1], 'a').write('.')\\n    time.sleep(0.05)",
     sys.argv[1]],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
print("grandchild", grandchild.pid, flush=True)
time.sleep(30)
"""


@pytest.mark.parametrize("allow_network", [True, False])
def test_timeout_kills_the_whole_process_group(tmp_path: Path, allow_network: bool) -> None:
    (tmp_path / "child.py").write_text(CHILD, encoding="utf-8")
    heartbeat = tmp_path / "heartbeat"
    command = shlex.join(["python", "child.py", str(heartbeat)])
    started = time.monotonic()
    result = Sandbox([command], allow_network=allow_network, timeout_s=1).run(command, tmp_path)
    elapsed = time.monotonic() - started
    assert result.status == "timed_out"
    assert result.exit_code is None
    assert 1.0 <= result.duration_s < 3.0
    assert elapsed < 3.0  # killed after ~1s, not after the child's 30s
    assert result.output_tail.endswith("[casm: killed after 1s timeout]")
    # The grandchild is gone: its heartbeat stops. (The pid it printed is the sandbox's PID
    # namespace's, meaningless on the host, so the heartbeat is what tells.)
    time.sleep(0.2)
    size = heartbeat.stat().st_size if heartbeat.exists() else 0
    time.sleep(0.3)  # six heartbeat periods: a live grandchild would have written
    assert (heartbeat.stat().st_size if heartbeat.exists() else 0) == size


# --- network -------------------------------------------------------------------------------

CONNECT = _py("import socket; socket.create_connection(('127.0.0.1', 5432), timeout=1).close(); print('connected')")


def test_network_isolation_is_available_here() -> None:
    prefix, detail = network_isolation_prefix()
    assert prefix is not None, detail
    assert "--net" in prefix
    assert subprocess.run(["unshare", "--net", "--", "true"]).returncode == 0


def test_network_denied_when_not_allowed(tmp_path: Path) -> None:
    result = _run(CONNECT, tmp_path, allow_network=False)
    assert result.network == "enforced"
    assert "no network" in result.network_detail
    assert result.status == "failed"
    assert result.exit_code == 1
    assert "connected" not in result.output_tail
    # bubblewrap's namespace has a loopback of its own, with nothing listening on it.
    assert "Connection refused" in result.output_tail or "Network is unreachable" in result.output_tail


def test_network_reachable_when_allowed(tmp_path: Path) -> None:
    result = _run(CONNECT, tmp_path, allow_network=True)
    assert result.network == "not_requested"
    assert result.network_detail == "the template allows network access"
    assert (result.status, result.exit_code) == ("passed", 0), result.output_tail
    assert result.output_tail == "connected\n"


# --- repo-relative executables -----------------------------------------------------------------
# The validator lets `./check.sh` / `scripts/check.sh` apply when the repo holds the file, and
# Popen runs a relative argv[0] relative to ``cwd`` (the repo). The sandbox must therefore look
# the executable up relative to the repo, not relative to CASM's own working directory.

SCRIPT = "#!/bin/sh\necho from-the-repo\n"


def _script(where: Path, name: str) -> None:
    path = where / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SCRIPT, encoding="utf-8")
    path.chmod(0o755)


@pytest.mark.parametrize("command", ["./check.sh", "scripts/check.sh"])
def test_repo_relative_executable_runs_in_the_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    repo = tmp_path / "repo"
    _script(repo, command)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # CASM's own cwd does not hold the script
    result = Sandbox([command], allow_network=True, timeout_s=5).run(command, repo)
    assert (result.status, result.exit_code) == ("passed", 0), result.output_tail
    assert result.output_tail == "from-the-repo\n"


def test_relative_executable_only_in_casm_cwd_is_unavailable_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    elsewhere = tmp_path / "elsewhere"
    _script(elsewhere, "check.sh")
    monkeypatch.chdir(elsewhere)  # the script exists here, not in the repo
    result = Sandbox(["./check.sh"], allow_network=True, timeout_s=5).run("./check.sh", repo)
    assert result.status == "unavailable"
    assert result.exit_code is None
