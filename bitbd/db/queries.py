"""SQL used by the core, as constants with `$n` parameters. Every tenant-data query filters on tenant_id."""

from __future__ import annotations

TENANT_COLUMNS = "id, name, created_at"
KEY_COLUMNS = (
    "id, tenant_id, kind, prefix, name, origins, trial, expires_at, quota, used, created_at, last_used_at, revoked_at"
)

INSERT_TENANT = f"INSERT INTO tenants (name) VALUES ($1) RETURNING {TENANT_COLUMNS}"
LIST_TENANTS = f"""
SELECT {TENANT_COLUMNS},
       (SELECT count(*) FROM api_keys k WHERE k.tenant_id = t.id AND k.revoked_at IS NULL) AS active_keys,
       (SELECT count(*) FROM documents d WHERE d.tenant_id = t.id) AS documents,
       (SELECT count(*) FROM chunks c WHERE c.tenant_id = t.id) AS chunks,
       (SELECT max(j.finished_at) FROM jobs j WHERE j.tenant_id = t.id) AS last_crawl,
       (SELECT coalesce(sum(k.used), 0) FROM api_keys k WHERE k.tenant_id = t.id) AS questions,
       (SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
        WHERE m.tenant_id = t.id AND m.role = 'user' AND c.key_id IS NULL) AS admin_questions,
       (SELECT min(s.next_crawl_at) FROM sources s WHERE s.tenant_id = t.id AND s.refresh_seconds IS NOT NULL)
        AS next_crawl
FROM tenants t ORDER BY created_at, name"""
TENANT_BY_ID = f"SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"
TENANT_BY_NAME = f"SELECT {TENANT_COLUMNS} FROM tenants WHERE name = $1"
DELETE_TENANT = "DELETE FROM tenants WHERE id = $1 RETURNING id"

INSERT_KEY = f"""
INSERT INTO api_keys (tenant_id, kind, prefix, key_hash, name, origins, trial, expires_at, quota)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {KEY_COLUMNS}"""
LIST_KEYS = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at"
REVOKE_KEY = f"""
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE tenant_id = $1 AND id = $2 RETURNING {KEY_COLUMNS}"""
KEY_BY_HASH = f"SELECT {KEY_COLUMNS}, key_hash FROM api_keys WHERE key_hash = $1"
# Written at most once a minute per key, so authentication stays a read on the hot path.
TOUCH_KEY = """
UPDATE api_keys SET last_used_at = now()
WHERE tenant_id = $1 AND id = $2 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')"""
KEY_BY_ID = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2"
CHARGE_KEY = """
UPDATE api_keys SET used = used + 1, last_used_at = now()
WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
  AND (quota IS NULL OR used < quota)
RETURNING used"""
REFUND_KEY = "UPDATE api_keys SET used = used - 1 WHERE tenant_id = $1 AND id = $2 AND used > 0"
