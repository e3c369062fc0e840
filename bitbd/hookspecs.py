"""Hook specifications: what a bitbd plugin may implement. Hooks are synchronous and return classes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from aiohttp import web

    from bitbd.interfaces import AnswerGenerator, Embedder, Reranker, Source, VectorStore

PROJECT = "bitbd"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_sources() -> list[type[Source]]:
    """Return source types (crawlers, loaders) this plugin adds.

    Each class has a unique ``type`` (the ``"type"`` of ``POST /v1/sources``, e.g. ``"web"``). The first
    plugin to register a type keeps it; later ones are logged and ignored.
    """


@hookspec
def register_embedders() -> list[type[Embedder]]:
    """Return embedder classes this plugin adds, each with a unique ``name`` selected by settings.

    An embedder reports its ``dimension``, which the vector store checks against the schema at start-up.
    """


@hookspec
def register_stores() -> list[type[VectorStore]]:
    """Return vector store classes this plugin adds, each with a unique ``name`` selected by settings."""


@hookspec
def register_generators() -> list[type[AnswerGenerator]]:
    """Return answer generator classes this plugin adds, each with a unique ``name`` selected by settings."""


@hookspec
def register_rerankers() -> list[type[Reranker]]:
    """Return rerankers this plugin adds, each with a unique ``name``: the rerank hook.

    The one named by ``retrieval.reranker`` reorders the fused candidates of every search and question before the
    best ``k`` are kept. It is built once with its ``[plugins.<name>]`` table.
    """


@hookspec
def register_routes(app: web.Application) -> None:
    """Add routes (or sub-apps) to the daemon's application before it starts.

    Called once from ``create_app()``. Routes added here get bitbd's error handling; state the plugin needs
    should live under its own ``web.AppKey``. Add no routes under ``/v1/admin`` or over bitbd's own.
    """
