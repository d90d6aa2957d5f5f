ALTER TABLE tenants DROP COLUMN notify_url_by_tenant;
ALTER TABLE sites DROP COLUMN webhook_url_by_tenant;
