-- Each site's count of active and dangling sessions at one instant (`as_of`); see the
-- PostgreSQL migration of the same name for the why. SQLite has row-level triggers
-- only; they run inside the writing statement, in the process.
CREATE TABLE site_counts (
    site_id  INTEGER PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
    as_of    BIGINT NOT NULL,
    idle_ms  BIGINT NOT NULL,
    active   BIGINT NOT NULL,
    dangling BIGINT NOT NULL
);

CREATE INDEX sessions_open_by_expiry ON sessions (site_id, expires_at, last_activity_at)
    WHERE ended_at IS NULL;

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
