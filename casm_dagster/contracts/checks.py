"""Field checks shared by the strictly validated config files (manifests, rulesets)."""

from __future__ import annotations

import re


def regex_compiles(value: str) -> str:
    """A pydantic validator body: the value is a valid Python regular expression."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value
