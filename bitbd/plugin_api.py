"""The one module a bitbd plugin imports: the hook marker, the kinds of component, the data they exchange, the
errors they raise, and the helpers bitbd lends them. Nothing else in `bitbd` is a promise to plugins.

A plugin is a module with ``@hookimpl`` functions (see ``bitbd.hookspecs`` and docs/plugin_hooks.md), registered
under the ``bitbd`` entry-point group. Each hook returns classes; bitbd builds every component as ``cls(ctx)``
with a ``PluginContext`` (a source with a ``SourceContext``), which carries its ``[plugins.<name>]`` table
(``ctx.options(Model)`` validates it), the settings, the database pool, the shared HTTP fetcher and a logger.

What it holds:

- the hook marker ``hookimpl``;
- the kinds of component (``Source``, ``Embedder``, ``VectorStore``, ``AnswerGenerator``, ``Reranker``, all
  ``Component``) and what they are built with (``PluginContext``, ``SourceContext``, ``Settings``);
- what they exchange: ``Fetched``, ``Previous``, ``Chunk``, ``Hit``, ``Passage``, ``Turn``, ``Vector``;
- the errors a plugin raises: ``SourceError`` (an item could not be ingested), ``FetchError``, ``ExtractError``,
  ``GeneratorUnavailable`` and ``AnswerCut`` (a generator's backend), ``ConfigError`` (a wrong
  ``[plugins.<name>]`` table), ``InvalidRequest`` (a wrong source configuration), ``PluginError``, and their
  root ``BitbdError``;
- configuration: ``plugin_settings`` (``ctx.options`` uses it) and ``describe`` (a pydantic error in words);
- for sources: the shared SSRF-guarded ``Fetcher``, ``url_refusal``/``url_host`` (the guard's verdict on a URL),
  ``robots_for``/``origin``/``Robots`` (robots.txt, cached), ``extract``/``extract_off_loop``/``Extracted`` (HTML,
  Markdown, text and PDF to text, in this process or in a child process with a time limit), ``normalize_url``,
  ``storable``, and the files ``POST /v1/uploads`` stored (``upload_ids``, ``read_upload``, ``Upload``,
  ``ACCEPTED``, ``content_type_for``);
- for embedders: ``counting_tokenizer`` (a tokenizer.json to count tokens with when chunking);
- for answer generators: ``Markers`` (drops citation marks that name no passage, as an answer streams) and
  ``Slots``/``SlotTimeout`` (bound the requests in flight to a backend, first come first served).

Importing this module loads no part of bitbd's HTTP server, job engine or answer service.
"""

from __future__ import annotations

from bitbd.answer.passages import Markers
from bitbd.answer.slots import Slots, SlotTimeout
from bitbd.context import PluginContext, SourceContext
from bitbd.errors import BitbdError, ConfigError, InvalidRequest, PluginError
from bitbd.hookspecs import hookimpl
from bitbd.ingest.chunking import counting_tokenizer
from bitbd.ingest.extract import Extracted, ExtractError, extract, normalize_url, storable
from bitbd.ingest.fetch import Fetcher, FetchError
from bitbd.ingest.guard import url_host, url_refusal
from bitbd.ingest.offload import extract_off_loop
from bitbd.ingest.robots import Robots, origin, robots_for
from bitbd.ingest.uploads import ACCEPTED, Upload, content_type_for, read_upload, upload_ids
from bitbd.interfaces import (
    AnswerCut,
    AnswerGenerator,
    Chunk,
    Component,
    Embedder,
    Fetched,
    GeneratorUnavailable,
    Hit,
    Passage,
    Previous,
    Reranker,
    Source,
    SourceError,
    Turn,
    Vector,
    VectorStore,
)
from bitbd.settings import Settings
from bitbd.validation import describe, plugin_settings

__all__ = [
    "ACCEPTED",
    "AnswerCut",
    "AnswerGenerator",
    "BitbdError",
    "Chunk",
    "Component",
    "ConfigError",
    "Embedder",
    "ExtractError",
    "Extracted",
    "FetchError",
    "Fetched",
    "Fetcher",
    "GeneratorUnavailable",
    "Hit",
    "InvalidRequest",
    "Markers",
    "Passage",
    "PluginContext",
    "PluginError",
    "Previous",
    "Reranker",
    "Robots",
    "Settings",
    "SlotTimeout",
    "Slots",
    "Source",
    "SourceContext",
    "SourceError",
    "Turn",
    "Upload",
    "Vector",
    "VectorStore",
    "content_type_for",
    "counting_tokenizer",
    "describe",
    "extract",
    "extract_off_loop",
    "hookimpl",
    "normalize_url",
    "origin",
    "plugin_settings",
    "read_upload",
    "robots_for",
    "storable",
    "upload_ids",
    "url_host",
    "url_refusal",
]
