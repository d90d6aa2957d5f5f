-- The counting triggers as they were, then the columns.
DROP TRIGGER sessions_counts_insert;
DROP TRIGGER sessions_counts_update;
DROP TRIGGER sessions_counts_delete;

CREATE TRIGGER sessions_counts_insert AFTER INSERT ON sessions
WHEN NEW.ended_at IS NULL
BEGIN
    UPDATE site_counts SET
        active = active + 1,
        dangling = dangling + (NEW.last_activity_at <= as_of - idle_ms)
    WHERE site_id = NEW.site_id AND NEW.expires_at > as_of;
END;

CREATE TRIGGER sessions_counts_update AFTER UPDATE OF last_activity_at, expires_at, ended_at
ON sessions
BEGIN
    UPDATE site_counts SET
        active = active
            + (NEW.ended_at IS NULL AND NEW.expires_at > as_of)
            - (OLD.ended_at IS NULL AND OLD.expires_at > as_of),
        dangling = dangling
            + (NEW.ended_at IS NULL AND NEW.expires_at > as_of
               AND NEW.last_activity_at <= as_of - idle_ms)
            - (OLD.ended_at IS NULL AND OLD.expires_at > as_of
               AND OLD.last_activity_at <= as_of - idle_ms)
    WHERE site_id = NEW.site_id
      AND ((NEW.ended_at IS NULL AND NEW.expires_at > as_of)
             <> (OLD.ended_at IS NULL AND OLD.expires_at > as_of)
        OR (NEW.ended_at IS NULL AND NEW.expires_at > as_of
            AND NEW.last_activity_at <= as_of - idle_ms)
             <> (OLD.ended_at IS NULL AND OLD.expires_at > as_of
                 AND OLD.last_activity_at <= as_of - idle_ms));
END;

CREATE TRIGGER sessions_counts_delete AFTER DELETE ON sessions
WHEN OLD.ended_at IS NULL
BEGIN
    UPDATE site_counts SET
        active = active - 1,
        dangling = dangling - (OLD.last_activity_at <= as_of - idle_ms)
    WHERE site_id = OLD.site_id AND OLD.expires_at > as_of;
END;

DROP INDEX sessions_open_counted;
ALTER TABLE sessions DROP COLUMN exempt;
ALTER TABLE sites DROP COLUMN exempt_roles;
ALTER TABLE plans DROP COLUMN exempt_roles;
