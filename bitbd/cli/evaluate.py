"""`bitbd eval`: measure a tenant's answers against a question file, through a running server."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from bitbd.client import Client
from bitbd.quality import questions as question_file
from bitbd.quality.run import Outcome, Report, evaluate

_EXPLAIN = """The file holds one question per line, as JSONL:
  {"question": "how do I reset my password?", "urls": ["/help/account.html"], "answer": "forgot password"}
  {"question": "what is the capital of France?", "refuse": true}
or as TSV: question <TAB> expected URLs (space-separated) [<TAB> answer regex, or: refuse].
An expected URL matches a page whose URL equals it or ends with it after a / or :. The answer regex is searched,
ignoring case, in the answer without its [n] markers and Markdown marks. Questions marked refuse must get the
"I don't know" answer, asked alone and as a follow-up of an on-topic question."""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `bitbd eval` to the subcommands."""
    from bitbd.cli.chat import client_options

    p = sub.add_parser(
        "eval",
        parents=[common, client_options()],
        help="measure answer quality on a question file",
        description="Ask a tenant a file of questions through a running server's search and chat, "
        "and print how often the right page is found (recall@5, MRR@10) and cited, "
        "how often the answer states the fact, refusals, empty answers and times.",
        epilog=_EXPLAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", type=Path, metavar="FILE", help="questions, .jsonl or .tsv")
    p.add_argument("--json", action="store_true", help="print every question's result as JSON")
    p.add_argument(
        "--misses", type=int, default=20, metavar="N", help="questions that missed to list (default 20; 0: none)"
    )
    p.set_defaults(handler=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    """`bitbd eval`: ask every question of the file through the server and print the report (with --json,
    every question's result). Exits 0 whatever the scores."""
    from bitbd.cli.chat import target

    asked = question_file.load(args.file)  # a broken file fails before anything is asked
    url, headers, params = target(args)
    report = asyncio.run(_run(url, headers, params, asked))
    if args.json:
        print(json.dumps(report.details(), indent=2))
    else:
        print(render(report, args.file, args.misses))
    return 0


async def _run(
    url: str, headers: dict[str, str], params: dict[str, str], asked: list[question_file.Question]
) -> Report:
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty:
            print(f"\r  asked {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    async with Client(url, headers, params) as client:
        return await evaluate(client, asked, progress)


def render(report: Report, path: Path, misses: int) -> str:
    """The text report: retrieval and answer scores, off-topic refusals, times, then up to `misses` of the
    questions that missed, by line number."""
    s = report.summary()
    fact = (
        "n/a (no answer regexes)"
        if s["answer_has_fact"] is None
        else f"{s['answer_has_fact']:.3f} ({s['with_fact_regex']} with a regex)"
    )
    lines = [
        f"bitbd eval: {s['questions']} questions, {s['off_topic']} to refuse ({path})",
        f"  retrieval      recall@5 {s['recall@5']:.3f}   MRR@10 {s['mrr@10']:.3f}",
        f"  answers        cites a right page {s['cites_right_page']:.3f}   states the fact {fact}",
        f"                 empty {s['empty_answers']}   refused although on-topic {s['refused_on_topic']}",
    ]
    if s["off_topic"]:
        lines.append(
            f"  off-topic      refused {s['off_topic_refused_opening']}/{s['off_topic']} as openings, "
            f"{s['off_topic_refused_follow_up']}/{s['off_topic']} as follow-ups"
        )
    lines.append(f"  time to done   p50 {s['p50_ms']} ms   p95 {s['p95_ms']} ms")
    missed = [(o.question.line, o.question.text, why) for o in report.outcomes if (why := _miss(o))]
    missed += [
        (
            t.question.line,
            t.question.text,
            f"answered {'alone' if not t.refused_opening else 'as a follow-up'}: "
            f"{_short(t.answer_opening if not t.refused_opening else t.answer_follow_up)}",
        )
        for t in report.off_topic
        if not (t.refused_opening and t.refused_follow_up)
    ]
    if missed and misses:
        lines.append(f"misses ({len(missed)}):")
        lines += [f"  line {line}: {text!r}: {why}" for line, text, why in sorted(missed)[:misses]]
    return "\n".join(lines)


def _miss(o: Outcome) -> str:
    if o.empty:
        return "empty answer"
    if o.refused:
        return "refused (I don't know)" + ("" if o.rank else "; no answering page in the top 10")
    problems = []
    if o.rank is None:
        problems.append("no answering page in the top 10")
    elif o.rank > 5:
        problems.append(f"the first answering page ranked {o.rank}")
    if not o.cited:
        problems.append("cites no answering page")
    if o.has_fact is False:
        problems.append(f"fact missing: {_short(o.answer)}")
    return "; ".join(problems)


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= 120 else flat[:120] + "…")
