-- 0008: what the live events feed (GET /v1/admin/events) and the console read.
-- Any change to a job or one of its items notifies channel bitbd_jobs with the job id, from whichever process
-- makes it (server or `bitbd worker`); the server fetches changed jobs once and fans them out to subscribers.
-- NOTIFY coalesces equal payloads within a transaction, so a batch of items costs one notification.
CREATE FUNCTION notify_job_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bitbd_jobs', NEW.id::text);
    RETURN NULL;
END $$;
CREATE FUNCTION notify_job_item_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bitbd_jobs', NEW.job_id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_changed AFTER INSERT OR UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION notify_job_change();
CREATE TRIGGER job_items_changed AFTER INSERT OR UPDATE ON job_items
    FOR EACH ROW EXECUTE FUNCTION notify_job_item_change();

-- Recent answers across tenants (questions per minute, latency percentiles, the recent-questions view).
CREATE INDEX messages_recent_answers ON messages (created_at) WHERE role = 'assistant';
