-- 0015: scheduled re-crawls. A source with a refresh is crawled again at its last crawl's start plus the refresh:
-- next_crawl_at, set when a crawl starts and claimed (moved on) by the one process that starts the due crawl.
ALTER TABLE sources ADD COLUMN refresh_seconds integer CHECK (refresh_seconds > 0);
ALTER TABLE sources ADD COLUMN next_crawl_at timestamptz;
CREATE INDEX sources_due ON sources (next_crawl_at) WHERE refresh_seconds IS NOT NULL;
CREATE INDEX jobs_source ON jobs (source_id, created_at DESC);

-- When the source last said the item changed (a sitemap's <lastmod>): a page stored after that is not fetched.
ALTER TABLE job_items ADD COLUMN modified_at timestamptz;
