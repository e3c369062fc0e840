"""Question files for `bitbd eval`: each question with the pages that answer it and what its answer must say.

JSONL, one object per line::

    {"question": "how do I reset my password?", "urls": ["/help/account.html"], "answer": "forgot password"}
    {"question": "what is the capital of France?", "refuse": true}

or TSV, one question per line: the question, the expected URLs (separated by spaces), and optionally a regex
the answer must match, or the word `refuse` (then the URLs column is empty). Lines starting with `#` and blank
lines are skipped in both.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitbd.errors import BitbdError

_MARKER = re.compile(r"\s*\[\d{1,3}\]")
_MARKS = re.compile(r"\*\*|__|`|\\(?=[\\`*_{}\[\]()#+\-.!|])")


class QuestionFileError(BitbdError):
    """A question file that cannot be read; the message names the line and what is wrong with it."""


@dataclass(frozen=True)
class Question:
    """One question of a question file: the pages that answer it and what its answer must say, or that
    it must be refused; `line` is where it stands in the file."""

    text: str
    urls: tuple[str, ...] = ()  # pages that answer it; a hit matches if its URL equals or ends with one
    answer: re.Pattern[str] | None = None  # what an answer must say (searched case-insensitively)
    refuse: bool = False  # off-topic: must be refused, as an opening question and as a follow-up
    line: int = 0

    def answered_by(self, url: str) -> bool:
        """Whether a hit or source on `url` is on a page that answers the question: the URL without its
        fragment equals an expected URL, or ends with it after a `/` or `:` (`library/csv.html` matches
        `http://docs.example/library/csv.html`, `returns.md` matches the upload `upload:returns.md`)."""
        page = url.split("#", 1)[0]
        return any(page == u or (page.endswith(u) and (u[0] in "/:" or page[-len(u) - 1] in "/:")) for u in self.urls)

    def has_fact(self, answer: str) -> bool:
        """Whether the answer, without citation markers and Markdown marks (`plain()`), matches the
        question's regex; False when it has none."""
        return self.answer is not None and self.answer.search(plain(answer)) is not None


def plain(answer: str) -> str:
    """An answer as its fact is matched: without citation markers, Markdown marks and repeated whitespace."""
    return " ".join(_MARKS.sub("", _MARKER.sub("", answer)).split())


def load(path: Path) -> list[Question]:
    """The questions of a JSONL or TSV file (by its suffix: `.jsonl`/`.json` or `.tsv`/`.txt`)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise QuestionFileError(f"cannot read {path}: {e}") from None
    jsonl = path.suffix.lower() in (".jsonl", ".json", ".ndjson")
    if not jsonl and path.suffix.lower() not in (".tsv", ".txt"):
        raise QuestionFileError(
            f"{path}: name it .jsonl (one JSON object per line) or .tsv (question, URLs, "
            "regex or refuse, separated by tabs)"
        )
    questions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            fields = _json_fields(line) if jsonl else _tsv_fields(line)
            questions.append(_question(number, **fields))
        except ValueError as e:
            raise QuestionFileError(f"{path}:{number}: {e}") from None
    if not [q for q in questions if not q.refuse]:
        raise QuestionFileError(f"{path}: no on-topic questions (with expected URLs); nothing to measure")
    return questions


def _json_fields(line: str) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(data, dict):
        raise ValueError('each line must be a JSON object such as {"question": "...", "urls": ["..."]}')
    unknown = set(data) - {"question", "urls", "answer", "refuse"}
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(sorted(unknown))}; the fields are question, urls, answer and refuse"
        )
    urls = data.get("urls", [])
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ValueError("urls must be a list of strings")
    refuse = data.get("refuse", False)
    if not isinstance(refuse, bool):
        raise ValueError("refuse must be true or false")
    answer = data.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise ValueError("answer must be a regular expression, as a string")
    question = data.get("question")
    if not isinstance(question, str):
        raise ValueError("question is missing, or not a string")
    return {"text": question, "urls": urls, "answer": answer, "refuse": refuse}


def _tsv_fields(line: str) -> dict[str, Any]:
    cells = line.split("\t")
    if len(cells) > 3:
        raise ValueError(f"{len(cells)} tab-separated columns; there are at most 3 (question, URLs, regex or refuse)")
    text, urls, last = [*cells, "", ""][:3]
    refuse = last.strip() == "refuse"
    return {
        "text": text,
        "urls": urls.split(),
        "answer": None if refuse or not last.strip() else last.strip(),
        "refuse": refuse,
    }


def _question(line: int, text: str, urls: list[str], answer: str | None, refuse: bool) -> Question:
    text = text.strip()
    if not text:
        raise ValueError("the question is empty")
    urls = [u.strip() for u in urls if u.strip()]
    if refuse and (urls or answer):
        raise ValueError("a question to refuse has no expected URLs or answer")
    if not refuse and not urls:
        raise ValueError("no expected URL: give the page(s) that answer the question, or mark it refuse")
    pattern = None
    if answer is not None:
        try:
            pattern = re.compile(answer, re.IGNORECASE)
        except re.error as e:
            raise ValueError(f"the answer regex {answer!r} is invalid: {e}") from None
    return Question(text, tuple(urls), pattern, refuse, line)
