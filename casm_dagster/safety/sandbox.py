"""Run target-repo commands: allowlisted argv only, scrubbed env, timeout, no network.

The command string must appear verbatim in the template's ``allow_commands``; it is split
with shell rules into argv and executed without a shell. A pytest command also gets
``--junitxml`` into the private HOME, a Node one (``npm test``) ``NODE_OPTIONS`` asking
Node's test runner for the same report, for per-test outcomes (``safety.junit``).

``python``/``python3`` mean the repo's own environment's interpreter when one was built
(``environments``; its ``bin`` then leads ``PATH``), else the interpreter CASM runs under.
``environments.build.checking(box, tree)`` makes ``tree`` the code under test (editable
install) and holds the environment's lock while its checks run.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from casm_dagster.contracts.environment import Environment
from casm_dagster.contracts.validation import CheckStatus, Isolation
from casm_dagster.errors import SandboxError
from casm_dagster.run.leftovers import owned_prefix
from casm_dagster.safety import gitops, junit
from casm_dagster.safety.redact import redact

if TYPE_CHECKING:
    from casm_dagster.contracts.run import RunSpec

OUTPUT_TAIL_CHARS = 4000
ENVS_DIR = "envs"  # under the state dir: the repos' cached environments
_PASSTHROUGH_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")


@dataclass(frozen=True)
class CommandResult:
    command: str
    status: CheckStatus
    exit_code: int | None
    duration_s: float
    output_tail: str
    network: Isolation
    network_detail: str
    tests: dict[str, str] | None = None  # per-test outcomes, when the runner reported them


SANDBOX_ENV = "CASM_SANDBOX"  # the operator's choice when bubblewrap cannot run: unshare | none
NOBODY = "65534"
# The read-only view of the system: the standard top-level directories (symlinks on a
# merged-/usr system are recreated as symlinks).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


@functools.cache
def bwrap_probe() -> tuple[str | None, str]:
    """bubblewrap's path, or why it cannot sandbox here."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None, "bubblewrap (bwrap) is not installed"
    true = shutil.which("true") or "/bin/true"
    argv = [bwrap, "--unshare-all", "--die-with-parent", *_system_mounts([]), true]
    probe = subprocess.run(argv, capture_output=True, timeout=10)
    if probe.returncode != 0:
        why = probe.stderr.decode("utf-8", "replace").strip() or f"exit {probe.returncode}"
        return None, f"bwrap cannot create its namespaces here ({why})"
    return bwrap, ""


def sandbox_mode() -> tuple[str, str]:
    """How target-repo code is isolated: ``bwrap``, or — only when the operator says so in
    ``CASM_SANDBOX`` — ``unshare`` (network namespace only) or ``none``. Without bubblewrap
    and without that choice, no target code runs."""
    choice = os.environ.get(SANDBOX_ENV, "")
    if choice and choice not in ("bwrap", "unshare", "none"):
        raise SandboxError(f"{SANDBOX_ENV}={choice!r}: expected bwrap, unshare or none")
    if choice in ("unshare", "none"):
        return choice, f"the operator chose the weaker {SANDBOX_ENV}={choice}"
    bwrap, why = bwrap_probe()
    if bwrap:
        return "bwrap", "bubblewrap: new user, PID, IPC, UTS and network namespaces; read-only system"
    raise SandboxError(
        f"{why}: CASM runs no target-repo code without its sandbox. Install bubblewrap (Debian: apt-get install "
        f"bubblewrap), or accept a weaker isolation with {SANDBOX_ENV}=unshare (network namespace only)"
    )


def _system_mounts(mounts: list[str]) -> list[str]:
    """bubblewrap arguments for the read-only system; appends what it mounts to ``mounts``."""
    args: list[str] = []
    for top in SYSTEM_DIRS:
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
            mounts.append(top)
    return args


def _covered(path: str, mounts: list[str]) -> bool:
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)


def bwrap_prefix(
    bwrap: str, tree: Path, home: Path, readable: list[str], network: bool, writable: tuple[str, ...] = ()
) -> list[str]:
    """bubblewrap's argv: every namespace new (the network too unless ``network``), all
    capabilities dropped, uid/gid nobody, the system read-only, ``readable`` (interpreters,
    the environment) read-only, and only ``tree``, the private ``home`` and ``writable``
    (a setup step's environment and package caches) writable; a fresh /proc (its own
    processes only), /dev and /tmp. Nothing else exists inside: not the user's repo, not
    CASM's state dir, not /var/run, not the host's home."""
    args = [bwrap, "--unshare-all", *(["--share-net"] if network else []), "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--uid", NOBODY, "--gid", NOBODY, "--hostname", "casm-sandbox"]  # fmt: skip
    mounts: list[str] = []
    args += _system_mounts(mounts)
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # before the binds that may live in /tmp
    for path in sorted({os.path.realpath(p) for p in readable} | set(readable), key=len):
        if os.path.exists(path) and not _covered(path, mounts):
            args += ["--ro-bind", path, path]
            mounts.append(path)
    for path in sorted(writable, key=len):
        args += ["--bind", path, path]
    args += ["--bind", str(home), str(home), "--bind", str(tree), str(tree), "--chdir", str(tree)]
    return [*args, "--remount-ro", "/", "--"]  # the sandbox's own root too: nothing to write but tree, home, /tmp


def interpreter_paths() -> list[str]:
    """The interpreters a sandboxed command may need: CASM's venv (its ``uv`` too) and the
    chain it links to. An environment's interpreter links to the one it was made from
    (CASM's venv, then its base): the whole chain must resolve inside."""
    return [sys.base_prefix, str(Path(os.path.realpath(sys.executable)).parent.parent), sys.prefix]


@functools.cache
def network_isolation_prefix() -> tuple[list[str] | None, str]:
    """The argv prefix that puts a command in a fresh network namespace, or why none works."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None, "util-linux 'unshare' is not installed"
    candidates = [[unshare, "--net", "--"], [unshare, "--user", "--map-root-user", "--net", "--"]]
    reasons = []
    for prefix in candidates:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        if probe.returncode == 0:
            return prefix, "fresh Linux network namespace (no interfaces but a down loopback)"
        reasons.append(probe.stderr.decode("utf-8", "replace").strip() or f"exit {probe.returncode}")
    return None, "cannot create a network namespace here: " + "; ".join(reasons)


def scrubbed_env(home: Path, interpreter: str = sys.executable) -> dict[str, str]:
    """Only locale and PATH pass through: no tokens or API keys reach the target repo."""
    env = {k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ}
    interpreter_bin = str(Path(interpreter).parent)
    env["PATH"] = os.pathsep.join([interpreter_bin, env.get("PATH", os.defpath)])
    env.update(
        HOME=str(home),
        TMPDIR=str(home),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONHASHSEED="0",
        NO_COLOR="1",
    )
    return env


class Sandbox:
    def __init__(
        self,
        allow_commands: list[str],
        allow_network: bool,
        timeout_s: int,
        environment: Environment | None = None,
        env_cache: Path | None = None,
    ) -> None:
        self.allow_commands = list(allow_commands)
        self.allow_network = allow_network
        self.timeout_s = timeout_s
        ready = environment is not None and environment.status == "ready"
        self.environment = environment if ready else None
        self.env_cache = env_cache

    @classmethod
    def for_run(cls, spec: RunSpec, environment: Environment | None = None) -> Sandbox:
        """The sandbox the run's template declares (``runtime.sandbox``), in the repo's own
        environment when one was built."""
        box = spec.manifest.runtime.sandbox
        cache = Path(spec.state_dir) / ENVS_DIR
        return cls(box.allow_commands, box.allow_network, box.command_timeout_seconds, environment, cache)

    @property
    def interpreter(self) -> str:
        env = self.environment
        return env.python if env is not None and env.python else sys.executable

    def readable(self) -> list[str]:
        """What a command needs to see besides the system and its tree: the interpreters
        (CASM's and its base) and the repo's environment."""
        paths = interpreter_paths()
        if self.environment is not None and self.environment.path:
            paths.append(self.environment.path)
        return paths

    def argv(self, command: str) -> list[str]:
        if command not in self.allow_commands:
            raise SandboxError(f"command not allowlisted by the template: {command!r}")
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise SandboxError(f"allowlisted command {command!r} cannot be split: {exc}") from None
        if not argv:
            raise SandboxError("allowlisted command is empty")
        return argv

    def resolve(self, command: str, env: dict[str, str], cwd: Path) -> list[str] | None:
        """argv with its program made absolute, or None when the program is not there.

        A program with a ``/`` (``./check.sh``) is the repo's own, so it must be inside the
        repo; anything else is looked up on the scrubbed ``PATH``.
        """
        argv = self.argv(command)
        if argv[0] in ("python", "python3"):
            return [self.interpreter, *argv[1:]]
        if "/" in argv[0]:
            program = (cwd / argv[0]).resolve()
            inside = program.is_relative_to(cwd.resolve())
            runnable = inside and program.is_file() and os.access(program, os.X_OK)
            return [str(program), *argv[1:]] if runnable else None
        found = shutil.which(argv[0], path=env["PATH"])
        return [found, *argv[1:]] if found else None

    def run(self, command: str, cwd: Path) -> CommandResult:
        return self._run(command, cwd, capture=False)[0]

    def run_capture(self, command: str, cwd: Path) -> tuple[CommandResult, str]:
        """Run a tool whose standard output is its report (a JSON reporter): the result
        (its tail from standard error) and the whole standard output, kept apart."""
        return self._run(command, cwd, capture=True)

    def _run(self, command: str, cwd: Path, capture: bool) -> tuple[CommandResult, str]:
        with tempfile.TemporaryDirectory(prefix=owned_prefix("casm-home-")) as home:
            env = scrubbed_env(Path(home), self.interpreter)
            env_bin = self._node_bin()
            if env_bin:  # the repo's own tools (xo, eslint) before anything on the host
                env["PATH"] = os.pathsep.join([env_bin, env["PATH"]])
            argv = self.resolve(command, env, cwd)
            if argv is None:
                return CommandResult(
                    command,
                    "unavailable",
                    None,
                    0.0,
                    f"{self.argv(command)[0]!r} is not installed",
                    "not_requested",
                    "",
                ), ""
            report = Path(home) / junit.REPORT_NAME
            if junit.is_pytest(argv):
                argv = [*argv, *junit.report_args(report)]
            elif junit.is_node(argv) and not capture:
                env["NODE_OPTIONS"] = junit.node_options(report)
            mode, how = sandbox_mode()
            network: Isolation = "not_requested"
            detail = "the template allows network access"
            if mode == "bwrap":
                bwrap = bwrap_probe()[0] or "bwrap"
                # The scratch clone's git dir, read-only: `git describe` and friends work, nothing can be written there.
                git_dir = gitops.scratch_git_dir(cwd)
                readable = [*self.readable(), *([str(git_dir)] if git_dir else [])]
                prefix = bwrap_prefix(bwrap, cwd.resolve(), Path(home), readable, self.allow_network)
                argv = [*prefix, *argv]
                if not self.allow_network:
                    network, detail = "enforced", f"{how}; no network"
            elif not self.allow_network:
                prefix, detail = network_isolation_prefix() if mode == "unshare" else (None, how)
                network = "enforced" if prefix else "not_enforced"
                argv = [*(prefix or []), *argv]
                detail = f"{detail} ({how})"
            result, stdout = self._execute(command, argv, cwd, env, network, detail, capture)
            tests = junit.read(report, cwd)
            return (dataclasses.replace(result, tests=tests) if tests is not None else result), stdout

    def _node_bin(self) -> str | None:
        env = self.environment
        if env is None or env.kind != "node" or env.path is None:
            return None
        return str(Path(env.path) / "node_modules" / ".bin")

    def _execute(
        self,
        command: str,
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
        network: Isolation,
        detail: str,
        capture: bool = False,
    ) -> tuple[CommandResult, str]:
        """Run ``argv``; with ``capture`` its standard output is returned whole and the
        tail is standard error's, else both streams make the tail."""
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE if capture else subprocess.STDOUT,
                start_new_session=True,  # so a timeout kills the whole process group
            )
        except OSError as exc:  # e.g. a script with a broken interpreter line
            return CommandResult(command, "error", None, 0.0, redact(str(exc)), network, detail), ""
        stdout = b""
        try:
            out, err = proc.communicate(timeout=self.timeout_s)
            if capture:
                stdout, out = out, err
            status: CheckStatus = "passed" if proc.returncode == 0 else "failed"
            exit_code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            out = err if capture else out
            status, exit_code = "timed_out", None
            out += f"\n[casm: killed after {self.timeout_s}s timeout]".encode()
        duration = round(time.monotonic() - started, 3)
        tail = redact(out.decode("utf-8", "replace"))[-OUTPUT_TAIL_CHARS:]
        result = CommandResult(command, status, exit_code, duration, tail, network, detail)
        return result, stdout.decode("utf-8", "replace")
