"""Logging set-up for the entry points: quiet, structured, key=value or JSON."""

from __future__ import annotations

import json
import logging
import logging.config
import time
from typing import Any

# Attributes every LogRecord has; anything else came in through `extra=` and is printed as a field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _quote(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' ="\n\t'):
        return json.dumps(text)
    return text


class KeyValueFormatter(logging.Formatter):
    """`2026-11-24T22:50:01Z level=info logger=bitbd.app msg="listening" url=http://...`"""

    def format(self, record: logging.LogRecord) -> str:
        """One line: UTC time, level, logger, message, the `extra=` fields, and a traceback as `exc`."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        parts = [
            stamp,
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quote(record.getMessage())}",
        ]
        parts += [f"{k}={_quote(v)}" for k, v in _fields(record).items()]
        if record.exc_info:
            parts.append("exc=" + json.dumps(self.formatException(record.exc_info)))
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object: ts, level, logger, msg, the `extra=` fields (numbers, booleans and null
        as is, anything else as a string), and exc."""
        body: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        body.update({k: v if isinstance(v, int | float | bool | None) else str(v) for k, v in _fields(record).items()})
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body)


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Configure logging once, from an entry point. Third-party loggers stay at WARNING unless level is debug."""
    formatter = "json" if fmt == "json" else "text"
    third_party = "DEBUG" if level == "debug" else "WARNING"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "text": {"()": KeyValueFormatter},
                "json": {"()": JsonFormatter},
            },
            "handlers": {
                # stderr, so that commands whose stdout is data (`bitbd tenant list`) stay pipeable.
                "stderr": {"class": "logging.StreamHandler", "formatter": formatter, "stream": "ext://sys.stderr"},
            },
            "root": {"handlers": ["stderr"], "level": third_party},
            "loggers": {"bitbd": {"level": level.upper()}, "bitbd_plugins": {"level": level.upper()}},
        }
    )
