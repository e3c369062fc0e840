"""What the console's screens say, from the daemon's messages."""

from __future__ import annotations

from bitbd_tui.views import overview_text, progress_bar, source_label


def test_the_console_overview_shows_each_models_queue() -> None:
    snapshot = {
        "queues": {},
        "workers": [],
        "jobs": dict.fromkeys(("queued", "running", "failed", "succeeded"), 0),
        "chat": {
            "per_minute": [0] * 15,
            "answered_15m": 0,
            "p50_ms": None,
            "p95_ms": None,
            "cache_hit_rate": None,
            "connections": 0,
        },
        "llm": [
            {"generator": "openai", "limit": 1, "in_flight": 1, "waiting": 3, "wait_p50_ms": 800, "wait_p95_ms": 4200}
        ],
    }
    assert "model   openai: 1/1 in flight, 3 waiting, wait p95 4200 ms" in overview_text(snapshot)


def job(status: str, source_url: str | None, **progress: int) -> dict[str, object]:
    counts = {"found": 0, "fetched": 0, "failed": 0, "skipped": 0, "cancelled": 0, **progress}
    return {
        "status": status,
        "progress": counts,
        "source_type": "web",
        "source_id": "7cad1339-aaaa",
        "source_url": source_url,
    }


def test_a_cancelled_jobs_bar_counts_only_the_pages_it_worked_on() -> None:
    cancelled = job("cancelled", None, found=518, fetched=40, failed=3, skipped=475, cancelled=470)
    assert progress_bar(cancelled) == "█░░░░░░░░░ 48/518"
    finished = job("succeeded", None, found=10, fetched=8, failed=1, skipped=1)
    assert progress_bar(finished) == "██████████ 10/10"


def test_sources_are_shown_by_their_url() -> None:
    assert source_label(job("running", "https://shop.acme.example/")) == "shop.acme.example"
    long = source_label(job("running", "https://docs.python.org/3/library/"))
    assert long == "docs.python.org/3…", "cut to fit the jobs table in 80 columns"
    assert source_label(job("running", None)) == "web:7cad1339", "an upload has no URL"
