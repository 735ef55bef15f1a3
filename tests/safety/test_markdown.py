"""Untrusted text as inert markdown: what a hostile TODO, path or model message could do
in a report or a GitHub body, and that it cannot."""

from __future__ import annotations

import re

from casm_dagster.safety.markdown import inert, inert_path


def test_inert_text_has_no_html_links_mentions_or_cell_breaks() -> None:
    text = inert("<b>x</b> @octocat [a](javascript:alert(1)) ![i](http://x/y.png) | https://evil.example\nnext")
    assert "<b>" not in text and "&lt;b&gt;" in text
    assert re.search(r"(?<!\\)@", text) is None
    assert "](" not in text and "![" not in text
    assert "://" not in text and "\n" not in text
    assert re.search(r"(?<!\\)\|", text) is None


def test_a_path_cannot_close_its_code_element() -> None:
    assert inert_path("src/a.py:3") == "<code>src/a.py:3</code>"
    path = inert_path("x</code><img src=y>`|[a](b)")
    assert path.count("</code>") == 1 and path.endswith("</code>") and "<img" not in path
