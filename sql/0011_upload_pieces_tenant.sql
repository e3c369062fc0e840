-- 0011: upload_pieces carry their tenant, as every table of tenant data does: pieces are read with the tenant's
-- id in the query, and deleting a tenant removes them through their own foreign key.
ALTER TABLE upload_pieces ADD COLUMN tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE;
UPDATE upload_pieces p SET tenant_id = u.tenant_id FROM uploads u WHERE u.id = p.upload_id;
ALTER TABLE upload_pieces ALTER COLUMN tenant_id SET NOT NULL;
