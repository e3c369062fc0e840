-- 0001: extensions, tenants and their API keys.
-- Keys are stored only as SHA-256 hashes of the secret; the prefix is kept to tell keys apart in listings.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('public', 'secret')),
    prefix        text NOT NULL,
    key_hash      bytea NOT NULL UNIQUE,
    name          text NOT NULL DEFAULT '',
    origins       text[] NOT NULL DEFAULT '{}',
    trial         boolean NOT NULL DEFAULT false,
    expires_at    timestamptz,
    quota         integer CHECK (quota IS NULL OR quota > 0),
    used          integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    CHECK (kind = 'secret' OR cardinality(origins) > 0),
    CHECK (kind = 'public' OR cardinality(origins) = 0)
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);
