"""The operator's admin token: from settings, or generated once and kept in the data dir."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import SecretStr

from bitbd.embedded.datadir import DataDir
from bitbd.embedded.process import write_private
from bitbd.errors import ConfigError
from bitbd.settings import Settings, check_admin_token

FILE_NAME = "admin_token"


def token_path(settings: Settings) -> Path:
    """Where a generated admin token is kept: the `admin_token` file in the data dir."""
    return DataDir(settings.data_dir).path / FILE_NAME


def ensure_admin_token(settings: Settings) -> tuple[Settings, str | None]:
    """Settings with the admin token filled in, and the token itself if it was generated just now."""
    if settings.admin_token.get_secret_value():
        return settings, None
    path = token_path(settings)
    created = None
    if not path.exists():
        DataDir(settings.data_dir).prepare()
        created = "adm_" + secrets.token_urlsafe(32)
        write_private(path, created + "\n")
    token = path.read_text().strip()
    try:
        check_admin_token(token)
    except ValueError as e:
        raise ConfigError(f"{path}: {e}; delete the file to have a new token generated") from None
    return settings.model_copy(update={"admin_token": SecretStr(token)}), created
