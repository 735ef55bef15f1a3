"""Diff heuristics: command execution, unsafe deserialization, permission escalation,
suppression comments, risky deletions; language scoping; line numbers and evidence."""

from __future__ import annotations

import random
import re
import string

import pytest
from policy_support import codes, deleted_file_diff, new_file_diff

from casm_dagster.policy.heuristics import language_of

ADDED_LINE_CASES = [
    # (case id, path, added line, reason code, pattern id)
    ("py-os-system", "src/tasks.py", 'os.system(f"tar czf {name}.tgz {folder}")', "COMMAND_EXEC", "py-os-system"),
    (
        "py-subprocess-shell",
        "src/tasks.py",
        "subprocess.run(cmd, shell=True, check=True)",
        "COMMAND_EXEC",
        "py-subprocess-shell",
    ),
    ("py-eval", "src/calc.py", "result = eval(expression)", "COMMAND_EXEC", "py-eval-exec"),
    (
        "js-child-process",
        "src/build.js",
        'const { exec } = require("child_process");',
        "COMMAND_EXEC",
        "js-child-process",
    ),
    (
        "js-execsync",
        "src/build.ts",
        'const out = execSync("git rev-parse HEAD").toString();',
        "COMMAND_EXEC",
        "js-child-process",
    ),
    ("js-eval", "src/calc.js", "const value = eval(userInput);", "COMMAND_EXEC", "js-eval"),
    (
        "sh-curl-pipe-sh",
        "tools/install.sh",
        "curl -fsSL https://get.example.org/install.sh | sh",
        "COMMAND_EXEC",
        "sh-pipe-to-shell",
    ),
    ("py-yaml-load", "src/config.py", "config = yaml.load(handle)", "UNSAFE_DESERIALIZATION", "py-yaml-load"),
    ("py-pickle-loads", "src/cache.py", "obj = pickle.loads(blob)", "UNSAFE_DESERIALIZATION", "py-pickle"),
    (
        "js-json-parse-body",
        "src/api.js",
        "const data = JSON.parse(req.body);",
        "UNSAFE_DESERIALIZATION",
        "js-json-parse-request",
    ),
    ("sh-chmod-x", "tools/setup.sh", "chmod +x ./bin/run", "PERMISSION_ESCALATION", "chmod-executable-or-world"),
    ("dockerfile-sudo", "Dockerfile", "RUN sudo apt-get install -y curl", "PERMISSION_ESCALATION", "sudo"),
    ("k8s-run-as-root", "deploy/pod.yaml", "        runAsUser: 0", "PERMISSION_ESCALATION", "k8s-root-or-privileged"),
    (
        "k8s-privilege-escalation",
        "deploy/pod.yaml",
        "        allowPrivilegeEscalation: true",
        "PERMISSION_ESCALATION",
        "k8s-root-or-privileged",
    ),
    ("dockerfile-user-root", "svc/Dockerfile", "USER root", "PERMISSION_ESCALATION", "docker-user-root"),
]


@pytest.mark.parametrize(
    ("path", "line", "code", "pattern_id"), [c[1:] for c in ADDED_LINE_CASES], ids=[c[0] for c in ADDED_LINE_CASES]
)
def test_risky_added_line_gates(evaluate, path, line, code, pattern_id):
    result = evaluate(new_file_diff(path, ["# header", line, "# footer"]))

    assert result.status == "gate"
    assert code in result.reason_codes
    hits = [s for s in result.signals if s.reason_code == code]
    assert [(s.evidence.pattern_id, s.file, s.line_start, s.line_end) for s in hits] == [(pattern_id, path, 2, 2)]
    condition = {
        "COMMAND_EXEC": "command_execution",
        "UNSAFE_DESERIALIZATION": "unsafe_deserialization",
        "PERMISSION_ESCALATION": "permission_escalation",
    }[code]
    assert condition in result.conditions
    assert "SECRET_LIKE" not in result.reason_codes


@pytest.mark.parametrize(
    "line",
    [
        "config = yaml.load(handle, Loader=yaml.SafeLoader)",
        "config = yaml.load(handle, Loader=yaml.CSafeLoader)",
        "config = yaml.safe_load(handle)",
    ],
)
def test_safe_yaml_loading_does_not_hit(evaluate, line):
    result = evaluate(new_file_diff("src/config.py", ["import yaml", line]))
    assert "UNSAFE_DESERIALIZATION" not in codes(result)
    assert result.status == "pass"


def test_unsafe_yaml_loader_argument_hits(evaluate):
    result = evaluate(new_file_diff("src/config.py", ["import yaml", "config = yaml.load(handle, Loader=yaml.Loader)"]))
    assert result.status == "gate"
    # both the generic yaml.load pattern and the explicit unsafe-Loader pattern hit
    assert {s.evidence.pattern_id for s in result.signals if s.reason_code == "UNSAFE_DESERIALIZATION"} == {
        "py-yaml-load",
        "py-yaml-unsafe",
    }


def test_git_mode_change_to_executable_gates(evaluate):
    diff = b"diff --git a/bin/deploy b/bin/deploy\nold mode 100644\nnew mode 100755\n"
    result = evaluate(diff)

    assert result.status == "gate"
    assert "permission_escalation" in result.conditions
    (signal,) = [s for s in result.signals if s.reason_code == "PERMISSION_ESCALATION"]
    assert signal.evidence.pattern_id == "git-mode-executable"
    assert (signal.file, signal.line_start, signal.line_end) == ("bin/deploy", 1, 1)
    assert signal.evidence.kind == "metadata" and signal.evidence.diff_hunk_sha256 is None


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("docs/usage.md", "Never call `eval(user_input)` or `os.system(cmd)` on untrusted data."),
        ("docs/usage.md", "Avoid `yaml.load(stream)` and `pickle.loads(blob)`; run `chmod +x` and `sudo make`."),
        ("notes.txt", "const data = JSON.parse(req.body); execSync('ls')"),
        ("src/app.py", "# sudo chmod +x is shell-only: not a pattern for python files"),
    ],
)
def test_patterns_are_scoped_to_their_languages(evaluate, path, line):
    result = evaluate(new_file_diff(path, [line]))
    assert not codes(result) & {"COMMAND_EXEC", "UNSAFE_DESERIALIZATION", "PERMISSION_ESCALATION"}
    assert result.status in ("pass", "warn")


@pytest.mark.parametrize(
    ("path", "ext_language"),
    [
        ("a/b.py", "python"),
        ("web/x.tsx", "javascript"),
        ("run.sh", "shell"),
        ("k.yml", "yaml"),
        ("Dockerfile", "dockerfile"),
        ("svc/Dockerfile.dev", "dockerfile"),
        ("README.md", "other"),
    ],
)
def test_language_of(path, ext_language):
    assert language_of(path) == ext_language


SUPPRESSIONS = [
    ("noqa", "src/app.py", "import os  # noqa: F401", "noqa"),
    ("nosec", "src/app.py", "assert user.is_staff  # nosec B101", "nosec"),
    (
        "pragma-allowlist",
        "src/app.py",
        'API_URL = "https://api.internal"  # pragma: allowlist secret',
        "pragma-allowlist-secret",
    ),
    ("gitleaks-allow", "src/app.py", "SALT = load_salt()  # gitleaks:allow", "gitleaks-allow"),
    ("eslint-disable", "web/app.js", "// eslint-disable-next-line no-console", "eslint-disable"),
]


@pytest.mark.parametrize(
    ("path", "line", "pattern_id"), [s[1:] for s in SUPPRESSIONS], ids=[s[0] for s in SUPPRESSIONS]
)
def test_suppression_comment_added(evaluate, path, line, pattern_id):
    result = evaluate(new_file_diff(path, ["x = 1", line]))

    (signal,) = [s for s in result.signals if s.reason_code == "SUPPRESSION_ADDED"]
    assert (signal.evidence.pattern_id, signal.line_start, signal.severity) == (pattern_id, 2, "medium")
    # a medium-severity signal alone warns; suppressions are not a gating condition
    assert result.status == "warn"


# ---------------------------------------------------------------- risky deletions

VIEWS_BEFORE = """\
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse


def health(request):
    return JsonResponse({"ok": True})


@login_required
def dashboard(request):
    return JsonResponse({"user": request.user.username})


def status(request):
    return JsonResponse({"status": "green"})


def version(request):
    return JsonResponse({"version": "1.0"})


def about(request):
    return JsonResponse({"about": "app"})
"""


def test_removed_login_required_gates_with_old_line_number(evaluate, two_commits):
    after = VIEWS_BEFORE.replace("@login_required\n", "")
    _, diff = two_commits({"app/views.py": VIEWS_BEFORE}, {"app/views.py": after})
    result = evaluate(diff)

    assert result.status == "gate"
    assert "risky_deletion" in result.conditions
    (signal,) = [s for s in result.signals if s.reason_code == "AUTH_CHECK_REMOVED"]
    assert signal.evidence.pattern_id == "auth-decorator-removed"
    assert (signal.file, signal.line_start, signal.line_end) == ("app/views.py", 9, 9)  # old-file line
    assert result.scope is not None and "keep the removed authorization checks" in result.scope.notes


def test_moved_login_required_is_not_a_removal(evaluate, two_commits):
    after = VIEWS_BEFORE.replace("@login_required\n", "").replace(
        "def about(request):", "@login_required\ndef about(request):"
    )
    _, diff = two_commits({"app/views.py": VIEWS_BEFORE}, {"app/views.py": after})
    assert sum(line.startswith(b"@@ ") for line in diff.splitlines()) == 2  # removed in one hunk, added in another
    result = evaluate(diff)

    assert "AUTH_CHECK_REMOVED" not in codes(result)
    assert result.status in ("pass", "warn")


WORKFLOW = """\
name: ci
on: [push, pull_request]
permissions:
  contents: read
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: make test
"""


def test_workflow_losing_its_permissions_block(evaluate, two_commits):
    after = WORKFLOW.replace("permissions:\n  contents: read\n", "")
    _, diff = two_commits({".github/workflows/ci.yml": WORKFLOW}, {".github/workflows/ci.yml": after})
    result = evaluate(diff)

    assert result.status == "gate"
    (signal,) = [s for s in result.signals if s.reason_code == "WORKFLOW_PERMISSIONS_REMOVED"]
    assert signal.evidence.pattern_id == "workflow-permissions-removed"
    assert (signal.file, signal.line_start) == (".github/workflows/ci.yml", 3)
    assert {"permission_escalation", "risky_deletion"} <= set(result.conditions)


def test_workflow_permissions_rewritten_is_not_a_removal(evaluate, two_commits):
    after = WORKFLOW.replace("permissions:\n  contents: read\n", "permissions: {contents: read}\n")
    _, diff = two_commits({".github/workflows/ci.yml": WORKFLOW}, {".github/workflows/ci.yml": after})
    assert "WORKFLOW_PERMISSIONS_REMOVED" not in codes(evaluate(diff))


TESTS_BEFORE = """\
import pytest


def test_parse():
    assert int("1") == 1


def test_reject():
    with pytest.raises(ValueError):
        int("x")
"""


def test_deleting_a_test_file(evaluate):
    result = evaluate(deleted_file_diff("tests/test_x.py", TESTS_BEFORE.splitlines()))
    (signal,) = [s for s in result.signals if s.reason_code == "TEST_REMOVED"]
    assert (signal.evidence.pattern_id, signal.file, signal.line_start) == ("test-file-deleted", "tests/test_x.py", 1)
    assert signal.type == "test_regression"
    assert result.status == "warn"  # medium severity, not a gating condition


def test_removing_a_test_function(evaluate, two_commits):
    after = TESTS_BEFORE.split("\n\n\ndef test_reject")[0] + "\n"
    _, diff = two_commits({"tests/test_x.py": TESTS_BEFORE}, {"tests/test_x.py": after})
    result = evaluate(diff)
    (signal,) = [s for s in result.signals if s.reason_code == "TEST_REMOVED"]
    assert (signal.evidence.pattern_id, signal.line_start) == ("test-removed", 8)  # "def test_reject" in the old file
    assert result.status == "warn"


def test_renaming_a_test_function_is_not_a_removal(evaluate, two_commits):
    after = TESTS_BEFORE.replace("def test_reject", "def test_rejects_garbage")
    _, diff = two_commits({"tests/test_x.py": TESTS_BEFORE}, {"tests/test_x.py": after})
    assert "TEST_REMOVED" not in codes(evaluate(diff))


# ---------------------------------------------------------------- line numbers and evidence


def test_line_numbers_new_for_added_and_old_for_removed(evaluate, two_commits):
    before_lines = [f"VALUE_{i} = {i}" for i in range(1, 41)]
    before_lines[29] = "@login_required"  # old line 30
    before = "\n".join(before_lines) + "\n"
    after_lines = list(before_lines)
    after_lines[29:30] = []  # remove old line 30
    after_lines[4:4] = ["import os", "import pickle", "os.system('make')"]  # new lines 5-7
    after_lines.append("obj = pickle.loads(blob)")  # last new line
    _, diff = two_commits({"app/mixed.py": before}, {"app/mixed.py": "\n".join(after_lines) + "\n"})
    result = evaluate(diff)

    by_code = {s.reason_code: s for s in result.signals if s.component != "semantic"}
    assert (by_code["COMMAND_EXEC"].line_start, by_code["COMMAND_EXEC"].line_end) == (7, 7)
    assert by_code["UNSAFE_DESERIALIZATION"].line_start == len(after_lines)
    assert by_code["AUTH_CHECK_REMOVED"].line_start == 30
    for signal in result.signals:
        assert signal.file == "app/mixed.py"
        assert signal.line_start is not None and signal.line_end == signal.line_start
        assert signal.evidence.pattern_id
        assert signal.evidence.diff_hunk_sha256  # every pattern signal points at its hunk


# ---------------------------------------------------------------- every alternative of every pattern


def _rand(seed: str, alphabet: str, n: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(n))


_AN = string.ascii_letters + string.digits
_UD = string.ascii_uppercase + string.digits

# (pattern id, a line holding one alternative of its regex); secrets are built at run time
ALTERNATIVES = [
    ("private-key-pem", "-----BEGIN PGP PRIVATE KEY BLOCK-----"),
    ("aws-access-key-id", f"key = ASIA{_rand('asia', _UD, 16)}"),
    ("aws-access-key-id", f"key = ABIA{_rand('abia', _UD, 16)}"),
    ("aws-access-key-id", f"key = ACCA{_rand('acca', _UD, 16)}"),
    ("aws-secret-access-key", f"AWS_SECRET_ACCESS_KEY: {_rand('awss', _AN + '/+', 40)}"),
    ("aws-secret-access-key", f'awsSecretAccessKey="{_rand("awss2", _AN + "/+", 40)}"'),
    ("github-token-classic", f"t = gho_{_rand('gho', _AN, 36)}"),
    ("github-token-classic", f"t = ghu_{_rand('ghu', _AN, 36)}"),
    ("github-token-classic", f"t = ghs_{_rand('ghs', _AN, 36)}"),
    ("github-token-classic", f"t = ghr_{_rand('ghr', _AN, 36)}"),
    (
        "slack-token",
        f"t = xoxp-{_rand('xp1', string.digits, 11)}-{_rand('xp2', string.digits, 12)}-{_rand('xp3', _AN, 32)}",
    ),
    ("slack-token", f"t = xoxe-{_rand('xe1', string.digits, 1)}-{_rand('xe2', _AN + '-', 40)}"),
    (
        "slack-webhook",
        f"u = https://hooks.slack.com/workflows/T{_rand('w1', _UD, 9)}/A{_rand('w2', _UD, 9)}/{_rand('w3', _AN, 24)}",
    ),
    (
        "slack-webhook",
        f"u = https://hooks.slack.com/triggers/T{_rand('t1', _UD, 9)}/{_rand('t2', _UD, 10)}/{_rand('t3', _AN, 32)}",
    ),
    ("stripe-live-key", f"k = rk_live_{_rand('rk', _AN, 30)}"),
    ("openai-api-key", f"k = sk-svcacct-{_rand('svc', _AN + '_-', 60)}"),
    ("openai-api-key", f"k = sk-admin-{_rand('adm', _AN + '_-', 60)}"),
    ("anthropic-api-key", f"k = sk-ant-admin01-{_rand('antadm', _AN + '_-', 90)}"),
    ("py-os-system", "pipe = os.popen(cmd)"),
    ("py-os-system", "os.execvp(prog, args)"),
    ("py-eval-exec", "exec(code, namespace)"),
    ("js-child-process", "spawnSync('ls', ['-l'])"),
    ("js-child-process", "execFileSync(bin)"),
    ("js-eval", "const f = new Function('a', body);"),
    ("sh-pipe-to-shell", "wget -qO- https://get.example.org/i.sh | sudo bash"),
    ("sh-eval", 'cd /tmp; eval "$cmd"'),
    ("gha-untrusted-input-in-run", "        run: echo ${{ github.event.pull_request.title }}"),
    ("py-yaml-load", "docs = list(yaml.load_all(stream))"),
    ("py-yaml-unsafe", "data = yaml.unsafe_load(stream)"),
    ("py-yaml-unsafe", "data = yaml.full_load(stream)"),
    ("py-pickle", "obj = pickle.load(handle)"),
    ("py-pickle", "obj = dill.loads(blob)"),
    ("py-pickle", "model = joblib.load(path)"),
    ("py-marshal", "code = marshal.loads(blob)"),
    ("py-marshal", "obj = jsonpickle.decode(text)"),
    ("py-marshal", "db = shelve.open(path)"),
    ("py-torch-load", "state = torch.load(path)"),
    ("js-json-parse-request", "const q = JSON.parse(req.query.filter);"),
    ("js-unserialize", "const obj = unserialize(cookie);"),
    ("js-unserialize", "const obj = deserialize(payload);"),
    ("js-unserialize", "const s = require('node-serialize');"),
    ("chmod-executable-or-world", "chmod 777 /srv/data"),
    ("chmod-executable-or-world", "chmod -R a+w /srv/data"),
    ("chmod-executable-or-world", "chmod u+s /usr/local/bin/tool"),
    ("chmod-executable-or-world", "chmod g+s /srv/shared"),
    ("chmod-executable-or-world", "chmod o+w /srv/out"),
    ("sudo", "sudo make install"),
    ("setcap-capabilities", "setcap cap_net_raw+ep /usr/bin/tool"),
    ("setcap-capabilities", "      add: [CAP_SYS_ADMIN]"),
    ("k8s-root-or-privileged", "        runAsUser: 0"),
    ("k8s-root-or-privileged", "        privileged: true"),
    ("k8s-root-or-privileged", "        allowPrivilegeEscalation: true"),
    ("k8s-root-or-privileged", "        runAsNonRoot: false"),
    ("gha-write-permissions", "permissions: write-all"),
    ("gha-write-permissions", "  contents: write"),
    ("gha-write-permissions", "  id-token: write"),
    ("gha-pull-request-target", "on: pull_request_target"),
    ("docker-user-root", "USER 0"),
    ("docker-privileged", "docker run --privileged img"),
    ("py-setuid", "os.setuid(0)"),
    ("py-setuid", "os.chmod(path, 0o777)"),
    ("nosec", "// nosec G204"),
    ("pragma-allowlist-secret", "x = 1  # pragma: allowlist-secret"),
    ("eslint-disable", "/* eslint-disable */"),
    ("eslint-disable", "foo(); // eslint-disable-line no-undef"),
    ("type-ignore-or-ts-ignore", "x = f()  # type: ignore[attr-defined]"),
    ("type-ignore-or-ts-ignore", "// @ts-ignore"),
    ("type-ignore-or-ts-ignore", "// @ts-nocheck"),
    ("type-ignore-or-ts-ignore", "// @ts-expect-error"),
    ("shellcheck-disable", "# shellcheck disable=SC2086"),
]
REMOVED_ALTERNATIVES = [
    ("auth-decorator-removed", "@permission_required('app.change_item')"),
    ("auth-decorator-removed", "@app.jwt_required"),
    ("auth-decorator-removed", "@user_passes_test(lambda u: u.is_staff)"),
    ("auth-decorator-removed", "@Depends(get_current_user)"),
    *(
        ("auth-check-removed", f"if not {name}(request): return deny()")
        for name in (
            "has_perm", "has_permission", "check_permission_level", "require_permission", "verify_token",
            "verify_signature", "verify_password", "verify_jwt", "authenticate", "authorize", "csrf_protect",
            "isAuthenticated", "hasPermission", "checkPermission", "requireAuth", "verifyToken",
            "ensureAuthenticated", "isAdmin",
        )
    ),
    ("auth-check-removed", "if not request.user.is_superuser: return deny()"),
    ("auth-check-removed", "if user.is_admin: allow()"),
    ("js-auth-middleware-removed", "router.use(passport.authenticate('jwt'));"),
    ("js-auth-middleware-removed", "app.use(authMiddleware);"),
    ("js-auth-middleware-removed", "app.get('/a', ensureLoggedIn(), handler);"),
]  # fmt: skip
_FILE_FOR = {"python": "src/mod.py", "javascript": "src/mod.js", "shell": "tools/run.sh", "yaml": "deploy/app.yaml",
             "dockerfile": "svc/Dockerfile", "any": "src/mod.py"}  # fmt: skip


def _pattern(ruleset, pattern_id: str):
    heuristics = ruleset.model.diff_heuristics
    for component in ("secret_like", "command_execution", "unsafe_deserialization", "permission_escalation",
                      "suppression_comments", "risky_deletions"):  # fmt: skip
        for pattern in getattr(heuristics, component).patterns:
            if pattern.id == pattern_id:
                return pattern
    raise AssertionError(pattern_id)


@pytest.mark.parametrize(("pattern_id", "line"), ALTERNATIVES + REMOVED_ALTERNATIVES, ids=lambda v: str(v)[:40])
def test_every_regex_alternative_is_detected(ruleset, evaluate, pattern_id, line):
    """The scan's fast path runs a regex only on lines holding one of its keywords: a keyword
    list that misses one alternative of the regex silently disables that alternative."""
    pattern = _pattern(ruleset, pattern_id)
    assert re.search(pattern.regex, line), "the sample must match the regex itself"
    removed = (pattern_id, line) in REMOVED_ALTERNATIVES
    path = _FILE_FOR[pattern.languages[0]]
    diff = (deleted_file_diff if removed else new_file_diff)(path, ["# context", line])
    result = evaluate(diff)
    assert (pattern_id, 2) in [(s.evidence.pattern_id, s.line_start) for s in result.signals]


def test_text_whose_lowercase_is_longer_does_not_hide_a_pattern(evaluate):
    # 'İ' (U+0130) lower-cases to 'i̇' (two code points): a comment full of it must not shift
    # the keyword search onto the wrong line
    lines = ["# İSTANBUL İZMİR İÇİN İŞLEM: " + "İ" * 20, "os.system(cmd)", "x = 1", "y = 2", "z = 3"]
    result = evaluate(new_file_diff("src/tasks.py", lines))
    assert [(s.evidence.pattern_id, s.line_start) for s in result.signals if s.reason_code == "COMMAND_EXEC"] == [
        ("py-os-system", 2)
    ]
    assert result.status == "gate"
