"""Hidden markers: an HTML comment in a PR body or comment that finds CASM's own post again
(idempotent reruns, one sticky comment) and carries a little state (the last reviewed SHA).

    <!-- casm:pr-sentinel {"head": "3f2a...", "findings": [...]} -->

The JSON never contains ``-->`` (``<`` and ``>`` are escaped), so a finding's text cannot
end the comment early.
"""

from __future__ import annotations

import json
import re
from typing import Any

_MARKER = re.compile(r"<!-- casm:([a-z0-9-]+)(?: (.*?))? -->", re.S)


def marker_tag(kind: str) -> str:
    """The part every version of the marker shares (what a search looks for)."""
    return f"<!-- casm:{kind}"


def render(kind: str, state: dict[str, Any] | None = None) -> str:
    if not state:
        return f"<!-- casm:{kind} -->"
    payload = json.dumps(state, sort_keys=True, separators=(",", ":"))
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e")
    return f"<!-- casm:{kind} {payload} -->"


def read(body: str, kind: str) -> dict[str, Any] | None:
    """The state in ``body``'s marker of ``kind``: None without one, {} if it holds none or is garbled."""
    for match in _MARKER.finditer(body or ""):
        if match.group(1) != kind:
            continue
        if not match.group(2):
            return {}
        try:
            state = json.loads(match.group(2))
        except json.JSONDecodeError:
            return {}
        return state if isinstance(state, dict) else {}
    return None
