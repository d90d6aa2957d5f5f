-- pgbench: one session's activity the naive way: a single-row upsert with the merge
-- rule of headcount (earliest start, latest activity and expiry), committed on its
-- own. headcount's one-event requests share commits instead; goal E1 is the ratio of
-- the two at the same clients.
\set site random(1, :sites)
\set n random(0, :sessions - 1)
INSERT INTO sessions (site_id, session, user_ref, started_at, last_activity_at, expires_at)
SELECT :site, md5(:site || '-' || :n), 'user-' || :n, t, t, t + 1209600000
FROM (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS t) now_ms
ON CONFLICT (site_id, session) DO UPDATE SET
    started_at = LEAST(sessions.started_at, excluded.started_at),
    last_activity_at = GREATEST(sessions.last_activity_at, excluded.last_activity_at),
    expires_at = GREATEST(sessions.expires_at, excluded.expires_at),
    user_ref = COALESCE(sessions.user_ref, excluded.user_ref);
