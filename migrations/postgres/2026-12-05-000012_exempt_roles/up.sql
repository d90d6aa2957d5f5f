-- Accounts that take no place: roles whose admissions are admitted and listed but
-- never counted, evicted or billed as peak (`exempt_roles`, on plans and as a site
-- override), and the mark on their sessions. Added columns with defaults only: the
-- previous release keeps running on this schema, and the sessions it writes are not
-- exempt.
ALTER TABLE plans ADD COLUMN exempt_roles TEXT NOT NULL DEFAULT '[]';
ALTER TABLE sites ADD COLUMN exempt_roles TEXT;
ALTER TABLE sessions ADD COLUMN exempt BOOLEAN NOT NULL DEFAULT false;

-- The open sessions that count, for the counts an admission reads (`NOT exempt` in
-- their text, so that the index answers them alone). The index of all open sessions
-- stays for the previous release's queries during a rolling upgrade.
CREATE INDEX sessions_open_counted ON sessions (site_id, expires_at, last_activity_at)
    WHERE ended_at IS NULL AND NOT exempt;

-- The counts kept in `site_counts` skip exempt sessions. An exempt session stays
-- exempt (the merge never changes the mark), so an update never moves one in or out.
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
