"""Untrusted text (a repo's TODO words, paths, a model's finding messages) rendered as
inert markdown for reports and GitHub bodies: no HTML, no links or images, no @mentions,
no table breaks, one line."""

from __future__ import annotations

import html
import re

CONTROL = re.compile(r"[\x00-\x1f\x7f\u200b-\u200f\u2028\u2029]")


def inert(text: str, limit: int = 300) -> str:
    text = CONTROL.sub(" ", " ".join(text.split()))[:limit]
    text = html.escape(text, quote=False).replace("|", "\\|")
    text = re.sub(r"([\[\]()`*_~#@!])", r"\\\1", text)
    return text.replace("://", ":\\/\\/")  # no autolinked URL


def inert_path(path: str) -> str:
    """A path as a code span that cannot be closed early."""
    clean = html.escape(CONTROL.sub("?", path)[:200], quote=False)
    return "<code>" + re.sub(r"([\\\[\]()`*_~#@!|<>])", r"\\\1", clean) + "</code>"
