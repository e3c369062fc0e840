"""`bitbd eval` against a real `bitbd serve`: a question file through real search and chat, scored."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.daemon import Daemon, bitbd, tenant_with_folder

DOCS = {
    "returns.md": "# Returns\n\nYou can return any item within 30 days of delivery for a full refund. Refunds are "
    "paid within five working days.\n",
    "shipping.md": "# Shipping\n\nWe ship every order within two business days. Express delivery arrives the "
    "next working day.\n",
    "warranty.md": "# Warranty\n\nEvery appliance comes with a two-year warranty covering manufacturing faults. "
    "The warranty does not cover accidental damage.\n",
}
QUESTIONS = [
    {"question": "how long do i have to send something back?", "urls": ["returns.md"], "answer": "30 days"},
    {"question": "when will my order ship?", "urls": ["upload:shipping.md"], "answer": "two business days"},
    # The fact asked for is not in the documents: found and cited, but the fact is missing.
    {"question": "how long is the warranty on appliances?", "urls": ["warranty.md"], "answer": "five years"},
    {"question": "what is the capital of France?", "refuse": True},
]


def test_eval_scores_a_question_file_through_a_running_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    broken = tmp_path / "broken.tsv"
    broken.write_text("how do i return things?\treturns.md\n\tnothing asked\n")
    daemon = Daemon(data, tmp_path).start()
    try:
        d = str(data)
        tenant_with_folder(daemon, tmp_path, DOCS)

        scored = bitbd("eval", "--tenant", "acme", "--data-dir", d, str(questions), "--json", cwd=tmp_path, timeout=120)
        assert scored.returncode == 0, scored.stderr
        report = json.loads(scored.stdout)
        summary = report["summary"]
        assert summary["questions"] == 3 and summary["off_topic"] == 1
        assert summary["recall@5"] == 1.0 and summary["mrr@10"] == 1.0 and summary["cites_right_page"] == 1.0
        assert summary["answer_has_fact"] == round(2 / 3, 3) and summary["with_fact_regex"] == 3
        assert summary["off_topic_refused_opening"] == 1 and summary["off_topic_refused_follow_up"] == 1
        assert summary["empty_answers"] == 0 and summary["refused_on_topic"] == 0
        assert summary["p50_ms"] > 0 and summary["p95_ms"] >= summary["p50_ms"]
        warranty = report["questions"][2]
        assert warranty["has_fact"] is False and "two-year warranty" in warranty["answer"]
        assert warranty["line"] == 3 and warranty["rank"] == 1

        shown = bitbd("eval", "--tenant", "acme", "--data-dir", d, str(questions), cwd=tmp_path, timeout=120)
        assert shown.returncode == 0, shown.stderr
        assert "recall@5 1.000   MRR@10 1.000" in shown.stdout
        assert "states the fact 0.667 (3 with a regex)" in shown.stdout
        assert "refused 1/1 as openings, 1/1 as follow-ups" in shown.stdout
        assert "line 3: 'how long is the warranty on appliances?': fact missing:" in shown.stdout

        refused = bitbd("eval", "--tenant", "acme", "--data-dir", d, str(broken), cwd=tmp_path)
        assert refused.returncode != 0 and "broken.tsv:2: the question is empty" in refused.stderr
        missing = bitbd("eval", "--tenant", "nobody", "--data-dir", d, str(questions), cwd=tmp_path)
        assert missing.returncode != 0 and "nobody" in missing.stderr, missing.stderr
    finally:
        daemon.stop()
