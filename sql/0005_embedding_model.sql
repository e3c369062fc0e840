-- 0005: which embedding model made a document's vectors. Vectors of another model are never reused: a document
-- whose model differs from the running embedder's is fetched and embedded again by the next crawl or re-embed.
ALTER TABLE documents ADD COLUMN embedding_model text NOT NULL DEFAULT '';
