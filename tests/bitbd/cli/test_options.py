"""Every numeric CLI option given explicitly, 0 included, reaches what the command sends (issue 15: `--max-depth 0`
was dropped by an `if v` filter and a 3-page crawl became a 518-page one)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bitbd.cli import build_parser
from bitbd.cli.chat import search_body
from bitbd.cli.jobs import crawl_config, worker_concurrency, workers_for
from bitbd.cli.manage import key_spec
from bitbd.embedded.redis import free_port
from bitbd.settings import Settings
from tests.site import serve_static, write_static_site
from tests.support.daemon import bitbd, clean_env

URL = "http://127.0.0.1:9/"


def int_options(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """(command, option) for every option of every (sub)command that takes a number."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from int_options(sub, (*prefix, name))
        elif (
            action.option_strings
            and action.type is not None
            and action.type not in (str, Path)
            and getattr(action.type, "__name__", "") in ("int", "positive_int")
        ):
            yield " ".join(prefix), max(action.option_strings, key=len)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


# What each numeric option is forwarded into, read back from what the command would send or use.
FORWARDED: dict[tuple[str, str], Callable[[], Any]] = {
    ("ingest", "--max-pages"): lambda: crawl_config(parse("ingest", "--tenant", "t", URL, "--max-pages", "0"), [URL])[
        "max_pages"
    ],
    ("ingest", "--max-depth"): lambda: crawl_config(parse("ingest", "--tenant", "t", URL, "--max-depth", "0"), [URL])[
        "max_depth"
    ],
    ("ingest", "--workers"): lambda: workers_for(parse("ingest", "--tenant", "t", URL, "--workers", "0"), True),
    ("reembed", "--workers"): lambda: workers_for(parse("reembed", "--tenant", "t", "--workers", "0"), True),
    ("worker", "--metrics-port"): lambda: parse("worker", "--metrics-port", "0").metrics_port,
    ("search", "-k"): lambda: search_body(parse("search", "q", "-k", "0"))["k"],
    ("gaps", "--days"): lambda: parse("gaps", "--days", "0").days,
    ("serve", "--port"): lambda: parse("serve", "--port", "0").port,
    ("key create", "--quota"): lambda: key_spec(parse("key", "create", "--tenant", "t", "--quota", "0")).quota,
    ("eval", "--misses"): lambda: parse("eval", "q.jsonl", "--misses", "0").misses,
}
# Options where 0 is meaningless and refused by the parser with a message, not replaced by a default.
REFUSED = {("worker", "--concurrency")}


def test_every_numeric_option_is_covered() -> None:
    """A new numeric option fails here until its forwarding of 0 is checked below."""
    assert set(int_options(build_parser())) == set(FORWARDED) | REFUSED


@pytest.mark.parametrize("command,option", sorted(FORWARDED))
def test_zero_reaches_the_request(command: str, option: str) -> None:
    assert FORWARDED[command, option]() == 0


def test_options_not_given_are_left_to_the_server() -> None:
    config = crawl_config(parse("ingest", "--tenant", "t", URL), [URL])
    assert "max_pages" not in config and "max_depth" not in config
    assert "mode" not in search_body(parse("search", "q"))
    assert workers_for(parse("ingest", "--tenant", "t", URL), True) == 2
    assert workers_for(parse("ingest", "--tenant", "t", URL), False) == 0


def test_zero_concurrency_is_refused_not_defaulted(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("worker", "--concurrency", "0")
    assert "must be at least 1" in capsys.readouterr().err
    assert worker_concurrency(parse("worker", "--concurrency", "3"), Settings()) == 3


def test_zero_quota_is_refused_with_a_reason() -> None:
    from bitbd.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="quota must be a positive number"):
        key_spec(parse("key", "create", "--tenant", "t", "--quota", "0")).validated()


def test_max_depth_zero_crawls_only_the_start_page(tmp_path: Path) -> None:
    """A real run: `--max-depth 0` on a site of 7 linked pages fetches just the one it was given."""
    write_static_site(tmp_path / "site", 6, 3)
    port = free_port()
    server = serve_static(tmp_path / "site", port)
    try:
        data = str(tmp_path / "data")
        env = clean_env(BITBD_CRAWLER__ALLOW_PRIVATE="true")
        assert bitbd("tenant", "create", "acme", "--data-dir", data, cwd=tmp_path).returncode == 0
        result = bitbd(
            "ingest",
            "--tenant",
            "acme",
            "--data-dir",
            data,
            "--max-depth",
            "0",
            f"http://127.0.0.1:{port}/index.html",
            cwd=tmp_path,
            env=env,
            timeout=180,
        )
    finally:
        server.kill()
        server.wait()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("succeeded: 1 pages"), result.stdout
