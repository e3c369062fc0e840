"""Structure-aware chunking: split Markdown on headings and paragraphs, bounded by embedder tokens."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from semantic_text_splitter import MarkdownSplitter

from bitbd.interfaces import Chunk

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)
_MARKDOWN = MarkdownIt("commonmark")
# Sections at this heading level and deeper are chunks of their own, never absorbed into the section above: they
# are documented terms (a function, an option: see bitbd/ingest/html_text.py), looked up one at a time.
TERM_LEVEL = 5
_CHARS_PER_TOKEN = 4
_SUMMARY_CHARS = 200  # only when the embedder has no tokenizer to count with


@dataclass(frozen=True)
class ChunkText:
    """A chunk's text and the headings it sits under, before `to_chunks()` gives it a position and hash."""

    heading_path: list[str]
    text: str


@dataclass
class _Section:
    level: int  # 0 for text before the first heading
    path: list[str]
    text: str


class Chunker:
    """Deterministic: the same text always gives the same chunks.

    The text is cut at every heading; a section absorbs its following subsections while they fit in one chunk,
    so a chunk never spans two sibling sections and its heading path is the one it really sits under. Documented
    terms (headings of level TERM_LEVEL and deeper) are never absorbed: each is a chunk under its own heading. A
    section too big for one chunk is split on paragraphs, then sentences, with overlap.
    """

    def __init__(self, target_tokens: int, overlap: int, tokenizer: Any | None = None) -> None:
        overlap = min(overlap, target_tokens // 2)
        self.target = target_tokens
        self._tokenizer = tokenizer
        if tokenizer is not None:
            self._splitter = MarkdownSplitter.from_huggingface_tokenizer(tokenizer, target_tokens, overlap)
        else:
            self._splitter = MarkdownSplitter(target_tokens * _CHARS_PER_TOKEN, overlap * _CHARS_PER_TOKEN)

    def tokens(self, text: str) -> int:
        """Tokens in `text` by the embedder's tokenizer, or estimated at 4 characters a token without one."""
        if self._tokenizer is None:
            return len(text) // _CHARS_PER_TOKEN + 1
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def split(self, text: str) -> list[ChunkText]:
        """The text's chunks, in order: sections grouped and split to the target size; a chunk that is
        only a heading is dropped (its heading path says it)."""
        out = []
        for group in self._groups(_sections(text)):
            for piece in self._splitter.chunks(group.text):
                body = piece.strip()
                if body and not _HEADING.fullmatch(body):  # a lone heading is already in the path
                    out.append(ChunkText(group.path, body))
        return out

    def _groups(self, sections: list[_Section]) -> list[_Section]:
        groups: list[_Section] = []
        for section in sections:
            last = groups[-1] if groups else None
            if (
                last is not None
                and 0 < last.level < section.level < TERM_LEVEL
                and self.tokens(last.text) + self.tokens(section.text) <= self.target
            ):
                last.text = f"{last.text}\n\n{section.text}"
            else:
                groups.append(_Section(section.level, section.path, section.text))
        return groups


def counting_tokenizer(path: Path) -> Any | None:
    """The `tokenizers.Tokenizer` in `path` (a tokenizer.json) without truncation or padding, to count tokens when
    chunking; None if there is no such file. For embedder plugins' `tokenizer()`."""
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    return tok


def _sections(text: str) -> list[_Section]:
    """The text cut at its headings, as a Markdown parser sees them: a `#` line inside fenced code (a shell
    comment) is not a heading; setext headings (a line underlined with === or ---) are."""
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    headings: list[tuple[int, int, str]] = []  # (start offset, level, title)
    tokens = _MARKDOWN.parse(text)
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and token.map is not None:
            title = " ".join(tokens[i + 1].content.split())
            if title:
                headings.append((offsets[token.map[0]], int(token.tag[1]), title))
    sections = []
    head = text[: headings[0][0]] if headings else text
    if head.strip():
        sections.append(_Section(0, [], head.strip()))
    path: list[tuple[int, str]] = []
    for i, (start, level, title) in enumerate(headings):
        path = [p for p in path if p[0] < level] + [(level, title)]
        end = headings[i + 1][0] if i + 1 < len(headings) else len(text)
        body = text[start:end].strip()  # the heading line stays in the text the splitter sees
        sections.append(_Section(level, [t for _, t in path], body))
    return sections


def to_chunks(pieces: list[ChunkText]) -> list[Chunk]:
    """Positions and content hashes; identical pieces in one document are kept once."""
    seen: set[str] = set()
    chunks: list[Chunk] = []
    for piece in pieces:
        digest = hashlib.sha256("\x1f".join([*piece.heading_path, piece.text]).encode()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        chunks.append(Chunk(len(chunks), piece.text, digest, piece.heading_path))
    return chunks


def summary(text: str) -> str:
    """What a document is about in its own words: its first paragraph of prose (a man page's NAME line, an
    article's opening), at most ~200 characters; "" if it has none."""
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        if (
            not lines
            or lines[0].startswith(("#", "```", "~~~", "|", "-", "*", ">", "<"))
            or set(lines[0]) <= set("-=_*")
        ):
            continue
        flat = " ".join(" ".join(lines).replace("`", "").split())
        if len(flat) < 20:
            continue
        return flat if len(flat) <= _SUMMARY_CHARS else flat[:_SUMMARY_CHARS].rsplit(" ", 1)[0] + "…"
    return ""


def embedding_text(title: str, chunk: Chunk, about: str = "") -> str:
    """What the embedder sees: the document title, what the document is about (`summary()`) and the heading
    path give a chunk its context (a user asking "how do I get rid of untracked files" finds the options of
    git-clean, whose page says "Remove untracked files from the working tree")."""
    context = " > ".join([t for t in [title, *chunk.heading_path] if t])
    if about:
        context = f"{context}\n{about}" if context else about
    return f"{context}\n\n{chunk.text}" if context else chunk.text
