"""Shared by the benchmarks: a Markdown table, and appending it with the exact command to perf/RESULTS.md."""

from __future__ import annotations

import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def markdown_table(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(
        ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head), *("| " + " | ".join(row) + " |" for row in rows)]
    )


def command() -> str:
    """The command line as typed: `python -m perf.bench_x --flag` (sys.orig_argv keeps the -m)."""
    argv = list(sys.orig_argv)
    argv[0] = "python"
    return " ".join(shlex.quote(a) for a in argv)


def append(title: str, detail: str, table: str) -> None:
    with RESULTS.open("a") as f:
        f.write(f"\n### {title}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n`{command()}` ({detail})\n\n{table}\n")
