"""What the console's screens say, from the daemon's messages."""

from __future__ import annotations

from bitbd_tui.views import overview_text


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
