-- The sessions table of headcount's PostgreSQL migration, on its own (no foreign key
-- to a sites table), with the same unique key and the same partial index, filled with
-- :sites sites of :sessions open sessions each: the shape the admission scenario
-- reaches once every session of its pool has been admitted. Beside it, a scratch
-- sites table with just what the naive admission reads: the row it locks and the
-- limit (ten times the pool, so that admissions measure the admit path).
DROP TABLE IF EXISTS sessions;
DROP TABLE IF EXISTS sites;
CREATE TABLE sites (
    id            BIGINT PRIMARY KEY,
    session_limit BIGINT NOT NULL
);
INSERT INTO sites (id, session_limit) SELECT s, 10 * :sessions FROM generate_series(1, :sites) s;
CREATE TABLE sessions (
    id               BIGSERIAL PRIMARY KEY,
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
    overage          BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (site_id, session)
);
CREATE INDEX sessions_open_by_site ON sessions (site_id, last_activity_at, expires_at)
    WHERE ended_at IS NULL;
CREATE INDEX sessions_site_user ON sessions (site_id, user_ref);
CREATE INDEX sessions_site_activity ON sessions (site_id, last_activity_at DESC, id DESC);
CREATE INDEX sessions_ended ON sessions (ended_at) WHERE ended_at IS NOT NULL;

INSERT INTO sessions (site_id, session, user_ref, started_at, last_activity_at, expires_at)
SELECT s, md5(s || '-' || n), 'user-' || n, t, t, t + 1209600000
FROM generate_series(1, :sites) s, generate_series(0, :sessions - 1) n,
     (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS t) now_ms;
VACUUM ANALYZE sites;
VACUUM ANALYZE sessions;
