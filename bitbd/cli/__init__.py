"""`bitbd`: the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bitbd import __version__
from bitbd.errors import BitbdError, ConfigError
from bitbd.logs import configure_logging
from bitbd.settings import Settings
from bitbd.settings_file import load_settings


def build_parser() -> argparse.ArgumentParser:
    """The `bitbd` argument parser with every subcommand; each sets `handler`, the function that runs it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", type=Path, metavar="PATH", help="settings file (default: ./bitbd.toml, or $BITBD_CONFIG)"
    )
    common.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="where embedded PostgreSQL/Redis and the admin token live"
    )
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    parser = argparse.ArgumentParser(prog="bitbd", description="Self-hosted RAG chat server.")
    parser.add_argument("--version", action="version", version=f"bitbd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from bitbd.cli import chat, evaluate, jobs, manage, serve

    serve.add_parser(sub, common)
    jobs.add_parsers(sub, common)
    manage.add_parsers(sub, common)
    chat.add_parsers(sub, common)
    evaluate.add_parser(sub, common)
    return parser


def settings_from(args: argparse.Namespace, **overrides: object) -> Settings:
    """Settings for a command: file and environment, then what its flags say."""
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    settings = load_settings(args.config, **overrides)
    configure_logging("debug" if args.verbose else settings.log.level, settings.log.format)
    return settings


def require_database(args: argparse.Namespace, settings: Settings, *, may_create: bool = False) -> None:
    """Refuse a command that would create a new, empty embedded database: `bitbd tenant list` without --data-dir
    once made one in the default data dir and printed an empty table. Only `bitbd serve`, and `bitbd migrate` or
    `bitbd tenant create` on a data dir chosen explicitly, create one."""
    if not settings.embedded_postgres or (settings.data_dir / "postgres" / "PG_VERSION").exists():
        return
    chosen = "data_dir" in settings.model_fields_set  # --data-dir, BITBD_DATA_DIR or data_dir in bitbd.toml
    command = " ".join(str(part) for part in (args.command, getattr(args, "action", None)) if part)
    if may_create and chosen:
        print(f"bitbd: creating a new data dir at {settings.data_dir}", file=sys.stderr)
        return
    where = "the data dir chosen" if chosen else "the default data dir"
    raise ConfigError(
        f"no bitbd database in {settings.data_dir} ({where}); `bitbd {command}` does not create "
        "one. Point it at your server's data dir with --data-dir DIR or BITBD_DATA_DIR=DIR (or "
        "database.dsn for an external PostgreSQL), or run `bitbd serve` first to create it"
    )


def given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options among `names` that were given on the command line, whatever their value: 0, "" and False
    are explicit choices and must reach the server (`if v` once dropped `--max-depth 0`)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def positive_int(text: str) -> int:
    """An argparse type for counts that must be at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status. A bitbd error is printed as `bitbd: <message>` on stderr and
    exits 1 (2 for a configuration error); Ctrl-C exits 130."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except BitbdError as e:
        print(f"bitbd: {e.message}", file=sys.stderr)
        return 2 if e.code == "config" else 1
    except KeyboardInterrupt:
        return 130
