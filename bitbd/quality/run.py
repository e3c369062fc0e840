"""Run a question file through a server's real search and chat paths, and score what comes back."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bitbd.client import Answer, Client
from bitbd.quality.questions import Question

SEARCH_K = 10  # hits fetched per question: MRR@10, and recall@5 from the first five


@dataclass(frozen=True)
class Outcome:
    """What one on-topic question got."""

    question: Question
    rank: int | None  # 1-based rank of the first hit on an answering page in /v1/search, within SEARCH_K
    cited: bool  # the chat answer cites an answering page
    has_fact: bool | None  # the answer matches the question's regex; None when it has none
    refused: bool  # answered "I don't know" (an on-topic question should not be)
    empty: bool  # no text at all
    answer: str
    seconds: float  # question sent to `done`


@dataclass(frozen=True)
class OffTopic:
    """What one question to refuse got, asked alone and as a follow-up in a conversation that began on-topic."""

    question: Question
    refused_opening: bool
    refused_follow_up: bool
    answer_opening: str
    answer_follow_up: str


@dataclass(frozen=True)
class Report:
    """What a run of `bitbd eval` got, per question: on-topic ones in `outcomes`, ones to refuse in `off_topic`."""

    outcomes: list[Outcome]
    off_topic: list[OffTopic]

    def summary(self) -> dict[str, Any]:
        """The figures `bitbd eval` prints: fractions in 0..1, times in milliseconds."""
        ranks = [o.rank for o in self.outcomes]
        facts = [o.has_fact for o in self.outcomes if o.has_fact is not None]
        times = sorted(o.seconds * 1000 for o in self.outcomes)
        return {
            "questions": len(self.outcomes),
            "recall@5": _mean(r is not None and r <= 5 for r in ranks),
            "mrr@10": _mean(1 / r if r else 0.0 for r in ranks),
            "cites_right_page": _mean(o.cited for o in self.outcomes),
            "answer_has_fact": _mean(facts) if facts else None,
            "with_fact_regex": len(facts),
            "refused_on_topic": sum(o.refused for o in self.outcomes),
            "empty_answers": sum(o.empty for o in self.outcomes),
            "off_topic": len(self.off_topic),
            "off_topic_refused_opening": sum(t.refused_opening for t in self.off_topic),
            "off_topic_refused_follow_up": sum(t.refused_follow_up for t in self.off_topic),
            "p50_ms": round(statistics.median(times)) if times else None,
            "p95_ms": round(_percentile(times, 0.95)) if times else None,
        }

    def details(self) -> dict[str, Any]:
        """Everything, per question, for `--json`."""

        def question(q: Question) -> dict[str, Any]:
            return {
                "question": q.text,
                "line": q.line,
                "urls": list(q.urls),
                "answer_regex": q.answer.pattern if q.answer is not None else None,
            }

        return {
            "summary": self.summary(),
            "questions": [
                {**question(o.question), **{k: v for k, v in asdict(o).items() if k != "question"}}
                for o in self.outcomes
            ],
            "off_topic": [
                {**question(t.question), **{k: v for k, v in asdict(t).items() if k != "question"}}
                for t in self.off_topic
            ],
        }


def _mean(values: Any) -> float:
    items = [float(v) for v in values]
    return round(statistics.fmean(items), 3) if items else 0.0


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


async def evaluate(
    client: Client, questions: Sequence[Question], progress: Callable[[int, int], None] | None = None
) -> Report:
    """Each on-topic question through `/v1/search` and `/v1/chat` (a new conversation each); each question to
    refuse as an opening question and as the follow-up of an on-topic one."""
    on_topic = [q for q in questions if not q.refuse]
    to_refuse = [q for q in questions if q.refuse]
    total, done = len(on_topic) + 2 * len(to_refuse), 0
    outcomes = []
    for q in on_topic:
        found = await client.search(q.text, SEARCH_K)
        rank = next((i for i, hit in enumerate(found["hits"], start=1) if q.answered_by(hit["url"])), None)
        answer = await client.ask(q.text)
        outcomes.append(
            Outcome(
                q,
                rank,
                any(q.answered_by(s["url"]) for s in answer.sources),
                q.has_fact(answer.text) if q.answer is not None else None,
                answer.refused,
                not answer.text.strip(),
                answer.text,
                round(answer.seconds, 4),
            )
        )
        done += 1
        if progress is not None:
            progress(done, total)
    off_topic = []
    for i, q in enumerate(to_refuse):
        alone = await client.ask(q.text)
        opening = await client.ask(on_topic[i % len(on_topic)].text)
        follow_up: Answer = await client.ask(q.text, opening.conversation_id)
        off_topic.append(OffTopic(q, alone.refused, follow_up.refused, alone.text, follow_up.text))
        done += 2
        if progress is not None:
            progress(done, total)
    return Report(outcomes, off_topic)
