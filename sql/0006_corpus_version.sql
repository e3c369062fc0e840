-- 0006: a per-tenant corpus version, bumped by any change to the tenant's documents or chunks, whoever makes it
-- (ingestion workers, deletes, cascades). The semantic answer cache keys on it, so a cached answer never
-- outlives the documents it was written from.
ALTER TABLE tenants ADD COLUMN corpus_version bigint NOT NULL DEFAULT 0;

CREATE FUNCTION bump_corpus_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tenants SET corpus_version = corpus_version + 1
    WHERE id IN (SELECT DISTINCT tenant_id FROM changed_rows);
    RETURN NULL;
END $$;

-- Statement-level triggers with transition tables: one UPDATE per statement, not per row.
-- (A trigger with a transition table may name one event only, hence three per table.)
CREATE TRIGGER chunks_inserted AFTER INSERT ON chunks REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bump_corpus_version();
CREATE TRIGGER chunks_updated AFTER UPDATE ON chunks REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bump_corpus_version();
CREATE TRIGGER chunks_deleted AFTER DELETE ON chunks REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bump_corpus_version();

-- A re-crawl touches every document (fetched_at, last_job_id): only a new title or URL changes what answers cite.
CREATE FUNCTION bump_corpus_version_on_citation_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tenants SET corpus_version = corpus_version + 1
    WHERE id IN (SELECT DISTINCT n.tenant_id FROM new_rows n JOIN old_rows o ON o.id = n.id
                 WHERE n.title IS DISTINCT FROM o.title OR n.url IS DISTINCT FROM o.url);
    RETURN NULL;
END $$;
CREATE TRIGGER documents_updated AFTER UPDATE ON documents REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bump_corpus_version_on_citation_change();
CREATE TRIGGER documents_deleted AFTER DELETE ON documents REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bump_corpus_version();
