"""Safe Markdown on a stream: hostile Markdown split anywhere never renders a script link or raw HTML, and
ordinary Markdown passes unchanged. The output is checked by a real CommonMark parser (markdown-it-py, HTML on,
tables on, link validation off so that every link it would make is seen)."""

from __future__ import annotations

import itertools
import re

import lxml.html  # type: ignore[import-untyped]
from hypothesis import given
from hypothesis import strategies as st

from bitbd.answer.markdown import MarkdownSanitizer, sanitize
from tests.markdown import _MD, HOSTILE, HOSTILE_TEXT, ORDINARY_TEXT, unsafe_parts


def streamed(text: str, cuts: list[int]) -> list[str]:
    cleaner = MarkdownSanitizer()
    bounds = [0, *sorted(c % (len(text) + 1) for c in cuts), len(text)]
    deltas = [cleaner.feed(text[a:b]) for a, b in itertools.pairwise(bounds)]
    return [*deltas, cleaner.close()]


def test_the_reported_answer() -> None:
    out = sanitize("[Verify your account](javascript:fetch(...)) <img src=x onerror=alert(1)>")
    assert out == "[Verify your account] &lt;img src=x onerror=alert(1)>"


def rendered_attributes(markdown: str) -> list[tuple[str, str, str]]:
    """(tag, attribute, value) of every element a CommonMark renderer (raw HTML on) makes of `markdown`."""
    html = _MD.render(markdown)
    if not html.strip():
        return []
    tree = lxml.html.fragment_fromstring(html, create_parent="div")
    return [(el.tag, name, value) for el in tree.iter() if isinstance(el.tag, str) for name, value in el.items()]


def test_each_hostile_piece_alone() -> None:
    for piece in HOSTILE:
        out = sanitize(piece)
        assert unsafe_parts(out) == [], (piece, out)
        # Checked again on the HTML a renderer writes: a script scheme left in the answer is only ever text (escaped
        # or in code), never an attribute's value, and no element has an event handler or comes from raw HTML.
        for tag, name, value in rendered_attributes(out):
            assert tag in ("a", "img", "code", "ol", "th", "td"), (piece, out, tag)
            assert not name.lower().startswith("on"), (piece, out, name)
            target = re.sub(r"[\x00-\x20\x7f]", "", value).lower()
            assert not target.startswith(("javascript:", "vbscript:", "data:")), (piece, out, name, value)


@given(HOSTILE_TEXT, st.lists(st.integers(0, 10_000), max_size=8))
def test_hostile_markdown_split_anywhere_renders_nothing_unsafe(text: str, cuts: list[int]) -> None:
    deltas = streamed(text, cuts)
    answer = "".join(deltas)
    assert unsafe_parts(answer) == [], (text, answer)
    assert answer == sanitize(text), "the same answer however it was split"
    for k in range(1, len(deltas)):  # a client rendering the answer as it streams in
        assert unsafe_parts("".join(deltas[:k])) == [], (text, deltas[:k])


@given(st.text(max_size=80), st.lists(st.integers(0, 10_000), max_size=6))
def test_any_text_split_anywhere_renders_nothing_unsafe(text: str, cuts: list[int]) -> None:
    answer = "".join(streamed(text, cuts))
    assert unsafe_parts(answer) == [], (text, answer)


@given(st.one_of(HOSTILE_TEXT, st.text(max_size=60)))
def test_safe_markdown_stays_as_it_is(text: str) -> None:
    """Sanitising an answer again (as a cached answer is on the way out) changes nothing: no later edit can turn
    what was decided safe into something else."""
    once = sanitize(text)
    assert sanitize(once) == once, (text, once)


@given(ORDINARY_TEXT, st.lists(st.integers(0, 10_000), max_size=8))
def test_ordinary_markdown_passes_unchanged(text: str, cuts: list[int]) -> None:
    assert "".join(streamed(text, cuts)) == text


def test_a_split_character_by_character_is_held_only_as_long_as_needed() -> None:
    cleaner = MarkdownSanitizer()
    sent = [cleaner.feed(ch) for ch in "Plain words [1] and more."]
    assert "".join(sent) + cleaner.close() == "Plain words [1] and more."
    assert sent[:5] == list("Plain"), "plain text is not held back"
