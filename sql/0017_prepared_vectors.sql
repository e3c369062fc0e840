-- 0017: embeddings an answer generator will want of a chunk (the extractive generator's sentences), made at
-- ingestion beside the chunk's own embedding, so answering compares stored vectors instead of embedding ~16
-- sentences per answer (measured: 390 of the server's CPU-ms per answer under 10 clients). bitbd/prepared.py
-- holds the format. NULL: not made yet (chunks stored before this migration; the upkeep fills them in); empty:
-- the chunk has nothing to prepare.
-- EXTERNAL: out of line and not compressed (quantised vectors do not compress), so the rows a search scans stay
-- as small as 0016 made them.
ALTER TABLE chunks ADD COLUMN prepared bytea;
ALTER TABLE chunks ALTER COLUMN prepared SET STORAGE EXTERNAL;
CREATE INDEX chunks_unprepared ON chunks (id) WHERE prepared IS NULL;

-- Preparing a chunk (the upkeep's backfill) changes nothing an answer says: it must not bump the corpus version
-- (sql/0006), which would empty the tenant's answer cache with every batch, and make every backfill transaction
-- take the tenant's row. So an UPDATE of chunks bumps it only for rows whose content changed.
CREATE FUNCTION bump_corpus_version_on_chunk_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tenants SET corpus_version = corpus_version + 1
    WHERE id IN (SELECT DISTINCT n.tenant_id FROM new_rows n JOIN old_rows o ON o.id = n.id
                 WHERE (n.tenant_id, n.document_id, n.position, n.heading_path, n.text, n.content_hash, n.embedding)
                       IS DISTINCT FROM
                       (o.tenant_id, o.document_id, o.position, o.heading_path, o.text, o.content_hash, o.embedding));
    RETURN NULL;
END $$;
DROP TRIGGER chunks_updated ON chunks;
CREATE TRIGGER chunks_updated AFTER UPDATE ON chunks REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bump_corpus_version_on_chunk_change();
