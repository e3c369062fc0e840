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
