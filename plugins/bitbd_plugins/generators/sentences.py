"""The prose sentences of a Markdown chunk, for the extractive generator: where each stands (paragraph, lead of a
section), its words, and nothing an answer must not carry (headings, code, tables, fragments cut at a chunk's
edge, version-change notes, permalink marks, Markdown marks and escapes)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

# Words that say nothing about what a question is about (NLTK's English list, shortened to what questions use).
STOP = frozenset(
    """a about above after again all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have having he her
here hers him his how i if in into is it its itself just me more most my no nor not now of off on once only or
other our out over own same she should so some such than that the their them then there these they this those
through to too under until up very was we were what when where which while who whom why will with would you your
get use using tell know want need please explain show""".split()
)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:[.'-][A-Za-z0-9_]+)*")
_SENTENCE_END = re.compile(
    r"(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\betc\.)(?<!\bcf\.)(?<!\bvs\.)(?<=[.!?])\s+"
    r"(?=[\"'(\[]?[A-Z0-9`*_])"
)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__|\*)")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>])")
_ENDED = re.compile(r"[.!?][\"')\]]*$")
_PIPED_CODE = re.compile(r"`([^`]*\|[^`]*)`")
_PLACEHOLDER = re.compile(r"(\S*<[^<>\s`]{1,40}>\S*?)(?=[\s,;:)]|\.(?:\s|$)|$)")
_ITEM = re.compile(r"^([-*+]|\d+[.)])\s+")
# Notes about the history of a feature, not about what it does: never an answer.
_HISTORY = re.compile(
    r"^(?:(?:Changed|New|Added) in version|Deprecated since version|Deprecated in|Removed in "
    r"version|Since version)\b",
    re.IGNORECASE,
)
# A sentence may open with an identifier ("os.path.join() joins…", "git-stash - Stash…") but not with a plain
# lowercase word: that is the tail of a sentence cut at a chunk's edge ("self instance argument is included…").
_IDENTIFIER_START = re.compile(r"^[a-z][\w]*(?:[._\-(][\w()]*|\(\))")
_MIN_CHARS, _MAX_CHARS = 25, 500
_TERM_LEVEL = 5  # headings this deep are documented terms (bitbd.ingest.chunking.TERM_LEVEL): an API, an option
_TERM_KIND = re.compile(
    r"^(?:@|(?:class|exception|coroutine|async|await|abstractmethod|classmethod|staticmethod|"
    r"method|function|attribute|property|data)\s+)+"
)
_CODE_LIKE = re.compile(r"[._\-()<>/:]|^[a-z0-9]+$")  # a name as code is written, not a capitalised word
_CODE_LINES, _CODE_CHARS = 4, 240  # a code block shown with the sentence that introduces it at most


@dataclass(frozen=True)
class Sentence:
    """One prose sentence of a chunk, with what ranking it needs: its stems, where it stands (paragraph,
    position, lead of a section), its heading's stems, and the code or documented term it carries."""

    text: str
    terms: frozenset[str]
    paragraph: int  # index of its paragraph in the chunk: neighbours share one
    position: int  # index of the sentence in the chunk
    lead: bool  # the first sentence after a heading: what the section is about
    heading: frozenset[str]  # the terms of the heading it sits under in the chunk (none before the first)
    context: str  # the sentence as it is read: under its heading ("heading: sentence")
    code: str = ""  # the short code block a lead-in sentence ("…run the venv module as a script:") introduces
    subject: str = ""  # what a section's lead sentence is about when it does not name it: the documented term
    # ("json.load()" for "Deserialize fp to a Python object…" under "json.load(fp, *, cls=None, …)")


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
    for index, (paragraph, heading, after_heading, code, level) in enumerate(_paragraphs(chunk)):
        first = True
        heading_terms = terms(heading)
        name = term_name(heading) if level >= _TERM_LEVEL else ""
        for sentence, shown in _sentences(paragraph, code):
            if sentence not in seen:
                seen.add(sentence)
                lead = after_heading and first
                subject = name if lead and name and name.rstrip("()") not in sentence else ""
                out.append(
                    Sentence(
                        sentence,
                        terms(sentence),
                        index,
                        len(out),
                        lead,
                        heading_terms,
                        f"{heading}: {sentence}" if heading else sentence,
                        shown,
                        subject,
                    )
                )
            first = False
    return tuple(out)


def term_name(heading: str) -> str:
    """The name a documented term's heading gives, short: "json.load()" for "json.load(fp, *, cls=None, …)",
    "csv.DictReader()" for "class csv.DictReader(f, …)", "pop" for git's "pop [--index] [<stash>]", "--all";
    "" when the heading is not a name (a phrase)."""
    token, _, rest = _TERM_KIND.sub("", heading.strip()).partition(" ")
    name, call, _ = token.partition("(")
    name = name.split("[", 1)[0]
    if not call and rest and not rest.startswith(("[", "<")):
        return ""  # "Use of the library": words, not a name
    if not 0 < len(name) <= 60 or not _CODE_LIKE.search(name):
        return ""
    return name + ("()" if call else "")


def split_sentences(markdown: str) -> list[str]:
    """The prose sentences of a chunk, in order."""
    return [s.text for s in analysed(markdown)]


def _sentences(paragraph: str, code: str) -> list[tuple[str, str]]:
    """Each kept sentence, with the code block it introduces (only the paragraph's last, ending in ":")."""
    kept: list[tuple[str, str]] = []
    pieces = _SENTENCE_END.split(_LINK.sub(r"\1", paragraph))
    for i, raw in enumerate(pieces):
        marked = raw.lstrip().startswith(("`", "*"))  # opens with code or an emphasised name: an identifier
        sentence = " ".join(_EMPHASIS.sub("", _ESCAPE.sub(r"\1", raw)).replace("¶", "").split())
        if sentence.count("`") % 2:  # code cut by the sentence split: no code marks at all
            sentence = sentence.replace("`", "")
        # Code holding a pipe is sent escaped (a table cell would split it: bitbd/answer/markdown.py): as text.
        sentence = _PIPED_CODE.sub(r"\1", sentence)
        # A placeholder outside code ("branch.<name>.remote") is code: as text the answer's sanitizer would
        # escape its "<" (visitors read "&lt;name>").
        sentence = "`".join(
            part if i % 2 else _PLACEHOLDER.sub(r"`\1`", part) for i, part in enumerate(sentence.split("`"))
        )
        if (
            code
            and i == len(pieces) - 1
            and sentence.endswith(":")
            and len(sentence) >= _MIN_CHARS
            and not _HISTORY.match(sentence)
        ):
            kept.append((sentence, code))  # "To create one, run the venv module as a script:" and its code
            continue
        ended = _ENDED.search(sentence) is not None
        # An unterminated line can stand alone (a list item), unless it leads into what follows ("so that:").
        last = sentence.rstrip(":;,").rsplit(" ", 1)[-1].lower()
        dangling = sentence.endswith((":", ",", ";")) or last in STOP
        if not (_MIN_CHARS <= len(sentence) <= _MAX_CHARS and " " in sentence):
            continue
        if not (ended or (len(sentence) >= 40 and not dangling)) or _HISTORY.match(sentence):
            continue
        if sentence[0].islower() and not (marked or _IDENTIFIER_START.match(sentence)):
            continue
        kept.append((sentence if ended else sentence + ".", ""))
    return kept


def _paragraphs(markdown: str) -> list[tuple[str, str, bool, str, int]]:
    """Runs of prose lines, each with the heading it sits under, whether it directly follows it, the short code
    block right after it (if any) and the heading's level; a blank line, heading, list item, table row or code
    block ends one."""
    reader = _Reader()
    for raw in markdown.splitlines():
        reader.line(raw)
    reader.flush()
    return reader.paragraphs


class _Reader:
    def __init__(self) -> None:
        self.paragraphs: list[tuple[str, str, bool, str, int]] = []
        self.level = 0
        self.current: list[str] = []
        self.code: list[str] | None = None  # lines of the code block being read
        self.heading = ""
        self.after_heading = False
        self.after_paragraph = False  # nothing but blank lines since the last paragraph

    def flush(self) -> None:
        if self.current:
            self.paragraphs.append((" ".join(self.current), self.heading, self.after_heading, "", self.level))
            self.current.clear()
            self.after_heading = False
            self.after_paragraph = True

    def fence(self) -> None:
        if self.code is None:
            self.flush()
            self.code = []
            return
        block = "\n".join(self.code).strip("\n")
        # A short code block just after a paragraph belongs to its last sentence, if that leads into it.
        # (Not an interactive session: prompts and printed results are not what to type.)
        if (
            self.after_paragraph
            and block
            and len(self.code) <= _CODE_LINES
            and len(block) <= _CODE_CHARS
            and self.paragraphs[-1][0].rstrip().endswith(":")
            and not block.lstrip().startswith(">>>")
        ):
            self.paragraphs[-1] = (*self.paragraphs[-1][:3], block, self.paragraphs[-1][4])
        self.code = None
        self.after_paragraph = False

    def line(self, raw: str) -> None:
        line = raw.strip()
        if line.startswith(("```", "~~~")):
            self.fence()
        elif self.code is not None:
            self.code.append(raw.rstrip())
        elif line.startswith("#"):
            self.flush()
            self.heading, self.after_heading, self.after_paragraph = line.lstrip("#").strip(), True, False
            self.level = len(line) - len(line.lstrip("#"))
        elif not line:
            self.flush()
        elif line.startswith(("|", ">>>", "$ ")) or raw.startswith("    ") or set(line) <= set("-=*_"):
            self.flush()
            self.after_paragraph = False
        else:
            item = _ITEM.match(line)
            if item:
                self.flush()
                self.after_paragraph = False
                line = line[item.end() :]
            self.current.append(line)
