-- The keys and counting functions as they were (2026-12-05-000012); attempts keep
-- their rows, without the added column.
DROP TRIGGER delivery_attempts_site ON delivery_attempts;
DROP FUNCTION delivery_attempts_site();
DROP INDEX delivery_attempts_by_outbox;
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_outbox;
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_pkey, ADD PRIMARY KEY (id);
ALTER TABLE delivery_attempts DROP COLUMN site_id;
ALTER TABLE outbox DROP CONSTRAINT outbox_site_webhook, ADD UNIQUE (webhook_id);
ALTER TABLE outbox DROP CONSTRAINT outbox_pkey, ADD PRIMARY KEY (id);
ALTER TABLE outbox ALTER COLUMN site_id DROP NOT NULL;
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_outbox_id_fkey
    FOREIGN KEY (outbox_id) REFERENCES outbox (id) ON DELETE CASCADE;
CREATE INDEX delivery_attempts_outbox ON delivery_attempts (outbox_id);
ALTER TABLE site_boosts DROP CONSTRAINT site_boosts_pkey, ADD PRIMARY KEY (id);
ALTER TABLE scheduled_changes DROP CONSTRAINT scheduled_changes_pkey, ADD PRIMARY KEY (id);
ALTER TABLE site_plan_history DROP CONSTRAINT site_plan_history_pkey, ADD PRIMARY KEY (id);
ALTER TABLE denials DROP CONSTRAINT denials_pkey, ADD PRIMARY KEY (id);
ALTER TABLE sessions DROP CONSTRAINT sessions_pkey, ADD PRIMARY KEY (id);
DROP TABLE site_slugs;

CREATE OR REPLACE FUNCTION site_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE site_counts c SET active = c.active + d.da, dangling = c.dangling + d.dd
    FROM (
        SELECT n.site_id,
               count(*) FILTER (WHERE n.ended_at IS NULL AND n.expires_at > k.as_of) AS da,
               count(*) FILTER (WHERE n.ended_at IS NULL AND n.expires_at > k.as_of
                                  AND n.last_activity_at <= k.as_of - k.idle_ms) AS dd
        FROM new_rows n JOIN site_counts k ON k.site_id = n.site_id
        WHERE NOT n.exempt
        GROUP BY n.site_id
    ) d
    WHERE c.site_id = d.site_id AND (d.da <> 0 OR d.dd <> 0);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION site_counts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE site_counts c SET active = c.active + d.da, dangling = c.dangling + d.dd
    FROM (
        SELECT n.site_id,
               sum((n.ended_at IS NULL AND n.expires_at > k.as_of)::int
                 - (o.ended_at IS NULL AND o.expires_at > k.as_of)::int) AS da,
               sum((n.ended_at IS NULL AND n.expires_at > k.as_of
                    AND n.last_activity_at <= k.as_of - k.idle_ms)::int
                 - (o.ended_at IS NULL AND o.expires_at > k.as_of
                    AND o.last_activity_at <= k.as_of - k.idle_ms)::int) AS dd
        FROM new_rows n
        JOIN old_rows o ON o.id = n.id
        JOIN site_counts k ON k.site_id = n.site_id
        WHERE NOT n.exempt
        GROUP BY n.site_id
    ) d
    WHERE c.site_id = d.site_id AND (d.da <> 0 OR d.dd <> 0);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION site_counts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE site_counts c SET active = c.active - d.da, dangling = c.dangling - d.dd
    FROM (
        SELECT o.site_id,
               count(*) FILTER (WHERE o.ended_at IS NULL AND o.expires_at > k.as_of) AS da,
               count(*) FILTER (WHERE o.ended_at IS NULL AND o.expires_at > k.as_of
                                  AND o.last_activity_at <= k.as_of - k.idle_ms) AS dd
        FROM old_rows o JOIN site_counts k ON k.site_id = o.site_id
        WHERE NOT o.exempt
        GROUP BY o.site_id
    ) d
    WHERE c.site_id = d.site_id AND (d.da <> 0 OR d.dd <> 0);
    RETURN NULL;
END $$;
