"""Typed settings: defaults, then `bitbd.toml`, then `BITBD_*` environment, then keyword arguments. Reading the file
and naming the key behind an error: bitbd.settings_file."""

from __future__ import annotations

import ipaddress
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bitbd.durations import parse_duration


def _duration(value: Any) -> Any:
    """A duration setting: `5m` (see bitbd.durations) or whole seconds (`300`, from the environment too)."""
    if isinstance(value, str):
        return int(value) if value.strip().isdigit() else parse_duration(value)
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ServerSettings(_Section):
    """`[server]`: where the HTTP/WebSocket server listens, and its request size and time limits."""

    host: str = "127.0.0.1"
    """Address the HTTP/WebSocket server binds to."""
    port: int = Field(8740, ge=0, le=65535)
    """TCP port of the HTTP/WebSocket server (0 picks a free one)."""
    max_body_bytes: int = Field(1_048_576, ge=1024)
    """Largest request body accepted, in bytes; larger ones get 413."""
    keepalive_timeout: float = Field(15.0, gt=0)
    """Seconds a connection may take to send a complete request head, and may stay idle between requests: slow
    (slowloris-style) and silent clients are cut off."""
    body_timeout: float = Field(120.0, gt=0)
    """Seconds a request body (uploads included) may take to arrive; a slower client gets 408."""


class AuthSettings(_Section):
    """`[auth]`: how many failed authentications a client may make, and which proxies are believed."""

    max_failures: int = Field(20, ge=0, le=1000)
    """Failed authentications (wrong admin token or API key) one client address may make within `failure_window`;
    past that, every request carrying credentials from it gets 429 with Retry-After until the window has passed.
    Checks still in flight count too, so a burst sent at once gets at most this many answers. 0: no limit; at most
    1000. Counted per server process; an IPv6 client counts by its /64."""
    failure_window: float = Field(60.0, gt=0, le=86_400)
    """Seconds over which failed authentications are counted (at most a day)."""
    trusted_proxies: list[str] = Field([], max_length=100)
    """Addresses or networks (e.g. "127.0.0.1", "10.0.0.0/8") of reverse proxies whose X-Forwarded-For header is
    believed for the client address; empty: the peer address of the connection is the client's. At most 100."""

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network (e.g. 10.0.0.0/8)") from None
        return value


class DatabaseSettings(_Section):
    """`[database]`: PostgreSQL (empty `dsn`: the embedded one in the data dir) and its connection pool."""

    dsn: SecretStr = SecretStr("")
    """PostgreSQL DSN (needs pgvector). Empty: start an embedded PostgreSQL in the data dir."""
    pool_min: int = Field(1, ge=0)
    """Connections the pool keeps open."""
    pool_max: int = Field(10, ge=1)
    """Most connections the pool opens."""
    command_timeout: float = Field(30.0, gt=0)
    """Seconds before a single SQL statement is abandoned."""
    connect_timeout: float = Field(10.0, gt=0)
    """Seconds to wait for a connection to PostgreSQL."""


class RedisSettings(_Section):
    """`[redis]`: Redis for jobs, cache and events (empty `url`: the embedded one in the data dir)."""

    url: SecretStr = SecretStr("")
    """Redis URL (redis://[:password@]host:port/db). Empty: start an embedded Redis in the data dir."""
    timeout: float = Field(5.0, gt=0)
    """Seconds to wait for Redis to connect or answer."""


class CrawlerSettings(_Section):
    """`[crawler]`: how the web source fetches: private addresses, limits per page, site and host, link pages."""

    allow_private: bool = False
    """Let the crawler visit loopback, private and link-local addresses (off: refused after DNS, every hop)."""
    user_agent: str = "bitbd/0.1 (+https://github.com/bitbd/bitbd)"
    """User-Agent header, also the name matched against robots.txt groups."""
    max_pages: int = Field(1000, ge=1)
    """Pages a crawl fetches at most, unless the source says fewer."""
    max_depth: int = Field(10, ge=0)
    """Links followed from a start URL at most, unless the source says otherwise."""
    per_host: int = Field(2, ge=1)
    """Requests in flight to one host at once, per worker process."""
    timeout: float = Field(20.0, gt=0)
    """Seconds one page (connect, redirects and body) may take."""
    max_page_bytes: int = Field(10_485_760, ge=1024)
    """Largest page or file fetched, in bytes; larger ones are recorded as errors."""
    max_redirects: int = Field(5, ge=0)
    """Redirect hops followed per page."""
    link_page_share: float = Field(0.6, gt=0, le=1)
    """A page whose main text is at least this share link text (an index, a site map, a table of contents) is a
    link page: its links are followed, but it is not indexed and does not count against max_pages (link pages
    count against a budget of their own, max_pages more)."""
    index_link_pages: bool = False
    """Index link pages too, and count them against max_pages, like any other page."""
    min_refresh: Annotated[int, BeforeValidator(_duration), Field(ge=1)] = 300
    """Shortest `refresh` a source may have (a duration: `90s`, `5m`, `6h`, `1d`), so that no tenant can make
    the crawler hammer a site; held in seconds."""


class IngestSettings(_Section):
    """`[ingest]`: chunk size and overlap in the embedder's tokens, and the upload size limits and budget."""

    chunk_tokens: int = Field(300, ge=32)
    """Target chunk size in embedder tokens (never above the embedder's limit)."""
    chunk_overlap: int = Field(40, ge=0)
    """Tokens shared by neighbouring chunks of one section."""
    max_upload_bytes: int = Field(52_428_800, ge=1024)
    """Largest file accepted by POST /v1/uploads, in bytes."""
    max_request_bytes: int = Field(268_435_456, ge=1024)
    """Largest POST /v1/uploads request body (all its files together), in bytes; larger ones get 413."""
    upload_budget_bytes: int = Field(1_073_741_824, ge=1024)
    """Bytes all uploads being received at once may hold (spooled to disk under the data dir, then copied into
    PostgreSQL); an upload that would go over waits up to 2 s, then gets 503 with Retry-After."""
    embedder: str = "fastembed"
    """Embedder plugin; its own settings are in [plugins.<name>]."""
    store: str = "pgvector"
    """Vector store plugin."""


class JobSettings(_Section):
    """`[jobs]`: the background work: in-process workers, retries and their backoff, redelivery, queue keys."""

    workers: int = Field(2, ge=0)
    """Tasks `bitbd serve` runs at once in-process; 0 leaves all work to `bitbd worker` processes."""
    retry_attempts: int = Field(3, ge=1)
    """Attempts of a page or file that fails transiently (timeouts, 5xx, 429) before it counts as failed."""
    retry_backoff: float = Field(5.0, gt=0)
    """Seconds before the first retry; each further retry waits twice as long."""
    redelivery_seconds: float = Field(60.0, ge=5)
    """A task unfinished this long after its worker took it (worker died) is given to another worker."""
    queue_prefix: str = "bitbd"
    """Prefix of the Redis keys (streams, delayed set) the job queue uses."""


class RetrievalSettings(_Section):
    """`[retrieval]`: how a question finds chunks: the mode, how many, candidates, HNSW ef_search, RRF k."""

    mode: Literal["hybrid", "vector", "keyword"] = "hybrid"
    """How chunks are found: vector (HNSW cosine), keyword (full text) or both fused (perf/RESULTS.md)."""
    k: int = Field(10, ge=1, le=50)
    """Passages an answer is written from (POST /v1/search takes its own k)."""
    candidates: int = Field(40, ge=1, le=1000)
    """Chunks each retriever (vector, keyword) proposes before fusion and re-ranking."""
    ef_search: int = Field(200, ge=1, le=1000)
    """pgvector hnsw.ef_search: candidates the HNSW graph walk keeps; more is slower and more exact. 200: recall@10
    0.992-1.000 at 10,000-100,000 chunks, the vector search 30-50% faster than at 400, answers the same on three
    sites (perf/RESULTS.md)."""
    rrf_k: int = Field(20, ge=1)
    """Reciprocal rank fusion constant: a chunk at rank r scores weight / (rrf_k + r) in each list."""
    keyword_weight: float = Field(1.0, ge=0)
    """Weight of the keyword list in the fusion (the vector list weighs 1)."""
    reranker: str = ""
    """Reranker plugin that reorders the fused candidates; empty: none."""


class AnswerSettings(_Section):
    """`[answer]`: which generator writes answers and its fallback, the refusal, the support an answer needs."""

    generator: str = "extractive"
    """Answer generator plugin: `extractive` (no LLM) or `openai` (any OpenAI-compatible server)."""
    fallback: str = "extractive"
    """Generator that answers when `generator`'s backend cannot be reached (it raised GeneratorUnavailable)."""
    prepare: bool = True
    """Embed at ingestion what the generators compare with questions (the extractive generator's sentences:
    ~8 per chunk, ~3 KB stored beside it), so answering embeds none of it. false: answers embed them while the
    visitor waits (under 10 clients on the Python docs: 398 instead of 74 server CPU-ms per answer,
    perf/RESULTS.md), and ingestion embeds only the chunks: their sentences cost ~1.6x as much again (here ~12
    chunks' sentences/s against ~20 chunks/s)."""
    dont_know: str = "I don't know based on the available documents."
    """What the answer says when the documents do not support one."""
    min_support: float = Field(0.3, ge=-1, le=1)
    """Least cosine similarity between question and best passage for an answer to be attempted."""
    max_question_chars: int = Field(2000, ge=10)
    """Longest question accepted, in characters."""
    history_turns: int = Field(2, ge=0, le=20)
    """Earlier questions of the conversation added to a follow-up's retrieval query."""


class ChatSettings(_Section):
    """`[chat]`: the chat socket: message size, heartbeat, idle time, asks in flight, connections per client."""

    max_message_bytes: int = Field(65_536, ge=1024)
    """Largest WebSocket message a client may send; a larger one closes the connection (code 1009)."""
    heartbeat: float = Field(30.0, gt=0)
    """Seconds between WebSocket pings; a client that does not answer one is disconnected."""
    idle_timeout: float = Field(600.0, gt=0)
    """Seconds a connection may stay open with no question before it is closed."""
    max_in_flight: int = Field(4, ge=1)
    """Questions one connection may have unanswered at once."""
    max_connections_per_client: int = Field(20, ge=0, le=100_000)
    """WebSockets one client address (an IPv6 one by its /64; behind auth.trusted_proxies, the forwarded client)
    may hold open at once with one API key (or the admin token, per tenant), per server process; the next upgrade
    gets 429. So one script cannot take a site's widget offline by holding its public key's sockets. 0: no cap."""
    max_connections_per_key: int = Field(1000, ge=0, le=1_000_000)
    """WebSockets one API key may hold open at once from all its clients together, per server process (a ceiling
    on resources; a public key is shared by every visitor of its site: size this for the busiest one). 0: no cap."""
    rate_limit_per_minute: int = Field(120, ge=0)
    """Questions (and searches) one API key may ask per minute; 0: no limit."""
    answer_timeout: float = Field(120.0, gt=0)
    """Seconds one answer may take from question to done."""


class CacheSettings(_Section):
    """`[cache]`: the semantic answer cache in Redis: on or off, similarity needed, size and TTL."""

    enabled: bool = True
    """Serve the cached answer of a near-identical earlier question (same tenant, unchanged documents)."""
    threshold: float = Field(0.92, ge=0, le=1)
    """Least cosine similarity between two questions for the earlier answer to be reused."""
    ttl_seconds: int = Field(86_400, ge=1)
    """How long a cached answer is served."""
    max_entries: int = Field(1000, ge=1)
    """Cached answers kept per tenant (the oldest go first)."""


class MetricsSettings(_Section):
    """`[metrics]`: the Prometheus endpoints: the scrape token, and where `bitbd worker` serves its own."""

    token: SecretStr = SecretStr("")
    """Bearer token GET /metrics requires; empty: /metrics is open (bind to loopback, or set one)."""
    worker_port: int = Field(9741, ge=0, le=65535)
    """Port on which each `bitbd worker` serves its own /metrics (0: none)."""
    worker_host: str = "127.0.0.1"
    """Address a worker's /metrics listens on."""


class TracingSettings(_Section):
    """`[tracing]`: optional Langfuse tracing: its keys, host and export timeout (off without keys)."""

    public_key: str = ""
    """Langfuse public key (or LANGFUSE_PUBLIC_KEY). With both keys and a host, questions and jobs are traced."""
    secret_key: SecretStr = SecretStr("")
    """Langfuse secret key (or LANGFUSE_SECRET_KEY)."""
    host: str = ""
    """Langfuse URL, e.g. https://cloud.langfuse.com (or LANGFUSE_HOST)."""
    timeout: float = Field(5.0, gt=0)
    """Seconds one export of spans may take; exports run in the background."""


class RetentionSettings(_Section):
    """`[retention]`: how long visitors' conversations and their ratings are kept."""

    conversations_days: int = Field(90, ge=1, le=36_500)
    """Days a conversation (its messages and ratings) is kept after its last message; then the server deletes it.
    Deleting a tenant deletes its conversations at once."""


class LogSettings(_Section):
    """`[log]`: log level and format (text, or JSON lines)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    """Level of bitbd's own loggers; third-party libraries stay at warning unless this is debug."""
    format: Literal["text", "json"] = "text"
    """`text` prints key=value lines, `json` one JSON object per line."""


class PluginSettings(BaseModel):
    """`[plugins]`: `disabled` plus one `[plugins.<name>]` table per plugin, which that plugin validates."""

    model_config = ConfigDict(extra="allow")
    disabled: list[str] = []
    """Entry-point names of plugins not to load (built-in or third-party)."""

    @model_validator(mode="after")
    def _tables_only(self) -> PluginSettings:
        for name, value in (self.model_extra or {}).items():
            if not isinstance(value, dict):
                raise ValueError(f"plugins.{name} must be a table [plugins.{name}] (did you mean 'disabled'?)")
        return self

    def plugin_table(self, name: str) -> dict[str, Any]:
        """The `[plugins.<name>]` table, or an empty one."""
        return dict((self.model_extra or {}).get(name, {}))


class Settings(BaseSettings):
    """Everything bitbd reads from `bitbd.toml` and the environment."""

    model_config = SettingsConfigDict(
        env_prefix="BITBD_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Path()
    """Where embedded PostgreSQL, embedded Redis and the admin token live. Empty: the per-user data dir."""
    admin_token: SecretStr = SecretStr("")
    """Bearer token for /v1/admin, at least 32 characters. Empty: generated on first start and kept in
    <data_dir>/admin_token."""
    server: ServerSettings = ServerSettings()
    auth: AuthSettings = AuthSettings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    crawler: CrawlerSettings = CrawlerSettings()
    ingest: IngestSettings = IngestSettings()
    jobs: JobSettings = JobSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    answer: AnswerSettings = AnswerSettings()
    chat: ChatSettings = ChatSettings()
    cache: CacheSettings = CacheSettings()
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()
    retention: RetentionSettings = RetentionSettings()
    log: LogSettings = LogSettings()
    plugins: PluginSettings = PluginSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments first, then `BITBD_*` environment, then the file load_settings() read."""
        # Env ranks above the file so that containers can override it.
        toml = InitSettingsSource(settings_cls, FILE_VALUES.get() or {})
        return (init_settings, env_settings, toml)

    @field_validator("admin_token", mode="after")
    @classmethod
    def _long_admin_token(cls, value: SecretStr) -> SecretStr:
        check_admin_token(value.get_secret_value())
        return value

    @field_validator("data_dir", mode="after")
    @classmethod
    def _default_data_dir(cls, value: Path) -> Path:
        # An empty string (the documented default) parses as Path("."): it means the per-user data dir.
        return Path(platformdirs.user_data_dir("bitbd")) if value == Path() else value

    @property
    def embedded_postgres(self) -> bool:
        """No DSN given: bitbd runs its own PostgreSQL in the data dir."""
        return not self.database.dsn.get_secret_value()

    @property
    def embedded_redis(self) -> bool:
        """No URL given: bitbd runs its own Redis in the data dir."""
        return not self.redis.url.get_secret_value()


MIN_ADMIN_TOKEN = 32


def check_admin_token(token: str) -> None:
    """An admin token must be long enough that guessing it is hopeless (empty: one is generated)."""
    if token and not (token.isascii() and token.isprintable() and " " not in token):
        raise ValueError("admin_token must be printable ASCII without spaces (it is sent in an HTTP header)")
    if token and len(token) < MIN_ADMIN_TOKEN:
        raise ValueError(
            f"admin_token is {len(token)} characters; it must be at least {MIN_ADMIN_TOKEN} "
            "(a random string, e.g. from `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`),"
            " or empty to have one generated in the data dir"
        )


# load_settings() (bitbd.settings_file) hands the parsed file to settings_customise_sources(), which pydantic
# calls without arguments.
FILE_VALUES: ContextVar[dict[str, Any] | None] = ContextVar("bitbdFILE_VALUES", default=None)
