-- 0010: no tenant name reads as a tenant id (32 hex digits, with dashes anywhere), so that a reference to a
-- tenant is never ambiguous: one that reads as an id is an id, anything else is a name (bitbd/tenancy.py).
-- A tenant created earlier with such a name could not be reached by it (the id lookup won), and a delete "by
-- that name" would have hit the tenant whose id it is: it is renamed 'renamed-<its own id>' here.
UPDATE tenants SET name = 'renamed-' || id::text WHERE replace(name, '-', '') ~* '^[0-9a-f]{32}$';
ALTER TABLE tenants ADD CONSTRAINT tenants_name_not_an_id CHECK (replace(name, '-', '') !~* '^[0-9a-f]{32}$');
