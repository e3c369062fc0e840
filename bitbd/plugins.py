"""Plugin loading (entry-point group `bitbd`) and the typed facade that is the only caller of `pm.hook`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar, Unpack, overload

import pluggy

from bitbd import hookspecs
from bitbd.context import PluginContext
from bitbd.errors import ConfigError
from bitbd.interfaces import AnswerGenerator, Component, Embedder, Reranker, Source, VectorStore

if TYPE_CHECKING:
    from aiohttp import web
    from asyncpg import Pool

    from bitbd.ingest.fetch import Fetcher
    from bitbd.settings import Settings

log = logging.getLogger(__name__)
GROUP = "bitbd"
T = TypeVar("T")
Kind = Literal["embedder", "store", "generator", "reranker"]
_KINDS: dict[str, tuple[str, str]] = {  # kind: (its name in words, the setting that selects one)
    "embedder": ("embedder", "ingest.embedder"),
    "store": ("vector store", "ingest.store"),
    "generator": ("answer generator", "answer.generator"),
    "reranker": ("reranker", "retrieval.reranker"),
}


class Built(TypedDict, total=False):
    """What `Plugins.build` may hand a component besides its table and the settings, and the setting to name."""

    pool: Pool | None
    fetcher: Fetcher | None
    setting: str | None


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin as `bitbd plugins` and GET /v1/admin/plugins show it."""

    name: str
    version: str
    module: str
    hooks: list[str]


@dataclass
class Plugins:
    """Loaded plugins and typed access to their hooks."""

    pm: pluggy.PluginManager
    skipped: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def loaded(self) -> list[PluginInfo]:
        """The registered plugins, blocked ones left out, sorted by name."""
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:  # blocked
                continue
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            module = getattr(plugin, "__name__", type(plugin).__name__)
            infos.append(PluginInfo(name, self.versions.get(name, "-"), module, hooks))
        return sorted(infos, key=lambda i: i.name)

    def sources(self) -> dict[str, type[Source]]:
        """The installed source types by `type`; of two with one type, the first registered (built-in) wins."""
        return self._by_name(self.pm.hook.register_sources(), "type", "source type")

    def embedders(self) -> dict[str, type[Embedder]]:
        """The installed embedders by `name`; of two with one name, the first registered (built-in) wins."""
        return self._by_name(self.pm.hook.register_embedders(), "name", "embedder")

    def stores(self) -> dict[str, type[VectorStore]]:
        """The installed vector stores by `name`; of two with one name, the first registered (built-in) wins."""
        return self._by_name(self.pm.hook.register_stores(), "name", "vector store")

    def generators(self) -> dict[str, type[AnswerGenerator]]:
        """The installed answer generators by `name`; of two with one name, the first registered
        (built-in) wins."""
        return self._by_name(self.pm.hook.register_generators(), "name", "answer generator")

    def rerankers(self) -> dict[str, type[Reranker]]:
        """The installed rerankers by `name`; of two with one name, the first registered (built-in) wins."""
        return self._by_name(self.pm.hook.register_rerankers(), "name", "reranker")

    @overload
    def build(self, kind: Literal["embedder"], name: str, settings: Settings, **how: Unpack[Built]) -> Embedder: ...
    @overload
    def build(self, kind: Literal["store"], name: str, settings: Settings, **how: Unpack[Built]) -> VectorStore: ...
    @overload
    def build(
        self, kind: Literal["generator"], name: str, settings: Settings, **how: Unpack[Built]
    ) -> AnswerGenerator: ...
    @overload
    def build(self, kind: Literal["reranker"], name: str, settings: Settings, **how: Unpack[Built]) -> Reranker: ...

    def build(self, kind: Kind, name: str, settings: Settings, **how: Unpack[Built]) -> Component:
        """The component ``name`` of ``kind`` (``"embedder"``, ``"store"``, ``"generator"``, ``"reranker"``), built
        as ``cls(PluginContext(...))`` with its ``[plugins.<name>]`` table. Not installed: a ``ConfigError`` naming
        ``setting`` (default: the setting that selects the kind) and what is installed."""
        lists: dict[str, Callable[[], Mapping[str, type[Component]]]] = {
            "embedder": self.embedders,
            "store": self.stores,
            "generator": self.generators,
            "reranker": self.rerankers,
        }
        installed = lists[kind]()
        if name not in installed:
            what, selected_by = _KINDS[kind]
            names = ", ".join(sorted(installed)) or "none"
            raise ConfigError(
                f"{what} {name!r} is not installed; installed: {names} ({how.get('setting') or selected_by})"
            )
        table = settings.plugins.plugin_table(name)
        ctx = PluginContext(name, config=table, settings=settings, pool=how.get("pool"), fetcher=how.get("fetcher"))
        return installed[name](ctx)

    def source_with(self, capability: str) -> type[Source] | None:
        """The first installed source type (built-in ones first) whose class says it can do ``capability``
        (``"urls"``, ``"uploads"``, ``"prunes"``), or None."""
        return next((cls for cls in self.sources().values() if getattr(cls, capability)), None)

    def register_routes(self, app: web.Application) -> None:
        """Let each plugin add routes; one that raises is logged and the others still run."""
        for impl in self.pm.hook.register_routes.get_hookimpls():
            try:
                impl.function(app=app)
            except Exception as e:
                reason = f"register_routes failed: {type(e).__name__}: {e}"
                _skip(self, impl.plugin_name, reason, exc_info=True)

    @staticmethod
    def _by_name(results: Iterable[list[type[T]]], attr: str, what: str) -> dict[str, type[T]]:
        found: dict[str, type[T]] = {}
        # pluggy calls the last-registered plugin first; reverse so that earlier (built-in) ones win.
        for classes in reversed(list(results)):
            for cls in classes or []:
                key = str(getattr(cls, attr))
                if key in found:
                    log.warning(
                        "duplicate plugin component ignored",
                        extra={"kind": what, "component": key, "class": cls.__qualname__},
                    )
                    continue
                found[key] = cls
        return found


def new_manager() -> pluggy.PluginManager:
    """A pluggy manager that knows bitbd's hook specifications, with no plugin registered yet."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load_plugins(disabled: Iterable[str] = (), eps: Iterable[EntryPoint] | None = None) -> Plugins:
    """Register every plugin of the entry-point group (built-in ones included); a broken one is skipped."""
    plugins = Plugins(new_manager())
    pm = plugins.pm
    for name in disabled:
        pm.set_blocked(name)
    for ep in entry_points(group=GROUP) if eps is None else eps:
        if pm.is_blocked(ep.name):
            log.info("plugin disabled by settings", extra={"plugin": ep.name})
            continue
        if pm.has_plugin(ep.name):
            log.warning("plugin name used twice, second ignored", extra={"plugin": ep.name, "value": ep.value})
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as e:  # an import error or a bad hook signature: skip it, never fail start-up
            _skip(plugins, ep.name, f"{type(e).__name__}: {e}", exc_info=True)
            continue
        plugins.versions[ep.name] = ep.dist.version if ep.dist is not None else "-"
    _check_pending(plugins)
    for info in plugins.loaded():
        log.debug("plugin loaded", extra={"plugin": info.name, "version": info.version})
    return plugins


def register(plugins: Plugins, plugin: Any, name: str) -> None:
    """Register a plugin object directly (tests, embedding bitbd in another program)."""
    plugins.pm.register(plugin, name=name)
    _check_pending(plugins)


def _check_pending(plugins: Plugins) -> None:
    # check_pending() names one offender at a time: unregister it and look again.
    while True:
        try:
            plugins.pm.check_pending()
            return
        except pluggy.PluginValidationError as e:
            name = plugins.pm.get_name(e.plugin) or repr(e.plugin)
            plugins.pm.unregister(e.plugin)
            _skip(plugins, name, str(e))


def _skip(plugins: Plugins, name: str, reason: str, exc_info: bool = False) -> None:
    # One line by default; the traceback only with -v, where the plugin's author will look for it.
    log.error(
        "plugin skipped",
        extra={"plugin": name, "reason": reason},
        exc_info=exc_info and log.isEnabledFor(logging.DEBUG),
    )
    plugins.skipped[name] = reason
    if plugins.pm.has_plugin(name):
        plugins.pm.unregister(name=name)
