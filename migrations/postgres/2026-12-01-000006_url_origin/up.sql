-- Whether a tenant (rather than the provider) chose the URL: a tenant's URLs never
-- reach loopback or link-local addresses (see domain/targets.rs).
ALTER TABLE sites ADD COLUMN webhook_url_by_tenant BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE tenants ADD COLUMN notify_url_by_tenant BOOLEAN NOT NULL DEFAULT FALSE;
