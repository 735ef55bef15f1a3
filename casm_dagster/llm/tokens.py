"""Token counts without a tokenizer download (none is reachable offline).

``estimate_tokens`` is the planning estimate (about four bytes per token for English and
code, the usual BPE average); ``max_tokens`` is a hard upper bound (a BPE token is never
shorter than one byte), which is what budget reservations use.
"""

from __future__ import annotations

MESSAGE_OVERHEAD = 16  # role markers and separators a chat request adds around the text


def estimate_tokens(text: str) -> int:
    if not text:
        return 0
    return MESSAGE_OVERHEAD + (len(text.encode("utf-8")) + 3) // 4


def max_tokens(text: str) -> int:
    return MESSAGE_OVERHEAD + len(text.encode("utf-8"))
