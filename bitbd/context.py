"""What bitbd hands every component it builds (`cls(ctx)`, whatever its kind): `PluginContext`, and a source's
`SourceContext`."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from bitbd.errors import PluginError
from bitbd.settings import Settings
from bitbd.validation import plugin_settings

if TYPE_CHECKING:
    import asyncpg

    from bitbd.ingest.fetch import Fetcher

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class PluginContext:
    """The one argument of every component's constructor.

    ``name`` is the component's name (an embedder's, store's, generator's or reranker's ``name``, a source's
    ``type``): its ``[plugins.<name>]`` table is ``config`` and its logger ``log``. ``pool`` is bitbd's PostgreSQL
    pool and ``fetcher`` the shared, SSRF-guarded HTTP client; either is None where the process has none (an
    embedder built for a benchmark, say): a component that needs one asks with ``need_pool()`` / ``need_fetcher()``.
    """

    name: str
    _: KW_ONLY
    config: Mapping[str, Any] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)
    pool: asyncpg.Pool | None = None
    fetcher: Fetcher | None = None

    @property
    def log(self) -> logging.Logger:
        """``bitbd.plugin.<name>``: quiet by default, at the level of bitbd's own logs."""
        return logging.getLogger(f"bitbd.plugin.{self.name}")

    def options(self, model: type[M]) -> M:
        """``config`` validated into the plugin's own pydantic model; a mistake raises ``ConfigError`` naming
        ``[plugins.<name>]`` and the key, and bitbd refuses to start with it."""
        return plugin_settings(model, self.config, self.name)

    def need_pool(self) -> asyncpg.Pool:
        """bitbd's database pool, or a ``PluginError`` saying that this component needs one."""
        if self.pool is None:
            raise PluginError(f"{self.name} needs bitbd's database, and this process has none")
        return self.pool

    def need_fetcher(self) -> Fetcher:
        """The shared HTTP fetcher, or a ``PluginError`` saying that this component needs one."""
        if self.fetcher is None:
            raise PluginError(f"{self.name} needs bitbd's HTTP fetcher, and this process has none")
        return self.fetcher


@dataclass(frozen=True, kw_only=True)
class SourceContext(PluginContext):
    """A source's context: one source of one tenant, for one run (a crawl, an upload's ingestion).

    ``source`` is the source's own configuration as its ``validate()`` returned it (the body of
    ``POST /v1/sources``), ``config`` still its ``[plugins.<type>]`` table."""

    tenant_id: uuid.UUID
    source_id: uuid.UUID
    source: Mapping[str, Any]
