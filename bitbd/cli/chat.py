"""`bitbd ask` (a question over the WebSocket, streamed) and `bitbd search` (POST /v1/search), against a server."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from bitbd.admin_token import token_path
from bitbd.client import Client, ServerError
from bitbd.embedded.datadir import DataDir
from bitbd.errors import ConfigError
from bitbd.settings import Settings

DEFAULT_URL = "http://127.0.0.1:8740"


def client_options() -> argparse.ArgumentParser:
    """The options of commands that talk to a running server: which server, as whom, for which tenant."""
    client = argparse.ArgumentParser(add_help=False)
    client.add_argument("--tenant", help="tenant name or id (with the admin token; not needed with --key)")
    client.add_argument(
        "--url", help=f"server URL (default: $BITBD_URL, else the server running on this data dir, else {DEFAULT_URL})"
    )
    client.add_argument("--key", help="a secret key sk_… of the tenant (default: $BITBD_KEY, else the admin token)")
    return client


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `bitbd ask`, `bitbd search` and `bitbd gaps` to the subcommands."""
    client = client_options()

    p = sub.add_parser(
        "ask",
        parents=[common, client],
        help="ask a question; the answer streams in",
        description="Ask a tenant's documents a question over the chat WebSocket; prints the answer "
        "as it arrives, then its sources.",
    )
    p.add_argument("question")
    p.add_argument("--conversation", metavar="ID", help="continue a conversation (its id is printed after each answer)")
    p.set_defaults(handler=cmd_ask)

    p = sub.add_parser(
        "search",
        parents=[common, client],
        help="show the chunks a query finds",
        description="Search a tenant's documents (hybrid retrieval, as answers use it).",
    )
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5, help="hits to show (default 5)")
    p.add_argument("--mode", choices=["hybrid", "vector", "keyword"], help="retrieval mode (default: the server's)")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.set_defaults(handler=cmd_search)

    p = sub.add_parser(
        "gaps",
        parents=[common, client],
        help="show what visitors asked that the documents do not answer",
        description="A tenant's content gaps: questions refused, rated down or answered on weak support, grouped "
        "into topics (largest first), with examples and the pages that came closest.",
    )
    p.add_argument("--days", type=int, default=30, help="look this many days back (default 30)")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.set_defaults(handler=cmd_gaps)


def target(args: argparse.Namespace) -> tuple[str, dict[str, str], dict[str, str]]:
    """Server URL, auth headers and query parameters for a command."""
    from bitbd.cli import settings_from

    settings = settings_from(args)
    url = args.url or os.environ.get("BITBD_URL") or DataDir(settings.data_dir).server_url() or DEFAULT_URL
    key = args.key or os.environ.get("BITBD_KEY", "")
    if key:
        return url.rstrip("/"), {"Authorization": f"Bearer {key}"}, {}
    if not args.tenant:
        raise ConfigError("name the tenant with --tenant (or give a tenant's secret key with --key)")
    return url.rstrip("/"), {"Authorization": f"Bearer {_admin_token(settings)}"}, {"tenant": args.tenant}


def _admin_token(settings: Settings) -> str:
    token = settings.admin_token.get_secret_value()
    if token:
        return token
    try:
        return token_path(settings).read_text().strip()
    except OSError:
        raise ConfigError(
            f"no admin token in {token_path(settings)}: pass --key sk_…, set BITBD_ADMIN_TOKEN, or "
            "point --data-dir DIR (or BITBD_DATA_DIR=DIR) at the server's data dir"
        ) from None


def cmd_ask(args: argparse.Namespace) -> int:
    """`bitbd ask`: the answer streams to stdout, then its sources; the conversation id and timings go to
    stderr. Exits 1 if the server answers with an `error` event."""
    url, headers, params = target(args)
    return asyncio.run(_ask(url, headers, params, args.question, args.conversation))


async def _ask(
    url: str, headers: dict[str, str], params: dict[str, str], question: str, conversation: str | None
) -> int:
    async with Client(url, headers, params) as client:
        try:
            answer = await client.ask(question, conversation, on_delta=lambda text: print(text, end="", flush=True))
        except ServerError as e:
            print(f"bitbd: {e}", file=sys.stderr)
            return 1
    print()
    for source in answer.sources:
        print(f"  [{source['n']}] {source['title'] or source['url']} — {source['url']}")
    done = answer.done
    if done.get("complete") is False:
        print(f"(the answer was cut short: {done.get('stopped')})", file=sys.stderr)
    by = f"; by {done['generator']}" if done.get("generator") else ""
    cached = ", cached" if done["cached"] else ""
    t = done["timings_ms"]
    print(
        f"(conversation {answer.conversation_id}{by}; retrieve {t['retrieve']} ms, generate {t['generate']} ms"
        f"{cached})",
        file=sys.stderr,
    )
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """`bitbd search`: the hits as a numbered list (title, URL, score, heading, the first 200 characters),
    or the API's JSON with --json."""
    url, headers, params = target(args)
    body = search_body(args)
    result = asyncio.run(_search(url, headers, params, body))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if not result["hits"]:
        print("no hits")
    for i, hit in enumerate(result["hits"], start=1):
        text = " ".join(hit["text"].split())
        print(f"{i}. {hit['title'] or hit['url']} — {hit['url']}  (score {hit['score']:.4f})")
        if hit["heading"]:
            print(f"   {hit['heading']}")
        print(f"   {text[:200]}{'…' if len(text) > 200 else ''}")
    return 0


def search_body(args: argparse.Namespace) -> dict[str, Any]:
    """POST /v1/search's body from the flags: -k as given (0 included: the server says what is allowed)."""
    from bitbd.cli import given

    return {"query": args.query, "k": args.k, **given(args, "mode")}


async def _search(url: str, headers: dict[str, str], params: dict[str, str], body: dict[str, Any]) -> Any:
    async with Client(url, headers, params) as client:
        return await client.search(body["query"], body["k"], body.get("mode"))


def cmd_gaps(args: argparse.Namespace) -> int:
    """`bitbd gaps`: one block per topic (count, when, why, examples, the closest pages), or the JSON."""
    url, headers, params = target(args)
    result = asyncio.run(_gaps(url, headers, params, args.days))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if not result["topics"]:
        print(f"no unanswered questions in the last {result['days']} days")
    for i, topic in enumerate(result["topics"], start=1):
        why = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in topic["reasons"].items() if n)
        print(f"{i}. {topic['count']} question(s), {topic['first_seen'][:10]} to {topic['last_seen'][:10]} ({why})")
        for example in topic["examples"]:
            print(f"   - {example}")
        for page in topic["closest_pages"]:
            print(f"   closest: {page['title'] or page['url']} — {page['url']}")
    return 0


async def _gaps(url: str, headers: dict[str, str], params: dict[str, str], days: int) -> Any:
    async with Client(url, headers, params) as client:
        return await client.gaps(days)
