-- The counting functions as they were, then the columns.
CREATE OR REPLACE FUNCTION site_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE site_counts c SET active = c.active + d.da, dangling = c.dangling + d.dd
    FROM (
        SELECT n.site_id,
               count(*) FILTER (WHERE n.ended_at IS NULL AND n.expires_at > k.as_of) AS da,
               count(*) FILTER (WHERE n.ended_at IS NULL AND n.expires_at > k.as_of
                                  AND n.last_activity_at <= k.as_of - k.idle_ms) AS dd
        FROM new_rows n JOIN site_counts k ON k.site_id = n.site_id
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
        GROUP BY o.site_id
    ) d
    WHERE c.site_id = d.site_id AND (d.da <> 0 OR d.dd <> 0);
    RETURN NULL;
END $$;

DROP INDEX sessions_open_counted;
ALTER TABLE sessions DROP COLUMN exempt;
ALTER TABLE sites DROP COLUMN exempt_roles;
ALTER TABLE plans DROP COLUMN exempt_roles;
