-- Each site's count of active and dangling sessions at one instant (`as_of`), kept
-- in the same transaction as every change to its sessions, so that an admission
-- reads a row instead of counting every open session of the site. Time moves a
-- session out of the count (it expires) or into dangling (it goes idle) without any
-- write; the admission applies those moves from `as_of` to its own instant through
-- the index of open sessions by expiry (src/db/counts.rs). A site without a row, or
-- whose idle timeout changed, is counted once in full and gets a row.
CREATE TABLE site_counts (
    site_id  BIGINT PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
    as_of    BIGINT NOT NULL,
    idle_ms  BIGINT NOT NULL,
    active   BIGINT NOT NULL,
    dangling BIGINT NOT NULL
);

CREATE INDEX sessions_open_by_expiry ON sessions (site_id, expires_at, last_activity_at)
    WHERE ended_at IS NULL;

-- The triggers judge each changed row before and after at the site's `as_of`:
-- active when not ended and expires_at > as_of; dangling when also
-- last_activity_at <= as_of - idle_ms. Statement-level with transition tables, so a
-- merge of 500 rows costs one UPDATE of the counts, and only sites whose counts
-- change are written. Every writer of a site's sessions holds the site's row lock
-- (src/db/mod.rs lock_sites), so `as_of` cannot move under a running statement.
CREATE FUNCTION site_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE FUNCTION site_counts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE FUNCTION site_counts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER sessions_counts_insert AFTER INSERT ON sessions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION site_counts_inserted();
CREATE TRIGGER sessions_counts_update AFTER UPDATE ON sessions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION site_counts_updated();
CREATE TRIGGER sessions_counts_delete AFTER DELETE ON sessions
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION site_counts_deleted();
