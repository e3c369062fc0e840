"""Finding and reading `bitbd.toml` into Settings, and errors that name the key, and where it was set."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bitbd.errors import ConfigError
from bitbd.settings import FILE_VALUES, Settings

CONFIG_ENV = "BITBD_CONFIG"
DEFAULT_CONFIG_NAME = "bitbd.toml"


def find_config(explicit: Path | None) -> Path | None:
    """`--config PATH`, else `$BITBD_CONFIG`, else `./bitbd.toml` if present, else none."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist; pass an existing file to --config")
        return explicit
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        path = Path(from_env)
        if not path.is_file():
            raise ConfigError(f"config file {path} (from ${CONFIG_ENV}) does not exist")
        return path
    local = Path.cwd() / DEFAULT_CONFIG_NAME
    return local if local.is_file() else None


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Load settings once, at an entry point; errors name the key and where it came from."""
    path = find_config(config)
    toml_data: dict[str, Any] = {}
    if path is not None:
        try:
            toml_data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    token = FILE_VALUES.set(toml_data)
    try:
        return Settings(**overrides)
    except ValidationError as e:
        raise ConfigError(describe_errors(e, path, toml_data)) from None
    finally:
        FILE_VALUES.reset(token)


def describe_errors(error: ValidationError, path: Path | None, toml_data: dict[str, Any]) -> str:
    """One line per problem: the dotted key, where it was set, and what is wrong with it."""
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        key = ".".join(loc)
        env_name = "BITBD_" + "__".join(part.upper() for part in loc)
        if env_name in os.environ:
            where = f"environment variable {env_name}"
        elif path is not None and _has_key(toml_data, loc):
            where = str(path)
        else:
            where = str(path) if path is not None else "settings"
        if item["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key {key!r}; see the documented keys in bitbd.toml")
        else:
            lines.append(f"{where}: {key}: {item['msg']} (got {item.get('input')!r})")
    return "invalid settings:\n  " + "\n  ".join(lines)


def _has_key(data: dict[str, Any], loc: list[str]) -> bool:
    node: Any = data
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
