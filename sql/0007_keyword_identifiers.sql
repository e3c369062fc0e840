-- 0007: full-text search that finds identifiers and headings.
-- PostgreSQL's parser keeps `os.EX_NOPERM`, `errno.ENOTEMPTY` or `shutil.copytree` as single tokens, so a
-- question naming `EX_NOPERM` or `copytree` found nothing. Dots, underscores and slashes now separate words, in
-- the documents here and in the questions (the pgvector store). The chunk's heading path (on API reference pages
-- often the function's signature) is searched too, at the body's weight: weighting headings higher, or ranking
-- with length normalisation, found fewer answering pages on Python's library reference (perf/RESULTS.md).
CREATE FUNCTION bitbd_search_text(heading_path text[], body text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_tsvector('english'::regconfig,
                       regexp_replace(coalesce(array_to_string(heading_path, ' '), '') || E'\n' || body,
                                      '[._/]+', ' ', 'g'))
$$;

DROP INDEX chunks_tsv;
ALTER TABLE chunks DROP COLUMN tsv;
ALTER TABLE chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS (bitbd_search_text(heading_path, text)) STORED;
CREATE INDEX chunks_tsv ON chunks USING gin (tsv);
