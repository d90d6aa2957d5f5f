-- Whether a tenant (rather than the provider) chose the URL: a tenant's URLs never
-- reach loopback or link-local addresses (see domain/targets.rs).
ALTER TABLE sites ADD COLUMN webhook_url_by_tenant BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE tenants ADD COLUMN notify_url_by_tenant BOOLEAN NOT NULL DEFAULT FALSE;
-- Who set the URLs stored before is not known: judge them as a tenant's (the safe
-- reading); the provider lifts that by setting the URL again with an admin token.
UPDATE sites SET webhook_url_by_tenant = TRUE WHERE webhook_url IS NOT NULL;
UPDATE tenants SET notify_url_by_tenant = TRUE WHERE notify_url IS NOT NULL;
