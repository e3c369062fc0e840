"""Durations as people write them, to seconds and back."""

from __future__ import annotations

import pytest

from bitbd.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds", "shown"),
    [("6h", 21600, "6h"), ("1h30m", 5400, "1h30m"), ("90s", 90, "1m30s"), ("1D", 86400, "1d"), (" 5 m ", 300, "5m")],
)
def test_durations_read_and_written(text: str, seconds: int, shown: str) -> None:
    assert parse_duration(text) == seconds
    assert format_duration(seconds) == shown
    assert parse_duration(shown) == seconds


@pytest.mark.parametrize(
    ("text", "says"), [("6", "a unit"), ("1.5h", "a unit"), ("0s", "more than 0s"), ("400d", "366d")]
)
def test_what_is_not_a_duration_says_why(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_duration(text)
