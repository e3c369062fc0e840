"""`bitbd serve`: the daemon, with embedded PostgreSQL and Redis unless the settings name real ones."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

from aiohttp import web

from bitbd.admin_token import ensure_admin_token, token_path
from bitbd.app import create_app
from bitbd.embedded.datadir import DataDir
from bitbd.embedded.services import services
from bitbd.errors import ConfigError
from bitbd.http.access import AccessLogger
from bitbd.settings import Settings

log = logging.getLogger("bitbd.serve")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `bitbd serve` to the subcommands."""
    p = sub.add_parser(
        "serve",
        parents=[common],
        help="run the HTTP/WebSocket server",
        description="Run the server. With no database DSN or Redis URL configured, start embedded "
        "PostgreSQL (with pgvector) and Redis in the data dir.",
    )
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default 8740; 0 picks a free one)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """`bitbd serve`: start the embedded PostgreSQL and Redis it needs, then serve until SIGINT or SIGTERM; an
    admin token generated now is printed once."""
    from bitbd.cli import given, settings_from

    server = given(args, "host", "port")
    settings = settings_from(args, **({"server": server} if server else {}))
    settings, new_token = ensure_admin_token(settings)
    where = {
        name: "embedded" if embedded else "external"
        for name, embedded in (("postgres", settings.embedded_postgres), ("redis", settings.embedded_redis))
    }
    with services(settings, "serve", exclusive=True) as running:
        asyncio.run(_serve(running, new_token, where))
    return 0


async def _serve(settings: Settings, new_token: str | None, where: dict[str, str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app = create_app(settings)
    debug = settings.log.level == "debug" or logging.getLogger("bitbd").isEnabledFor(logging.DEBUG)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=logging.getLogger("bitbd.access") if debug else None,
        access_log_class=AccessLogger,
        keepalive_timeout=settings.server.keepalive_timeout,
    )
    await runner.setup()
    try:
        host, port = settings.server.host, settings.server.port
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as e:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {e.strerror}; stop whatever uses that port, "
                "or pick another with --port (BITBD_SERVER__PORT)"
            ) from None
        bound_host, bound_port = runner.addresses[0][:2]
        url = f"http://{_url_host(str(bound_host))}:{bound_port}"
        log.info("bitbd listening", extra={"url": url, "data_dir": str(settings.data_dir), **where})
        data_dir = DataDir(settings.data_dir)
        data_dir.write_server(url)
        try:
            if new_token:
                print(f"Admin token (shown once; kept in {token_path(settings)}):\n  {new_token}", flush=True)
            await stop.wait()
            log.info("bitbd stopping")
        finally:
            data_dir.clear_server()  # `bitbd ask` must not be sent to a server that is gone
    finally:
        await runner.cleanup()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
