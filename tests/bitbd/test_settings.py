"""Settings: sources and their order, and errors that name the key and where it was set."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from bitbd.errors import ConfigError
from bitbd.settings import Settings
from bitbd.settings_file import load_settings
from tests.conftest import repo_root


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bitbd.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert (s.server.host, s.server.port) == ("127.0.0.1", 8740)
    assert s.embedded_postgres and s.embedded_redis
    assert s.data_dir.is_absolute() and s.data_dir.name == "bitbd"


def test_file_in_working_directory_then_env_then_kwargs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, '[server]\nport = 9001\nhost = "0.0.0.0"\n[database]\npool_max = 3\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings().server.port == 9001
    monkeypatch.setenv("BITBD_SERVER__PORT", "9002")
    monkeypatch.setenv("BITBD_DATABASE__DSN", "postgresql://u:pw@db.example/bitbd")
    monkeypatch.setenv("BITBD_ADMIN_TOKEN", "t0k_long_enough_for_an_admin_token_000")
    s = load_settings()
    assert s.server.port == 9002
    assert s.server.host == "0.0.0.0"  # the file's value survives an env override of a sibling key
    assert s.database.pool_max == 3
    assert s.database.dsn.get_secret_value() == "postgresql://u:pw@db.example/bitbd"
    assert not s.embedded_postgres
    assert s.admin_token.get_secret_value() == "t0k_long_enough_for_an_admin_token_000"
    assert load_settings(server={"port": 9003}).server.port == 9003


def test_explicit_config_and_env_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "other.toml"
    other.write_text("[server]\nport = 7000\n")
    assert load_settings(other).server.port == 7000
    monkeypatch.setenv("BITBD_CONFIG", str(other))
    assert load_settings().server.port == 7000
    with pytest.raises(ConfigError, match=r"missing.toml does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nprot = 1\n")
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    assert f"{path}: unknown key 'server.prot'" in e.value.message


def test_unknown_section_names_it(tmp_path: Path) -> None:
    path = write(tmp_path, "[sever]\nport = 1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'sever'"):
        load_settings(path)


def test_wrong_type_names_key_file_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = "eighty"\n')
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    assert f"{path}: server.port" in e.value.message
    assert "'eighty'" in e.value.message


def test_wrong_type_in_env_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BITBD_SERVER__PORT", "70000")
    with pytest.raises(ConfigError, match=r"environment variable BITBD_SERVER__PORT: server.port"):
        load_settings()


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[server\nport = 1\n")
    with pytest.raises(ConfigError, match=r"bitbd.toml: not valid TOML: .*line 1"):
        load_settings(path)


def test_plugin_tables_are_kept_for_plugins_and_scalars_refused(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, '[plugins]\ndisabled = ["web"]\n[plugins.fastembed]\nthreads = 2\n'))
    assert s.plugins.disabled == ["web"]
    assert s.plugins.plugin_table("fastembed") == {"threads": 2}
    assert s.plugins.plugin_table("nothing") == {}
    with pytest.raises(ConfigError, match=r"plugins.disabeld must be a table"):
        load_settings(write(tmp_path, '[plugins]\ndisabeld = ["web"]\n'))


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BITBD_REDIS__URL", "redis://:hunter2@127.0.0.1:6379/0")
    monkeypatch.setenv("BITBD_ADMIN_TOKEN", "adm_sekrit_long_enough_for_an_admin_token")
    text = repr(load_settings()) + str(load_settings().model_dump())
    assert "hunter2" not in text and "adm_sekrit_long_enough_for_an_admin_token" not in text


def _flatten(model: BaseModel, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            out.update(_flatten(value, f"{prefix}{name}."))
        else:
            out[prefix + name] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return out


def test_repo_bitbd_toml_documents_every_key_with_its_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = repo_root() / "bitbd.toml"
    text = path.read_text()
    data = tomllib.loads(text)
    monkeypatch.chdir(tmp_path)
    defaults = _flatten(Settings())
    from_file = _flatten(load_settings(path))
    assert from_file == defaults, "bitbd.toml must hold exactly the defaults"
    lines = text.splitlines()
    for key in defaults:
        section, _, name = key.rpartition(".")
        node: Any = data
        for part in filter(None, section.split(".")):
            node = node[part]
        assert name in node, f"bitbd.toml does not document {key}"
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{name} ="))
        assert lines[index - 1].startswith("#"), f"{key} in bitbd.toml needs a comment line above it"


def test_repo_bitbd_toml_documents_the_builtin_plugin_tables_at_their_defaults() -> None:
    from bitbd_plugins.embedders.fastembed import FastembedConfig
    from bitbd_plugins.embedders.sentence_transformers import SentenceTransformersConfig
    from bitbd_plugins.generators.extractive import ExtractiveConfig
    from bitbd_plugins.generators.openai import OpenAIConfig
    from bitbd_plugins.stores.pgvector import PgVectorConfig

    data = tomllib.loads((repo_root() / "bitbd.toml").read_text())
    for name, model in (
        ("fastembed", FastembedConfig),
        ("extractive", ExtractiveConfig),
        ("openai", OpenAIConfig),
        ("sentence-transformers", SentenceTransformersConfig),
        ("pgvector", PgVectorConfig),
    ):
        table = data["plugins"][name]
        assert set(table) == set(model.model_fields), f"[plugins.{name}] must list every key"
        defaults = {
            k: (v.get_secret_value() if isinstance(v, SecretStr) else v) for k, v in model().model_dump().items()
        }
        assert model.model_validate(table).model_dump() == model().model_dump(), name
        assert table == defaults, f"[plugins.{name}] must hold the defaults"
