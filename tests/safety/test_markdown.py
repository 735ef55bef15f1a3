"""Untrusted text as inert markdown: what a hostile TODO, path or model message could do
in a report or a GitHub body, and that it cannot."""

from __future__ import annotations

import re

from casm_dagster.safety.markdown import code_span, inert


def test_inert_text_has_no_html_links_mentions_or_cell_breaks() -> None:
    text = inert("<b>x</b> @octocat [a](javascript:alert(1)) ![i](http://x/y.png) | https://evil.example\nnext")
    assert "<b>" not in text and "&lt;b&gt;" in text
    assert re.search(r"(?<!\\)@", text) is None
    assert "](" not in text and "![" not in text
    assert "://" not in text and "\n" not in text
    assert re.search(r"(?<!\\)\|", text) is None


def test_a_code_span_cannot_be_closed_early() -> None:
    assert code_span("src/a.py:3") == "`src/a.py:3`"
    span = code_span("we`ird``name.py")
    assert span.startswith("```") and span.endswith("```") and "we`ird``name.py" in span
    assert code_span("`edge`") == "`` `edge` ``"
    assert code_span("a|b\nc") == "`a\\|b?c`"
