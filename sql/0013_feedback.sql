-- 0013: visitors' ratings of answers, one per answer (a later rating replaces it); deleted with the message,
-- its conversation or its tenant.
CREATE TABLE feedback (
    message_id  bigint PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    rating      text NOT NULL CHECK (rating IN ('up', 'down')),
    comment     text NOT NULL DEFAULT '' CHECK (length(comment) <= 2000),
    key_id      uuid REFERENCES api_keys (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feedback_tenant ON feedback (tenant_id, rating, updated_at DESC);
