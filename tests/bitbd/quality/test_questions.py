"""Question files for `bitbd eval`: both formats, what a match is, and errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitbd.quality.questions import Question, QuestionFileError, load, plain


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_both_formats_read_the_same_questions(tmp_path: Path) -> None:
    jsonl = write(
        tmp_path,
        "q.jsonl",
        '{"question": "how do I return an item?", "urls": ["/help/returns.html"], '
        '"answer": "30 days"}\n\n# a comment\n{"question": "capital of France?", "refuse": true}\n',
    )
    tsv = write(
        tmp_path, "q.tsv", "how do I return an item?\t/help/returns.html\t30 days\ncapital of France?\t\trefuse\n"
    )
    for path in (jsonl, tsv):
        on_topic, off_topic = load(path)
        assert (on_topic.text, on_topic.urls, on_topic.refuse) == (
            "how do I return an item?",
            ("/help/returns.html",),
            False,
        )
        assert on_topic.answer is not None and on_topic.answer.pattern == "30 days"
        assert (off_topic.text, off_topic.urls, off_topic.answer, off_topic.refuse) == (
            "capital of France?",
            (),
            None,
            True,
        )
    assert [q.line for q in load(jsonl)] == [1, 4]


def test_an_expected_url_matches_the_page_it_names_and_no_other() -> None:
    q = Question("csv?", ("library/csv.html", "https://docs.example/faq.html"))
    assert q.answered_by("http://127.0.0.1:8000/library/csv.html#module-contents")
    assert q.answered_by("https://docs.example/faq.html")
    assert not q.answered_by("http://127.0.0.1:8000/library/xcsv.html")  # ends with the name, not after a /
    assert not q.answered_by("http://127.0.0.1:8000/library/csv.html.bak")
    assert Question("returns?", ("returns.md",)).answered_by("upload:returns.md")


def test_the_fact_is_matched_without_markers_and_markdown_marks() -> None:
    import re

    q = Question("dump?", ("json.html",), re.compile("serialize obj to a json formatted str", re.I))
    answer = "Use `json.dumps()`: it will **serialize** `obj` to a\nJSON formatted `str`. [2]"
    assert plain(answer) == "Use json.dumps(): it will serialize obj to a JSON formatted str."
    assert q.has_fact(answer)
    assert plain(r"pg\_dumpall writes [1] all databases") == "pg_dumpall writes all databases"
    assert not q.has_fact("JSON is a data format. [1]")


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("q.jsonl", '{"question": "a?", "urls": ["x"]}\n{"question": "b?" "urls": []}\n', "q.jsonl:2: not JSON"),
        ("q.jsonl", '["a?", "x"]\n', "q.jsonl:1: each line must be a JSON object"),
        ("q.jsonl", '{"question": "a?", "url": ["x"]}\n', "q.jsonl:1: unknown field(s) url"),
        ("q.jsonl", '{"question": "a?"}\n', "q.jsonl:1: no expected URL"),
        ("q.jsonl", '{"question": "a?", "urls": ["x"], "answer": "(unclosed"}\n', "q.jsonl:1: the answer regex"),
        ("q.jsonl", '{"question": "a?", "refuse": true, "urls": ["x"]}\n', "q.jsonl:1: a question to refuse has no"),
        ("q.jsonl", '{"question": "", "urls": ["x"]}\n', "q.jsonl:1: the question is empty"),
        ("q.jsonl", '{"question": "a?", "refuse": true}\n', "no on-topic questions"),
        ("q.tsv", "a?\tx\tregex\textra\n", "q.tsv:1: 4 tab-separated columns"),
        ("q.csv", "a?,x\n", "name it .jsonl"),
    ],
)
def test_a_broken_file_is_refused_naming_the_line_and_the_fault(
    tmp_path: Path, name: str, text: str, says: str
) -> None:
    with pytest.raises(QuestionFileError) as error:
        load(write(tmp_path, name, text))
    assert says in str(error.value)
