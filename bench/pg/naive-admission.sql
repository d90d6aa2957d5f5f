-- pgbench: an admission the naive way, one transaction each: lock the site's row,
-- count its active sessions (the predicate of headcount's count: not ended, not
-- expired), admit under the limit with a single-row upsert of the session, commit.
-- headcount's admission does the same work but decides the admissions that arrive
-- together in one transaction; goal A2 is the ratio of the two at the same clients.
\set site random(1, :sites)
\set n random(0, :sessions - 1)
BEGIN;
SELECT session_limit AS lim FROM sites WHERE id = :site FOR UPDATE \gset
SELECT count(*) AS active FROM sessions
WHERE site_id = :site AND ended_at IS NULL
  AND expires_at > (extract(epoch FROM now()) * 1000)::bigint \gset
\if :active < :lim
INSERT INTO sessions (site_id, session, user_ref, started_at, last_activity_at, expires_at)
SELECT :site, md5(:site || '-' || :n), 'user-' || :n, t, t, t + 1209600000
FROM (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS t) now_ms
ON CONFLICT (site_id, session) DO UPDATE SET
    last_activity_at = GREATEST(sessions.last_activity_at, excluded.last_activity_at),
    expires_at = GREATEST(sessions.expires_at, excluded.expires_at);
\endif
COMMIT;
