-- 0014: what an answer rested on, for the content-gaps report: whether bitbd refused ("I don't know") and the
-- best cosine similarity its question found (NULL: not measured, e.g. served from the cache).
ALTER TABLE messages ADD COLUMN refused boolean NOT NULL DEFAULT false;
ALTER TABLE messages ADD COLUMN support real;
CREATE INDEX messages_problems ON messages (tenant_id, created_at DESC) WHERE role = 'assistant';
