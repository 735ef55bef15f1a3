"""Scrub secrets from anything CASM writes or sends: command output, finding messages,
reports, comments, events, and the file contents in model prompts.

Four nets: the exact values of this process's secret-looking environment variables; the
policy engine's own secret formats (the bundled ruleset's ``secret_like`` patterns: cloud
keys, tokens, private keys, credentials in URLs); the shapes of common live tokens; and
values assigned to secret-looking names (``password = "…"``, ``api_key: …``, bandit's
"hardcoded password: '…'") that look random enough to be real, so a secret already
committed in an audited repo is never echoed.
"""

from __future__ import annotations

import functools
import os
import re

REDACTED = "[REDACTED]"
_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL)", re.I)
_TOKEN_SHAPES = re.compile(
    r"(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|xox[abposre]-[A-Za-z0-9-]{10,}|xapp-[A-Za-z0-9-]{10,}|sk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}"
    r"|(?:sk|rk)_live_[A-Za-z0-9]{20,}|AIza[0-9A-Za-z_-]{35}|npm_[A-Za-z0-9]{36}"
    r"|hooks\.slack\.com/[A-Za-z0-9/_-]+"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----)"
)
# user:password@ in any URL (the user name too: some tokens travel as the user part).
_URL_CREDENTIALS = re.compile(r"(?<=://)[^\s/@:'\"`<>]{0,128}:[^\s/@'\"`<>]{1,256}@")
_MIN_SECRET_LEN = 6  # shorter values would redact ordinary words
# A value assigned to a secret-looking name, quoted (code, YAML, JSON, .env with quotes),
# or bandit's "Possible hardcoded password: '…'".
_ASSIGNED = re.compile(
    r"(?i)(?:\b[\w.-]*(?:passw(?:or)?d|secret|token|api_?key|access_?key|private_?key|credential|auth_?key)"
    r"[\w.-]*[\"']?\s*(?::=|[:=])\s*[rbuf]?|hardcoded password:\s*)([\"'])(?P<secret>[^\"'\s]{6,256})\1"
)


def secret_env_values(environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


@functools.cache
def _policy_formats() -> tuple[re.Pattern[str], ...]:
    """The bundled ruleset's secret formats: one definition of "a secret" for the policy
    engine (which blocks them in diffs) and for this module (which never echoes them)."""
    from casm_dagster.policy.ruleset import load_ruleset

    patterns = load_ruleset("default.devtools").model.diff_heuristics.secret_like.patterns
    return tuple(re.compile(p.regex) for p in patterns if "(?P<secret>" in p.regex)


def _looks_random(value: str) -> bool:
    """Keyword-assigned values count as secrets when they mix character classes (a cheap
    entropy test): ``password = "Tr0ub4dor-3"`` yes, ``token = "refresh"`` no."""
    from casm_dagster.policy.heuristics import is_placeholder

    classes = sum(bool(re.search(c, value)) for c in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]"))
    return len(value) >= 8 and classes >= 2 and not is_placeholder(value)


def _blank_secret(match: re.Match[str]) -> str:
    start, end = match.span("secret")
    whole = match.group(0)
    return whole[: start - match.start()] + REDACTED + whole[end - match.start() :]


def _assigned(match: re.Match[str]) -> str:
    return _blank_secret(match) if _looks_random(match.group("secret")) else match.group(0)


def redact(text: str, extra_values: list[str] | None = None) -> str:
    return _redact(text, tuple(extra_values or ()), tuple(secret_env_values()))


# A file's text is redacted for each prompt built from it (review, fix, docgen; at forecast
# and again in the stage): ~15 regex passes each, the forecast's main cost on a large repo.
# Keyed by the secret values too, so a changed environment is never served a stale result.
@functools.lru_cache(maxsize=256)
def _redact(text: str, extra_values: tuple[str, ...], env_values: tuple[str, ...]) -> str:
    for value in [*extra_values, *env_values]:
        if value:
            text = text.replace(value, REDACTED)
    text = _URL_CREDENTIALS.sub(REDACTED + "@", text)
    for pattern in _policy_formats():
        text = pattern.sub(_blank_secret, text)
    text = _ASSIGNED.sub(_assigned, text)
    return _TOKEN_SHAPES.sub(REDACTED, text)
