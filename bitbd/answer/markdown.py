"""Answers are Markdown that is safe to render, made so on the stream of deltas as they arrive.

What passes (docs/protocol.md, "What an answer may contain"):
- link targets `http:`, `https:` and `mailto:` only (inline links, autolinks; reference definitions, which may
  also serve images, `http:` and `https:`); any other target (`javascript:`, `data:`, `vbscript:`, relative) is
  dropped and the link text kept as text;
- image sources `http:` and `https:` only; otherwise the image's `(source)` is dropped;
- no raw HTML: a `<` that would open a tag, comment, declaration or processing instruction is written `&lt;`
  (so it shows as the character it is); safe autolinks such as `<https://example.com>` stay;
- code is left as it is: fenced code blocks (at most 3 spaces in) and code spans on one line. Backtick runs that
  do not open such a span are escaped, so that no renderer can pair them differently from how they were read.

Links are parsed with markdown-it-py's own CommonMark helpers (destinations, titles, entity and escape
decoding). The scanner holds back only what it cannot decide yet (an unfinished `<...`, `](...)`, backtick run or
fence line), at most `_HOLD` characters; past that it decides as if the answer had ended there, which is always
the safe reading. Where it is unsure whether a fenced block still runs, it stops trusting fences for the rest of
the answer (their content is then escaped like text: uglier, never unsafe).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from markdown_it.common.utils import unescapeAll
from markdown_it.helpers import parseLinkDestination, parseLinkTitle

from bitbd.answer.markdown_syntax import (
    PUNCT,
    Fence,
    Wait,
    arrived,
    fence_like,
    opening_fence,
    skip_space,
    tail,
    title_may_go_on,
)

SAFE_MARKDOWN = 1  # the rules' version: cached answers are only shared by servers applying the same ones
LINK_SCHEMES = ("http://", "https://", "mailto:")
IMAGE_SCHEMES = ("http://", "https://")
# A definition may serve an image (`![a][ref]`) as well as a link: held to the images' rule.
DEFINITION_SCHEMES = IMAGE_SCHEMES
_HOLD = 2048  # most characters held back waiting for a construct to end
_BRACKETS = 64  # open brackets remembered (deeper nesting is treated as plain links)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*:")
_CONTROL = re.compile(r"[\x00-\x20\x7f]+")  # browsers drop tabs and newlines inside URLs, and trim the rest
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.\-]{1,31}:[^<>\x00-\x20]*)>")
_EMAIL = re.compile(
    r"<([a-zA-Z0-9.!#$%&'*+/=?^_`{|}~\-]+@[a-zA-Z0-9](?:[a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?)*)>"
)
_AUTOLINK_SO_FAR = re.compile(
    r"<[A-Za-z][A-Za-z0-9+.\-]*(:[^<>\x00-\x20]*)?$|<[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~\-]+"
    r"(@[a-zA-Z0-9.\-]*)?$"
)
_LEAD = frozenset(" \t>-*+.)0123456789")  # what may precede a reference definition's `[` on its line


def allowed(url: str, schemes: tuple[str, ...] = LINK_SCHEMES) -> bool:
    """Whether a link destination, decoded as a renderer decodes it (escapes and entities), is allowed."""
    return _CONTROL.sub("", url).lower().startswith(schemes)


def bad_scheme(raw: str) -> bool:
    """A destination-looking text with a scheme that is not allowed (for text that only a lax renderer links)."""
    url = _CONTROL.sub("", unescapeAll(raw)).lower()
    return bool(_SCHEME.match(url)) and not url.startswith(LINK_SCHEMES)


def sanitize(text: str) -> str:
    """A whole answer at once (the same result as feeding it in any pieces)."""
    cleaner = MarkdownSanitizer()
    return cleaner.feed(text) + cleaner.close()


@dataclass
class MarkdownSanitizer:
    """Feed it the deltas in order; it returns what may be sent so far. `close()` returns the rest."""

    _pending: str = ""
    _line_start: bool = True
    _lead: bool = True  # only spaces, `>` or list markers so far on this line
    _blank: bool = True  # the current line is blank so far
    _fence: Fence | None = None
    _fences_trusted: bool = True
    _brackets: list[tuple[bool, bool]] = field(default_factory=list)  # (image, at line lead) of each open `[`
    _closed: tuple[bool, bool] | None = None  # the bracket just closed by the last character written, if any
    _bang: bool = False  # the last character written was an unescaped `!`
    _eof: bool = False  # close() was called: a line without its newline is complete
    _cr: bool = False  # the last delta ended in "\r", which may be half of a "\r\n"

    def feed(self, delta: str) -> str:
        """Take the next delta; returns the safe text that may be sent now, holding back what is
        still undecided."""
        self._pending += self._lines(delta)
        return self._run(final=False)

    def close(self) -> str:
        """The answer ended: returns the safe rest of what was held back. Call it once, after the
        last `feed()`."""
        self._eof = True
        self._pending += self._lines("")
        return self._run(final=True)

    def _lines(self, delta: str) -> str:
        """Line endings as "\n" only: CommonMark also ends lines at "\r", which the scanner must not miss."""
        text = ("\r" if self._cr else "") + delta
        self._cr = text.endswith("\r") and not self._eof
        if self._cr:
            text = text[:-1]
        return text.replace("\r\n", "\n").replace("\r", "\n")

    def _run(self, final: bool) -> str:
        s, i = self._pending, 0
        out: list[str] = []
        while i < len(s):
            try:
                i = self._step(s, i, out, final or len(s) - i > _HOLD)
            except Wait:
                break
        self._pending = s[i:]
        return "".join(out)

    # -- one construct at s[i]; returns where the next one starts ------------------------------------------------

    def _step(self, s: str, i: int, out: list[str], final: bool) -> int:
        if self._line_start:
            end = self._line_at_start(s, i, out, final)
            if end is not None:
                return end
        c = s[i]
        if c == "\n":
            return self._newline(out, i)
        if c == "\\":
            return self._escape(s, i, out, final)
        if c == "`":
            return self._backticks(s, i, out, final)
        if c == "<":
            return self._angle(s, i, out, final)
        if c == "(" and self._closed is not None:
            return self._inline_target(s, i, out, final)
        if c == ":" and self._closed is not None and self._closed[1]:
            return self._definition(s, i, out, final)
        if c == "!" and i + 1 == len(s) and not final:
            raise Wait
        if c == "[":
            self._brackets = [*self._brackets[-_BRACKETS + 1 :], (self._bang, self._lead)]
            self._write(out, c)
            return i + 1
        if c == "]":
            closed = self._brackets.pop() if self._brackets else (False, False)
            self._write(out, c)
            self._closed = closed
            return i + 1
        self._write(out, c)
        self._bang = c == "!"
        return i + 1

    def _write(self, out: list[str], text: str, lead: bool = False) -> None:
        out.append(text)
        self._closed, self._bang, self._line_start = None, False, False
        self._lead = self._lead and (lead or all(ch in _LEAD for ch in text))
        self._blank = self._blank and not text.strip()

    def _newline(self, out: list[str], i: int) -> int:
        if self._blank:
            self._brackets = []  # a blank line ends the paragraph, and with it every open bracket
        out.append("\n")
        self._closed, self._bang = None, False
        self._line_start, self._lead, self._blank = True, True, True
        return i + 1

    # -- fenced code ---------------------------------------------------------------------------------------------

    def _line_at_start(self, s: str, i: int, out: list[str], final: bool) -> int | None:
        """Fence lines; None when the line is ordinary text (scanned character by character)."""
        if self._fence is None and not self._fences_trusted:
            return None
        newline = s.find("\n", i)
        if newline < 0 and not final:
            if self._fence is not None or fence_like(s[i:]):
                raise Wait
            return None
        end = len(s) if newline < 0 else newline + 1
        line = s[i:end]
        if self._fence is not None:
            return self._fence_content(line, end, out, newline < 0 and not self._eof)
        opening = opening_fence(line)
        if opening is None:
            return None
        if newline < 0 and len(s) - i > _HOLD:  # forced to decide on part of the line: it may not be a fence
            self._fences_trusted = False
            return None
        self._fence = opening
        self._brackets = []
        # The info string is only a language name to renderers; a `<` there is never needed.
        self._whole_line(out, line.replace("<", "&lt;"))
        return end

    def _fence_content(self, line: str, end: int, out: list[str], partial: bool) -> int | None:
        assert self._fence is not None
        fence = self._fence
        body = line.rstrip("\n").expandtabs(4)  # a tab indents to the next multiple of 4, as in CommonMark
        indent = len(body) - len(body.lstrip(" "))
        closing = body.strip(" ")
        if closing and set(closing) == {fence.char} and len(closing) >= fence.length and not partial:
            # The fence's container (a list item, say) starts its content at a column w we do not know, between
            # fence.indent - 3 and fence.indent; the line closes the fence if w <= indent <= w + 3.
            lowest = max(0, fence.indent - 3)
            if fence.indent <= indent <= lowest + 3:
                self._fence = None  # closes it, whichever w
                self._whole_line(out, line)
                return end
            if lowest <= indent <= fence.indent + 3:  # closes it for some w only: stop trusting fences
                self._fence, self._fences_trusted = None, False
                return None
        if body.strip() and (indent < fence.indent or partial):
            # Less indented than the fence: inside it only if the fence is not in a list item. Unsure: stop here.
            self._fence, self._fences_trusted = None, False
            return None
        self._whole_line(out, line)
        return end

    def _whole_line(self, out: list[str], line: str) -> None:
        out.append(line)
        self._closed, self._bang = None, False
        self._line_start = self._lead = self._blank = line.endswith("\n")

    # -- inline --------------------------------------------------------------------------------------------------

    def _escape(self, s: str, i: int, out: list[str], final: bool) -> int:
        if i + 1 == len(s):
            if not final:
                raise Wait
            self._write(out, "\\")
            return i + 1
        if s[i + 1] in PUNCT:
            self._write(out, s[i : i + 2])
            return i + 2
        self._write(out, "\\")
        return i + 1

    def _backticks(self, s: str, i: int, out: list[str], final: bool) -> int:
        n = len(s) - i - len(s[i:].lstrip("`"))
        if i + n == len(s) and not final:
            raise Wait  # the run may go on
        newline = s.find("\n", i + n)
        line_end = len(s) if newline < 0 else newline
        for match in re.finditer(r"`+", s[i + n : line_end]):
            if len(match.group()) == n:
                end = i + n + match.end()
                if end == len(s) and not final:
                    raise Wait  # the closing run may go on
                if "|" not in s[i:end]:  # a table cell would split it at the pipe
                    self._write(out, s[i:end])
                    return end
                break
        else:
            if newline < 0 and not final:
                raise Wait  # its closing run may still come on this line
        self._write(out, "\\`" * n)
        return i + n

    def _angle(self, s: str, i: int, out: list[str], final: bool) -> int:
        if i + 1 == len(s) and not final:
            raise Wait
        nxt = s[i + 1] if i + 1 < len(s) else ""
        if not nxt or not (nxt.isascii() and (nxt.isalnum() or nxt in "/!?.#$%&'*+=^_{|}~-")):
            self._write(out, "<")
            return i + 1
        close = s.find(">", i)
        candidate = s[i : close + 1] if close >= 0 else s[i:]
        link = _AUTOLINK.fullmatch(candidate) or _EMAIL.fullmatch(candidate)
        if link is not None and (link.re is _EMAIL or allowed(unescapeAll(link.group(1)))):
            self._write(out, candidate)
            return close + 1
        if close < 0 and not final and _AUTOLINK_SO_FAR.match(candidate):
            raise Wait
        self._write(out, "&lt;" if nxt.isalpha() or nxt in "/!?" else "<")
        return i + 1

    def _inline_target(self, s: str, i: int, out: list[str], final: bool) -> int:
        """`(` right after `]`: the `(destination "title")` of a link or image."""
        assert self._closed is not None
        image = self._closed[0]
        p = skip_space(s, i + 1, newlines=1)
        if p == len(s) and not final:
            raise Wait
        end = self._link_tail(s, p, final)
        if end is not None:
            dest = parseLinkDestination(s, p, len(s))
            if dest.ok and allowed(dest.str, IMAGE_SCHEMES if image else LINK_SCHEMES):
                self._write(out, tail(s, i, p, end))
                return end
            return end  # dropped; what follows comes right after the `]` again (self._closed stays)
        # Not a link. Written `\(`, so that nothing dropped further on can make it one; a bad scheme written
        # here is dropped as well, for laxer renderers.
        raw_end = p
        while raw_end < len(s) and not s[raw_end].isspace() and s[raw_end] != ")":
            raw_end += 1
        self._write(out, "\\(")
        if bad_scheme(s[p:raw_end]):
            return raw_end
        return i + 1

    def _link_tail(self, s: str, p: int, final: bool) -> int | None:
        """The end of `destination "title")` from p, or None if it is not one; waits while it may still be."""
        if p < len(s) and s[p] == ")":
            return p + 1
        dest = parseLinkDestination(s, p, len(s))
        if not dest.ok:
            angle = s.startswith("<", p)
            if not final and (
                (angle and ">" not in s[p:] and "\n" not in s[p:]) or (not angle and not _CONTROL.search(s, p))
            ):
                raise Wait  # a destination not closed yet (`<…`, or parentheses still open)
            return None
        if dest.pos == len(s) and not final:
            raise Wait
        q = skip_space(s, dest.pos, newlines=1)
        if not arrived(s, q, final):
            return None
        if s[q] == ")":
            return q + 1
        if q == dest.pos:
            return None  # a title needs space before it
        title = parseLinkTitle(s, q, len(s))
        if not title.ok:
            if not final and title_may_go_on(s, q):
                raise Wait
            return None
        r = skip_space(s, title.pos, newlines=0)
        return r + 1 if arrived(s, r, final) and s[r] == ")" else None

    def _definition(self, s: str, i: int, out: list[str], final: bool) -> int:
        """`:` right after a `[label]` that starts a line: a reference definition's destination."""
        p = skip_space(s, i + 1, newlines=1)
        newline = s.find("\n", p)
        if (p == len(s) or newline < 0) and not final:
            raise Wait  # decided on the whole line
        dest = parseLinkDestination(s, p, len(s))
        if not dest.ok or p == dest.pos:
            run = _CONTROL.search(s, p)
            run_end = run.start() if run else len(s)
            if bad_scheme(s[p:run_end]):
                return run_end
            self._write(out, "\\:")  # escaped: nothing dropped further on can make it a definition
            return i + 1
        rest = s[dest.pos : newline if newline >= 0 else len(s)]
        title = parseLinkTitle(rest, len(rest) - len(rest.lstrip(" \t")), len(rest)) if rest.strip() else None
        is_definition = not rest.strip() or (
            title is not None and title.ok and rest[:1] in " \t" and not rest[title.pos :].strip()
        )
        if not is_definition:
            if bad_scheme(s[p : dest.pos]):
                return dest.pos  # not a definition to CommonMark, but a laxer renderer might link it
            self._write(out, "\\:")  # text, scanned as such; escaped as above
            return i + 1
        if not allowed(dest.str, DEFINITION_SCHEMES):
            return dest.pos  # dropped with its `:`; the label stays, as text
        self._write(out, tail(s, i, p, dest.pos))
        return dest.pos
