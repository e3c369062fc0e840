-- 0004: the crawl frontier (one row per item a job fetches) and uploaded files waiting to be ingested.
CREATE TABLE job_items (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    job_id        uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    item          text NOT NULL,
    depth         integer NOT NULL DEFAULT 0,
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'done', 'unchanged', 'failed', 'skipped', 'cancelled')),
    attempts      integer NOT NULL DEFAULT 0,
    error         text,
    chunks        integer NOT NULL DEFAULT 0,
    document_id   uuid,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (job_id, item)
);
CREATE INDEX job_items_status ON job_items (job_id, status);
CREATE INDEX job_items_stale ON job_items (status, updated_at) WHERE status IN ('queued', 'running');

CREATE TABLE uploads (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    source_id     uuid NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    filename      text NOT NULL,
    content_type  text NOT NULL,
    data          bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX uploads_source ON uploads (tenant_id, source_id);

-- Documents remember which crawl last saw them, so a finished crawl can remove pages gone from the site, and
-- the links they had, so a re-crawl that gets 304 Not Modified still follows them.
ALTER TABLE documents ADD COLUMN last_job_id uuid;
ALTER TABLE documents ADD COLUMN links text[] NOT NULL DEFAULT '{}';
