"""Scrub secrets from anything CASM writes: command output, reports, events.

Two nets: the exact values of this process's secret-looking environment variables, and
the shapes of common live tokens. Issue-3's policy engine owns secret *detection* in diffs;
this module only makes sure nothing secret is echoed.
"""

from __future__ import annotations

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


def secret_env_values(environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def redact(text: str, extra_values: list[str] | None = None) -> str:
    for value in [*(extra_values or []), *secret_env_values()]:
        if value:
            text = text.replace(value, REDACTED)
    text = _URL_CREDENTIALS.sub(REDACTED + "@", text)
    return _TOKEN_SHAPES.sub(REDACTED, text)
