-- Keys that name the site, so that every per-site table can be distributed by
-- `site_id` (Citus: `headcount migrate --citus`, docs/scaling.md). Every row is kept.
-- While the previous release still runs on this schema: it addresses rows by `id`
-- alone (still unique: each comes from the table's sequence), it writes delivery
-- attempts without `site_id` (filled in by a trigger below), and it creates sites
-- without a `site_slugs` row (the slug stays unique on `sites` itself on one
-- PostgreSQL; only a distributed schema drops that constraint).

-- The fleet-wide register of site slugs: what keeps slugs unique once `sites` is
-- distributed by `id` (Citus refuses a unique key without the distribution column).
CREATE TABLE site_slugs (
    slug    TEXT PRIMARY KEY,
    site_id BIGINT NOT NULL
);
INSERT INTO site_slugs (slug, site_id) SELECT slug, id FROM sites;

ALTER TABLE sessions DROP CONSTRAINT sessions_pkey, ADD PRIMARY KEY (site_id, id);
ALTER TABLE denials DROP CONSTRAINT denials_pkey, ADD PRIMARY KEY (site_id, id);
ALTER TABLE site_plan_history DROP CONSTRAINT site_plan_history_pkey,
    ADD PRIMARY KEY (site_id, id);
ALTER TABLE scheduled_changes DROP CONSTRAINT scheduled_changes_pkey,
    ADD PRIMARY KEY (site_id, id);
ALTER TABLE site_boosts DROP CONSTRAINT site_boosts_pkey, ADD PRIMARY KEY (site_id, id);

-- Every push belongs to a site (the tenant's and the provider's alerts are about one).
ALTER TABLE delivery_attempts ADD COLUMN site_id BIGINT;
UPDATE delivery_attempts a SET site_id = o.site_id FROM outbox o WHERE o.id = a.outbox_id;
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_outbox_id_fkey;
ALTER TABLE outbox ALTER COLUMN site_id SET NOT NULL;
ALTER TABLE outbox DROP CONSTRAINT outbox_pkey, ADD PRIMARY KEY (site_id, id);
ALTER TABLE outbox DROP CONSTRAINT outbox_webhook_id_key,
    ADD CONSTRAINT outbox_site_webhook UNIQUE (site_id, webhook_id);
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_pkey,
    ADD PRIMARY KEY (site_id, id);
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_outbox
    FOREIGN KEY (site_id, outbox_id) REFERENCES outbox (site_id, id) ON DELETE CASCADE;
DROP INDEX delivery_attempts_outbox;
CREATE INDEX delivery_attempts_by_outbox ON delivery_attempts (site_id, outbox_id);

-- The previous release records attempts by `outbox_id` alone; the push's site is
-- looked up for it (before the key's NOT NULL is checked).
CREATE FUNCTION delivery_attempts_site() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.site_id IS NULL THEN
        SELECT o.site_id INTO NEW.site_id FROM outbox o WHERE o.id = NEW.outbox_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER delivery_attempts_site BEFORE INSERT ON delivery_attempts
    FOR EACH ROW EXECUTE FUNCTION delivery_attempts_site();

-- The counting triggers, one site at a time: the same arithmetic as before
-- (2026-12-05-000012), but no statement joins a transition table with `site_counts`,
-- which Citus cannot plan on a distributed table ("unrecognized RTE kind"). Each
-- statement on `site_counts` names one site, so on Citus it runs on the shard beside
-- the sessions' shard. A batch of rows is still one UPDATE per changed site.
CREATE OR REPLACE FUNCTION site_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s record;
    k record;
    da bigint;
    dd bigint;
BEGIN
    FOR s IN SELECT DISTINCT n.site_id FROM new_rows n WHERE NOT n.exempt LOOP
        SELECT c.as_of, c.idle_ms INTO k FROM site_counts c WHERE c.site_id = s.site_id;
        CONTINUE WHEN NOT FOUND;
        SELECT count(*) FILTER (WHERE n.ended_at IS NULL AND n.expires_at > k.as_of),
               count(*) FILTER (WHERE n.ended_at IS NULL AND n.expires_at > k.as_of
                                  AND n.last_activity_at <= k.as_of - k.idle_ms)
          INTO da, dd
          FROM new_rows n WHERE n.site_id = s.site_id AND NOT n.exempt;
        IF da <> 0 OR dd <> 0 THEN
            UPDATE site_counts c SET active = c.active + da, dangling = c.dangling + dd
             WHERE c.site_id = s.site_id;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION site_counts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s record;
    k record;
    da bigint;
    dd bigint;
BEGIN
    FOR s IN SELECT DISTINCT n.site_id FROM new_rows n WHERE NOT n.exempt LOOP
        SELECT c.as_of, c.idle_ms INTO k FROM site_counts c WHERE c.site_id = s.site_id;
        CONTINUE WHEN NOT FOUND;
        SELECT coalesce(sum((n.ended_at IS NULL AND n.expires_at > k.as_of)::int
                          - (o.ended_at IS NULL AND o.expires_at > k.as_of)::int), 0),
               coalesce(sum((n.ended_at IS NULL AND n.expires_at > k.as_of
                             AND n.last_activity_at <= k.as_of - k.idle_ms)::int
                          - (o.ended_at IS NULL AND o.expires_at > k.as_of
                             AND o.last_activity_at <= k.as_of - k.idle_ms)::int), 0)
          INTO da, dd
          FROM new_rows n JOIN old_rows o ON o.id = n.id
         WHERE n.site_id = s.site_id AND NOT n.exempt;
        IF da <> 0 OR dd <> 0 THEN
            UPDATE site_counts c SET active = c.active + da, dangling = c.dangling + dd
             WHERE c.site_id = s.site_id;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION site_counts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s record;
    k record;
    da bigint;
    dd bigint;
BEGIN
    FOR s IN SELECT DISTINCT o.site_id FROM old_rows o WHERE NOT o.exempt LOOP
        SELECT c.as_of, c.idle_ms INTO k FROM site_counts c WHERE c.site_id = s.site_id;
        CONTINUE WHEN NOT FOUND;
        SELECT count(*) FILTER (WHERE o.ended_at IS NULL AND o.expires_at > k.as_of),
               count(*) FILTER (WHERE o.ended_at IS NULL AND o.expires_at > k.as_of
                                  AND o.last_activity_at <= k.as_of - k.idle_ms)
          INTO da, dd
          FROM old_rows o WHERE o.site_id = s.site_id AND NOT o.exempt;
        IF da <> 0 OR dd <> 0 THEN
            UPDATE site_counts c SET active = c.active - da, dangling = c.dangling - dd
             WHERE c.site_id = s.site_id;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
