-- 0002: what ingestion fills: sources, documents, chunks (vector + full text), and durable job records.
CREATE TABLE sources (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    type        text NOT NULL,
    config      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sources_tenant ON sources (tenant_id, created_at);

CREATE TABLE documents (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    source_id      uuid REFERENCES sources (id) ON DELETE CASCADE,
    url            text NOT NULL,
    title          text NOT NULL DEFAULT '',
    content_type   text NOT NULL DEFAULT '',
    content_hash   text NOT NULL DEFAULT '',
    etag           text,
    last_modified  text,
    bytes          integer NOT NULL DEFAULT 0,
    fetched_at     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, url)
);
CREATE INDEX documents_source ON documents (tenant_id, source_id);

-- The embedding dimension is fixed here (384: all-MiniLM-L6-v2, bge-small); the store checks the embedder
-- against it at start-up. A model of another dimension needs a migration that changes this column.
CREATE TABLE chunks (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    document_id   uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    position      integer NOT NULL,
    heading_path  text[] NOT NULL DEFAULT '{}',
    text          text NOT NULL,
    content_hash  text NOT NULL,
    embedding     vector(384),
    tsv           tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, document_id, content_hash)
);
CREATE INDEX chunks_document ON chunks (document_id, position);
CREATE INDEX chunks_embedding ON chunks USING hnsw (embedding vector_cosine_ops);
CREATE INDEX chunks_tsv ON chunks USING gin (tsv);
CREATE INDEX chunks_tenant ON chunks (tenant_id);

CREATE TABLE jobs (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    source_id    uuid REFERENCES sources (id) ON DELETE SET NULL,
    kind         text NOT NULL,
    status       text NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    priority     text NOT NULL DEFAULT 'normal' CHECK (priority IN ('high', 'normal')),
    params       jsonb NOT NULL DEFAULT '{}',
    progress     jsonb NOT NULL DEFAULT '{}',
    errors       jsonb NOT NULL DEFAULT '[]',
    error        text,
    attempts     integer NOT NULL DEFAULT 0,
    worker       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_tenant_status ON jobs (tenant_id, status, created_at DESC);
CREATE INDEX jobs_status ON jobs (status, updated_at);
