"""The prose sentences of a Markdown chunk, for the extractive generator: where each stands (paragraph, lead of a
section), its words, and nothing an answer must not carry (headings, code, tables, fragments cut at a chunk's
edge, version-change notes, permalink marks, Markdown marks and escapes)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

# Words that say nothing about what a question is about (NLTK's English list, shortened to what questions use).
STOP = frozenset("""a about above after again all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have having he her
here hers him his how i if in into is it its itself just me more most my no nor not now of off on once only or
other our out over own same she should so some such than that the their them then there these they this those
through to too under until up very was we were what when where which while who whom why will with would you your
get use using tell know want need please explain show""".split())
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:[.'-][A-Za-z0-9_]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9`*_])")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|`)")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>])")
_ENDED = re.compile(r"[.!?][\"')\]]*$")
_ITEM = re.compile(r"^([-*+]|\d+[.)])\s+")
# Notes about the history of a feature, not about what it does: never an answer.
_HISTORY = re.compile(r"^(?:(?:Changed|New|Added) in version|Deprecated since version|Deprecated in|Removed in "
                      r"version|Since version)\b", re.IGNORECASE)
# A sentence may open with an identifier ("os.path.join() joins…", "git-stash - Stash…") but not with a plain
# lowercase word: that is the tail of a sentence cut at a chunk's edge ("self instance argument is included…").
_IDENTIFIER_START = re.compile(r"^[a-z][\w]*(?:[._\-(][\w()]*|\(\))")
_MIN_CHARS, _MAX_CHARS = 25, 500


@dataclass(frozen=True)
class Sentence:
    text: str
    terms: frozenset[str]
    paragraph: int  # index of its paragraph in the chunk: neighbours share one
    position: int  # index of the sentence in the chunk
    lead: bool  # the first sentence after a heading: what the section is about
    heading: frozenset[str]  # the terms of the heading it sits under in the chunk (none before the first)
    context: str  # the sentence as it is read: under its heading ("heading: sentence")


_STEMMER = snowballstemmer.stemmer("english")


# Stemming is pure Python and was half of the server's CPU per answer under load (py-spy, perf/RESULTS.md):
# words and popular chunks recur, so both are remembered (bounded; the event loop is the only caller). An analysed
# chunk costs ~10 KB (tracemalloc on the Python docs): 1,024 of them keep the popular ones in ~10-30 MB.
@lru_cache(maxsize=50_000)
def _stem(word: str) -> str:
    return str(_STEMMER.stemWord(word))


def terms(text: str) -> frozenset[str]:
    """The stems of a text's content words."""
    return frozenset(_stem(w) for w in (w.lower() for w in _WORD.findall(text)) if w not in STOP and len(w) > 1)


@lru_cache(maxsize=1024)
def analysed(chunk: str) -> tuple[Sentence, ...]:
    """A chunk's sentences, each once, with their terms and places."""
    out: list[Sentence] = []
    seen: set[str] = set()
    for index, (paragraph, heading, after_heading) in enumerate(_paragraphs(chunk)):
        first = True
        heading_terms = terms(heading)
        for sentence in _sentences(paragraph):
            if sentence not in seen:
                seen.add(sentence)
                out.append(Sentence(sentence, terms(sentence), index, len(out), after_heading and first,
                                    heading_terms, f"{heading}: {sentence}" if heading else sentence))
            first = False
    return tuple(out)


def split_sentences(markdown: str) -> list[str]:
    """The prose sentences of a chunk, in order."""
    return [s.text for s in analysed(markdown)]


def _sentences(paragraph: str) -> list[str]:
    text = _EMPHASIS.sub("", _ESCAPE.sub(r"\1", _LINK.sub(r"\1", paragraph))).replace("¶", "")
    kept = []
    for sentence in _SENTENCE_END.split(text):
        sentence = " ".join(sentence.split())
        ended = _ENDED.search(sentence) is not None
        # An unterminated line can stand alone (a list item), unless it leads into what follows ("so that:").
        last = sentence.rstrip(":;,").rsplit(" ", 1)[-1].lower()
        dangling = sentence.endswith((":", ",", ";")) or last in STOP
        if not (_MIN_CHARS <= len(sentence) <= _MAX_CHARS and " " in sentence):
            continue
        if not (ended or (len(sentence) >= 40 and not dangling)) or _HISTORY.match(sentence):
            continue
        if sentence[0].islower() and not _IDENTIFIER_START.match(sentence):
            continue
        kept.append(sentence if ended else sentence + ".")
    return kept


def _paragraphs(markdown: str) -> list[tuple[str, str, bool]]:
    """Runs of prose lines, each with the heading it sits under and whether it directly follows it; a blank line,
    heading, list item, table row or code block ends one."""
    paragraphs: list[tuple[str, str, bool]] = []
    current: list[str] = []
    in_code = False
    heading = ""
    after_heading = False

    def flush() -> None:
        nonlocal after_heading
        if current:
            paragraphs.append((" ".join(current), heading, after_heading))
            current.clear()
            after_heading = False

    for raw in markdown.splitlines():
        line = raw.strip()
        if line.startswith(("```", "~~~")):
            flush()
            in_code = not in_code
            continue
        if in_code:
            continue
        if line.startswith("#"):
            flush()
            heading, after_heading = line.lstrip("#").strip(), True
            continue
        if not line or line.startswith(("|", ">>>", "$ ")) or raw.startswith("    ") or set(line) <= set("-=*_"):
            flush()
            continue
        item = _ITEM.match(line)
        if item:
            flush()
            line = line[item.end():]
        current.append(line)
    flush()
    return paragraphs
