-- Accounts that take no place; see the PostgreSQL migration of the same name. SQLite
-- cannot replace a trigger: the counting triggers are dropped and created again,
-- skipping exempt sessions.
ALTER TABLE plans ADD COLUMN exempt_roles TEXT NOT NULL DEFAULT '[]';
ALTER TABLE sites ADD COLUMN exempt_roles TEXT;
ALTER TABLE sessions ADD COLUMN exempt BOOLEAN NOT NULL DEFAULT 0;

-- The open sessions that count, for the counts an admission reads (`NOT exempt` in
-- their text, so that the index answers them alone). The index of all open sessions
-- stays for the previous release's queries during a rolling upgrade.
CREATE INDEX sessions_open_counted ON sessions (site_id, expires_at, last_activity_at)
    WHERE ended_at IS NULL AND NOT exempt;

DROP TRIGGER sessions_counts_insert;
DROP TRIGGER sessions_counts_update;
DROP TRIGGER sessions_counts_delete;

CREATE TRIGGER sessions_counts_insert AFTER INSERT ON sessions
WHEN NEW.ended_at IS NULL AND NOT NEW.exempt
BEGIN
    UPDATE site_counts SET
        active = active + 1,
        dangling = dangling + (NEW.last_activity_at <= as_of - idle_ms)
    WHERE site_id = NEW.site_id AND NEW.expires_at > as_of;
END;

CREATE TRIGGER sessions_counts_update AFTER UPDATE OF last_activity_at, expires_at, ended_at
ON sessions
WHEN NOT NEW.exempt
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
WHEN OLD.ended_at IS NULL AND NOT OLD.exempt
BEGIN
    UPDATE site_counts SET
        active = active - 1,
        dangling = dangling - (OLD.last_activity_at <= as_of - idle_ms)
    WHERE site_id = OLD.site_id AND OLD.expires_at > as_of;
END;
