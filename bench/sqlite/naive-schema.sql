-- The naive SQLite loops' database: headcount's sessions table (bench/sqlite/schema.sql,
-- read first) filled as bench/pg/schema.sql fills PostgreSQL's, :sites sites of
-- :sessions open sessions each, and a scratch sites table holding each site's limit
-- (ten times the pool, so that admissions measure the admit path). bench/run fills in
-- @SITES@ and @SESSIONS@.
CREATE TABLE sites (
    id            INTEGER PRIMARY KEY,
    session_limit BIGINT NOT NULL
);
WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < @SITES@)
INSERT INTO sites (id, session_limit) SELECT x, 10 * @SESSIONS@ FROM s;
WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < @SITES@),
     n(y) AS (SELECT 0 UNION ALL SELECT y + 1 FROM n WHERE y < @SESSIONS@ - 1),
     now_ms(t) AS (SELECT CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
INSERT INTO sessions (site_id, session, user_ref, started_at, last_activity_at, expires_at)
SELECT x, 's' || x || '-' || y, 'user-' || y, t, t, t + 1209600000 FROM s, n, now_ms;
ANALYZE;
