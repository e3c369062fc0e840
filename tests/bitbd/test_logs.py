"""Log lines are structured: key=value text or JSON, with `extra=` fields kept."""

from __future__ import annotations

import json
import logging

from bitbd.logs import JsonFormatter, KeyValueFormatter


def record(**extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("bitbd.test", logging.INFO, __file__, 1, "bitbd listening", (), None)
    rec.__dict__.update(extra)
    return rec


def test_key_value_quotes_what_needs_quoting() -> None:
    line = KeyValueFormatter().format(record(url="http://127.0.0.1:8740", data_dir="/tmp/a b"))
    assert 'level=info logger=bitbd.test msg="bitbd listening" url=http://127.0.0.1:8740 data_dir="/tmp/a b"' in line


def test_json_is_one_object_per_line() -> None:
    line = JsonFormatter().format(record(port=8740, path="/x"))
    body = json.loads(line)
    assert body["msg"] == "bitbd listening" and body["port"] == 8740 and body["path"] == "/x"
    assert "\n" not in line
