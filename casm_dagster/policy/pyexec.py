"""Command execution added to Python code, found on the AST rather than by line regexes.

A regex for ``shell=True`` misses ``subprocess.run(["sh", "-c", cmd])``, ``os.execvp``,
``pty.spawn``, ``from subprocess import run as r`` and ``getattr(__import__("os"), name)``.
Both sides of the file are parsed; every call is resolved through the module's imports and
simple assignments to a dotted name, and the calls that run a process, a shell or code
which the new side has more of than the old are reported. A call kept but reformatted or
given other keyword arguments is the same call (its key is the target, the command and
whether a shell runs it), so a linter's rewrite of an existing call is not a new one.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePosixPath

MAX_SOURCE_CHARS = 2_000_000  # larger files keep only the regex patterns

_SHELL_CALLS = {
    "os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput", "commands.getoutput",
    "commands.getstatusoutput", "asyncio.create_subprocess_shell", "platform.popen",
}  # fmt: skip
_SPAWN_CALLS = {
    "subprocess.run", "subprocess.call", "subprocess.check_call", "subprocess.check_output", "subprocess.Popen",
    "os.posix_spawn", "os.posix_spawnp", "os.startfile", "pty.spawn", "asyncio.create_subprocess_exec",
    *(f"os.exec{s}" for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")),
    *(f"os.spawn{s}" for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")),
}  # fmt: skip
_CODE_CALLS = {"eval", "exec", "compile", "builtins.eval", "builtins.exec", "builtins.compile"}
_IMPORT_CALLS = {"__import__", "builtins.__import__", "importlib.import_module", "importlib.__import__"}
# Modules whose attributes, looked up by a computed name, can be any of the calls above.
_EXEC_MODULES = {"os", "subprocess", "pty", "commands", "asyncio", "platform", "builtins", "posix"}
_SHELLS = {"sh", "bash", "zsh", "dash", "ksh", "fish", "csh", "tcsh", "cmd", "cmd.exe", "powershell", "pwsh"}
_BUILTIN_NAMES = {"eval", "exec", "compile", "getattr", "__import__"}

# The pattern ids these calls are reported under (the ruleset's command_execution component).
SHELL = "py-ast-shell-command"
SPAWN = "py-ast-process-spawn"
CODE = "py-ast-eval-exec"
DYNAMIC = "py-ast-dynamic-lookup"


# No call can run a command unless the source names one of these (a cheap test before parsing).
_MENTIONS = re.compile(
    r"\b(?:subprocess|os|pty|commands|asyncio|platform|builtins|posix|eval|exec|compile|getattr"
    r"|__import__|importlib|modules|__builtins__)\b"
)


@dataclass(frozen=True)
class ExecCall:
    pattern_id: str
    line: int


class _Resolver:
    """Dotted names for expressions, through imports and one-name assignments."""

    def __init__(self, module: ast.Module) -> None:
        self.aliases: dict[str, str] = {"__builtins__": "builtins"}
        for node in ast.walk(module):
            if isinstance(node, ast.Import):
                for a in node.names:
                    self.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    if a.name == "*":
                        for name in _exported(node.module):
                            self.aliases[name] = f"{node.module}.{name}"
                    else:
                        self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        assigns = [n for n in ast.walk(module) if isinstance(n, ast.Assign | ast.AnnAssign | ast.NamedExpr)]
        for _ in range(3):  # chains: a = os; b = a.system
            for node in assigns:
                target = (
                    node.targets[0]
                    if isinstance(node, ast.Assign) and len(node.targets) == 1
                    else (node.target if isinstance(node, ast.AnnAssign | ast.NamedExpr) else None)
                )
                if isinstance(target, ast.Name) and node.value is not None:
                    value = self.name(node.value)
                    if value and _interesting(value):
                        self.aliases[target.id] = value

    def name(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.name(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Subscript):  # sys.modules["os"], __builtins__["eval"]
            base, key = self.name(node.value), _const_str(node.slice)
            if key and base == "sys.modules":
                return key
            return f"builtins.{key}" if key and base == "builtins" else None
        if isinstance(node, ast.Call):
            func = self.name(node.func)
            if func in ("getattr", "builtins.getattr") and len(node.args) >= 2:
                base = self.name(node.args[0])
                attr = _const_str(node.args[1])
                if base and attr:
                    return f"{base}.{attr}"
                return f"{base}.<computed>" if base else None
            if func in _IMPORT_CALLS and node.args:
                return _const_str(node.args[0]) or "<computed-module>"
        return None


def _exported(module: str) -> set[str]:
    names = (n.rpartition(".") for n in _SHELL_CALLS | _SPAWN_CALLS)
    return {name for owner, _, name in names if owner == module}


def _interesting(name: str) -> bool:
    root = name.split(".")[0]
    return root in _EXEC_MODULES or root in _BUILTIN_NAMES or root in ("importlib", "sys") or name.startswith("<")


def _const_str(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_false(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and not node.value


def _argv_shell(node: ast.expr | None) -> bool:
    """A command line whose program is a shell: ``["sh", "-c", ...]`` or ``"/bin/bash"``."""
    if isinstance(node, ast.List | ast.Tuple) and node.elts:
        node = node.elts[0]
    program = _const_str(node) if node is not None else None
    return program is not None and PurePosixPath(program.replace("\\", "/")).name.lower() in _SHELLS


def _classify(call: ast.Call, target: str) -> str | None:
    if target in _SHELL_CALLS:
        return SHELL
    if target in _CODE_CALLS:
        return CODE
    if target.endswith("<computed>") and target.split(".")[0] in _EXEC_MODULES:
        return DYNAMIC  # getattr(os, name)(...)
    if target in _IMPORT_CALLS and call.args and _const_str(call.args[0]) is None:
        return DYNAMIC  # importlib.import_module(name): any module, any code
    if target in _SPAWN_CALLS:
        shell = next((k.value for k in call.keywords if k.arg == "shell"), None)
        command = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "args"), None)
        # os.exec*/spawn*: the program is the first argument (spawn*: after the mode).
        if target.startswith("os.spawn") and len(call.args) > 1:
            command = call.args[1]
        if (shell is not None and not _is_false(shell)) or _argv_shell(command):
            return SHELL
        return SPAWN
    return None


def _calls(source: str) -> list[tuple[tuple[str, str, str], int]] | None:
    """(key, line) for every command-running call; None when the source does not parse."""
    if len(source) > MAX_SOURCE_CHARS:
        return None
    try:
        module = ast.parse(source)
        resolver = _Resolver(module)
        found = []
        for node in ast.walk(module):
            if isinstance(node, ast.Call) and (target := resolver.name(node.func)):
                if kind := _classify(node, target):
                    found.append(((kind, target, _command(node)), node.lineno))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    return found


def _command(call: ast.Call) -> str:
    first = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "args"), None)
    return ast.dump(first) if first is not None else ""


def added_calls(old: str | None, new: str, added_lines: set[int] | None = None) -> list[ExecCall] | None:
    """Command-running calls ``new`` has beyond ``old`` (None: ``new`` does not parse).

    When more calls share a key than before, the ones on added lines are reported first.
    """
    if not _MENTIONS.search(new):
        return [] if len(new) <= MAX_SOURCE_CHARS else None
    after = _calls(new)
    if after is None:
        return None
    before = Counter(key for key, _ in (_calls(old) or [])) if old else Counter()
    extra = Counter(key for key, _ in after) - before
    ordered = sorted(after, key=lambda kl: (added_lines is not None and kl[1] not in added_lines, kl[1]))
    out = []
    for key, line in ordered:
        if extra[key] > 0:
            extra[key] -= 1
            out.append(ExecCall(key[0], line))
    return sorted(out, key=lambda c: c.line)


def added_calls_in_fragments(fragments: list[tuple[str, str, int, list[tuple[int, str]]]]) -> list[ExecCall]:
    """When the whole file is unavailable: each hunk's old and new text (context included)
    parsed on its own, dedented; failing that, each added line alone.

    A fragment is (old text, new text, new-side first line number, [(line, added text)]).
    """
    out: list[ExecCall] = []
    for old, new, first_line, added in fragments:
        calls = added_calls(textwrap.dedent(old), textwrap.dedent(new), {n - first_line + 1 for n, _ in added})
        if calls is not None:
            out += [ExecCall(c.pattern_id, c.line + first_line - 1) for c in calls]
            continue
        for number, text in added:
            out += [ExecCall(c.pattern_id, number) for c in added_calls(None, text.strip()) or []]
    return out
