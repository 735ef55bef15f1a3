"""The sandbox for setup steps: building a repo's environment and installing the tree
under test into it. Build backends run the repo's own code (``setup.py``, hatch hooks), so
setup gets the checks' bubblewrap sandbox (``safety.sandbox``) plus what it needs:
``writable`` paths (the environment, the package caches) and the network.

The network is user-mode (slirp4netns, what rootless Podman uses) with the host's loopback
cut off: the registries are reachable, the services on ``127.0.0.1`` of the host (the
instance database, Redis, a webhook receiver) are not. Without slirp4netns, setup shares
the host's network and says so (``network_mode``, in the environment's detail).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from casm_dagster.safety import gitops
from casm_dagster.safety.sandbox import (
    bwrap_prefix,
    bwrap_probe,
    interpreter_paths,
    network_isolation_prefix,
    sandbox_mode,
)

SLIRP_READY_S = 10
SLIRP_DNS = "10.0.2.3"  # slirp4netns's built-in DNS forwarder


def network_mode() -> str:
    """How setup steps reach the network, for the report."""
    mode, how = sandbox_mode()
    if mode != "bwrap":
        return f"the host's, unsandboxed ({how})"
    if shutil.which("slirp4netns") is None:
        return "the host's (slirp4netns is not installed: the host's loopback is reachable)"
    if network_isolation_prefix()[0] is None:
        return f"the host's (no network namespace: {network_isolation_prefix()[1]})"
    return "user-mode (slirp4netns), the host's loopback cut off"


def _loopback_resolver() -> bool:
    try:
        text = Path("/etc/resolv.conf").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    servers = [line.split()[1] for line in text.splitlines() if line.startswith("nameserver") and len(line.split()) > 1]
    return any(s.startswith("127.") or s == "::1" for s in servers)


def run(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    home: Path,
    readable: list[str],
    writable: list[str],
    timeout_s: int,
) -> subprocess.CompletedProcess[bytes]:
    """Run one setup step sandboxed; raises ``subprocess.TimeoutExpired`` / ``OSError``
    like ``subprocess.run``."""
    mode, _ = sandbox_mode()
    if mode != "bwrap":  # the operator chose a weaker isolation (CASM_SANDBOX)
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    bwrap = bwrap_probe()[0] or "bwrap"
    git_dir = gitops.scratch_git_dir(cwd)  # read-only: version-from-git builds (setuptools-scm, hatch-vcs)
    resolv = os.path.realpath("/etc/resolv.conf")  # often a link into /run, which is not mounted
    seen = [*interpreter_paths(), *readable, resolv, *([str(git_dir)] if git_dir else [])]
    for path in writable:
        Path(path).mkdir(parents=True, exist_ok=True)
    slirp = shutil.which("slirp4netns")
    netns = network_isolation_prefix()[0]
    prefix = bwrap_prefix(bwrap, cwd.resolve(), home, seen, True, tuple(writable))
    if slirp is None or netns is None:
        return subprocess.run(
            [*prefix, *argv], cwd=cwd, env=env, capture_output=True, timeout=timeout_s, stdin=subprocess.DEVNULL
        )
    return _with_slirp(slirp, [*netns, *prefix], argv, cwd, env, home, timeout_s)


def _with_slirp(
    slirp: str, prefix: list[str], argv: list[str], cwd: Path, env: dict[str, str], home: Path, timeout_s: int
) -> subprocess.CompletedProcess[bytes]:
    """``prefix`` starts bwrap (sharing the network) in a new network namespace made by
    ``unshare``; bwrap waits (``--block-fd``) until slirp4netns has given that namespace a
    tap device with a default route, then runs the step. (slirp4netns joins the namespace
    through ``unshare``'s pid, which became bwrap's outer process: joining through bwrap's
    child fails now and then, once it has dropped to uid 65534.)"""
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    extra = ["--info-fd", str(info_w), "--block-fd", str(block_r)]
    if _loopback_resolver():  # 127.0.0.53 and the like are the sandbox's own loopback
        fd, resolv = tempfile.mkstemp(prefix="resolv-", dir=home)
        os.write(fd, f"nameserver {SLIRP_DNS}\n".encode())
        os.close(fd)
        extra += ["--ro-bind", resolv, "/etc/resolv.conf"]
    boxed = [*prefix[:-1], *extra, "--", *argv]  # prefix ends with "--"
    slirp_proc: subprocess.Popen[bytes] | None = None
    try:
        proc = subprocess.Popen(
            boxed, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(info_w, block_r),
        )  # fmt: skip
        os.close(info_w)
        os.close(block_r)
        pid = _child_pid(info_r)  # bwrap is up: the namespace exists
        ready_r, ready_w = os.pipe()
        slirp_argv = [slirp, "--configure", "--mtu=65520", "--disable-host-loopback", "--ready-fd", str(ready_w)]
        if "--user" in prefix:  # unprivileged: the namespace belongs to unshare's user namespace
            slirp_argv += ["--userns-path", f"/proc/{proc.pid}/ns/user"]
        slirp_log = tempfile.TemporaryFile(dir=home)
        slirp_proc = subprocess.Popen(
            [*slirp_argv, str(proc.pid), "tap0"], pass_fds=(ready_w,), stdout=subprocess.DEVNULL, stderr=slirp_log
        )
        os.close(ready_w)
        ready, _, _ = select.select([ready_r], [], [], SLIRP_READY_S)
        ok = bool(ready) and os.read(ready_r, 1) == b"1"
        os.close(ready_r)
        if not ok:
            _kill(proc, pid)
            slirp_log.seek(0)
            why = slirp_log.read().decode("utf-8", "replace").strip().splitlines()[-3:] or ["no answer"]
            why = [" | ".join(why)]
            raise OSError(f"slirp4netns could not bring up the setup network: {why[0]}")
        os.write(block_w, b"1")
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc, pid)
            raise
        return subprocess.CompletedProcess(boxed, proc.returncode, out, err)
    finally:
        for fd in (info_r, block_w):
            try:
                os.close(fd)
            except OSError:
                pass
        if slirp_proc is not None:  # it also ends on its own when the namespace goes
            slirp_proc.terminate()
            slirp_proc.wait()


def _kill(proc: subprocess.Popen[bytes], pid: int) -> None:
    """End the sandbox: its init (``pid``, PID 1 inside) takes every process with it, so
    nothing is left holding the output pipes."""
    for target in (pid, proc.pid):
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.communicate()


def _child_pid(info_r: int) -> int:
    """The sandbox's pid, from bwrap's ``--info-fd`` JSON."""
    data = b""
    while True:
        chunk = os.read(info_r, 4096)
        if not chunk:
            raise OSError("bubblewrap exited before it reported its child's pid")
        data += chunk
        try:
            return int(json.loads(data)["child-pid"])
        except ValueError:
            continue
