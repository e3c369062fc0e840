-- 0016: keep what a search reads of every candidate row in the row itself.
-- pgvector's type is stored EXTERNAL, so in a row made large by its text PostgreSQL moved the 1.5 KB embedding,
-- the largest value, out of line into the TOAST table: every distance an exact scan computed cost another index
-- lookup and page read (measured: an exact scan of 10,000 chunks 2.5x slower). PLAIN keeps it in the row. The
-- tsvector, which ts_rank reads for every row matching a keyword search, is kept in the row too where it fits,
-- compressed (MAIN); the text is what moves out of line instead.
-- The UPDATE rewrites every row (a fresh embedding value, and the tsvector generated again) so that the stored rows
-- follow the new storage: about 12 s per 20,000 chunks here; the table takes twice its size until VACUUM.
ALTER TABLE chunks ALTER COLUMN embedding SET STORAGE PLAIN;
ALTER TABLE chunks ALTER COLUMN tsv SET STORAGE MAIN;
UPDATE chunks SET embedding = embedding::real[]::vector, text = text;
