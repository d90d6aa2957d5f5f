-- Seeds one month (2026-10) for the billing export benchmark: :sites sites of
-- :tenants tenants, :sessions sessions spread evenly over the month and the sites,
-- 100 refusals per site, one usage sample per site and minute when :samples is 1, and
-- a mid-month plan change on every tenth site. Run on a migrated, empty database.
\set month_start 1790812800000
\set month_ms 2678400000

INSERT INTO plans (code, name, session_limit, count_mode, over_limit, overage_percent,
    idle_timeout_seconds, session_ttl_seconds, limit_message, monthly_price_cents,
    overage_unit_price_cents, currency, created_at, updated_at)
VALUES ('basic', 'Basic', 50, 'active', 'reject', 0, 1800, 86400, '', 2900, 0, 'EUR', 0, 0),
       ('flex', 'Flex', 50, 'active', 'allow_overage', 20, 1800, 86400, '', 4900, 150, 'EUR', 0, 0);

INSERT INTO tenants (slug, name, notify_secret, created_at, updated_at)
SELECT 'tenant-' || t, 'Tenant ' || t, 'secret', 0, 0 FROM generate_series(1, :tenants) t;

INSERT INTO sites (slug, tenant_id, plan_id, name, webhook_secret, config_version,
    created_at, updated_at)
SELECT 'site-' || s, 1 + (s - 1) % :tenants, 1, 'Site ' || s, 'secret', 1, 0, 0
FROM generate_series(1, :sites) s;
INSERT INTO site_slugs (slug, site_id) SELECT slug, id FROM sites;

INSERT INTO site_plan_history (site_id, plan_id, session_limit, over_limit, effective_from)
SELECT id, 1, 50, 'reject', 0 FROM sites;
INSERT INTO site_plan_history (site_id, plan_id, session_limit, over_limit, effective_from)
SELECT id, 2, 50, 'allow_overage', :month_start + :month_ms / 2 FROM sites WHERE id % 10 = 0;

-- Session i starts at an even share of the month, lasts 5 to 120 minutes, and belongs
-- to site i mod sites; one in seven is still open at the month's end.
INSERT INTO sessions (site_id, session, user_ref, started_at, last_activity_at,
    expires_at, ended_at, end_reason)
SELECT 1 + i % :sites, 's' || i, 'u' || (i % 997),
       :month_start + i * (:month_ms / :sessions),
       :month_start + i * (:month_ms / :sessions) + 60000 * (5 + i % 116),
       :month_start + i * (:month_ms / :sessions) + 86400000,
       CASE WHEN i % 7 = 0 THEN NULL
            ELSE :month_start + i * (:month_ms / :sessions) + 60000 * (5 + i % 116) END,
       CASE WHEN i % 7 = 0 THEN NULL ELSE 'logout' END
FROM generate_series(0, :sessions - 1) i;

INSERT INTO denials (site_id, at, outcome)
SELECT 1 + i % :sites, :month_start + i * (:month_ms / (100 * :sites)), 'limit_reached'
FROM generate_series(0, 100 * :sites - 1) i;

INSERT INTO usage_samples (site_id, minute, active, live, dangling, denied, session_limit)
SELECT s, :month_start + m * 60000, (s + m) % 40, (s + m) % 40, 0, 0, 50
FROM generate_series(1, :sites) s, generate_series(0, :month_ms / 60000 - 1) m
WHERE :samples = 1;

ANALYZE;
