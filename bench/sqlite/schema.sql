-- The sessions table of headcount's SQLite migration, on its own, with the pragmas
-- headcount sets on every connection.
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA wal_autocheckpoint = 4000;
CREATE TABLE sessions (
    id               INTEGER PRIMARY KEY,
    site_id          BIGINT NOT NULL,
    session          TEXT NOT NULL,
    user_ref         TEXT,
    started_at       BIGINT NOT NULL,
    last_activity_at BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    ended_at         BIGINT,
    end_reason       TEXT,
    user_agent       TEXT,
    ip               TEXT,
    overage          BOOLEAN NOT NULL DEFAULT 0,
    UNIQUE (site_id, session)
);
CREATE INDEX sessions_open_by_site ON sessions (site_id, last_activity_at, expires_at)
    WHERE ended_at IS NULL;
CREATE INDEX sessions_site_user ON sessions (site_id, user_ref);
CREATE INDEX sessions_site_activity ON sessions (site_id, last_activity_at, id);
CREATE INDEX sessions_ended ON sessions (ended_at) WHERE ended_at IS NOT NULL;
