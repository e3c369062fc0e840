"""Small pieces of CommonMark syntax the streaming sanitizer (`bitbd/answer/markdown.py`) reads: fences, link
tails and titles, and how to wait for text that has not arrived yet."""

from __future__ import annotations

import re
from dataclasses import dataclass

PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


class Wait(Exception):
    """More input is needed to decide what the text at this position is."""


@dataclass
class Fence:
    """The fence of an open fenced code block: its character (a backtick or `~`), run length and indent."""

    char: str
    length: int
    indent: int


def tail(s: str, i: int, p: int, end: int) -> str:
    """A kept link's `(destination "title")` (or a definition's `: destination`), s[i:end] with the destination
    at p, with every `[`, `]`, backtick and `<` backslash-escaped (but an angle-bracketed destination's own `<`).
    A renderer that reads it as a link decodes the escapes and sees the same URL and title; one that reads it as
    text (a `]` without its `[`, a "definition" inside a paragraph) finds no link, code span or tag in it."""
    own = p if s.startswith("<", p) else -1
    out, k = [], i
    while k < end:
        ch = s[k]
        if ch == "\\" and k + 1 < end and s[k + 1] in PUNCT:
            out.append(s[k : k + 2])
            k += 2
            continue
        out.append("\\" + ch if ch in "[]`<" and k != own else ch)
        k += 1
    return "".join(out)


def title_may_go_on(s: str, q: int) -> bool:
    """A link title opened at q and not closed by the end of what has arrived (markdown-it-py 4 says so itself as
    `can_continue`; 3.0 does not)."""
    closer = {'"': '"', "'": "'", "(": ")"}.get(s[q])
    k = q + 1
    while closer is not None and k < len(s):
        if s[k] == "\\":
            k += 2
            continue
        if s[k] == closer or (closer == ")" and s[k] == "("):
            return False
        k += 1
    return closer is not None and not re.search(r"\n[ \t]*\n", s[q:])


def arrived(s: str, p: int, final: bool) -> bool:
    """Whether s[p] is there; waits for it unless the text ends here."""
    if p < len(s):
        return True
    if not final:
        raise Wait
    return False


def skip_space(s: str, p: int, newlines: int) -> int:
    """The position after the spaces and tabs from p, crossing at most `newlines` line breaks."""
    while p < len(s) and s[p] in " \t\n":
        if s[p] == "\n":
            if newlines == 0:
                break
            newlines -= 1
        p += 1
    return p


def fence_like(text: str) -> bool:
    """Whether an unfinished line may still turn out to open a fence (at most 3 spaces in, then three
    backticks or tildes, or fewer so far)."""
    body = text.lstrip(" ")
    return len(text) - len(body) <= 3 and (body[:3] in ("```", "~~~") or (len(body) < 3 and set(body) <= {"`", "~"}))


def opening_fence(line: str) -> Fence | None:
    """The fence a line opens (at most 3 spaces in, then 3 or more backticks or tildes), or None; a
    backtick in a backtick fence's info string makes it inline code, not a fence."""
    expanded = line.rstrip("\n").expandtabs(4)
    body = expanded.lstrip(" ")
    indent = len(expanded) - len(body)
    if indent > 3 or body[:3] not in ("```", "~~~"):
        return None
    char = body[0]
    length = len(body) - len(body.lstrip(char))
    if char == "`" and "`" in body[length:]:
        return None  # an info string with a backtick: inline code, not a fence
    return Fence(char, length, indent)
