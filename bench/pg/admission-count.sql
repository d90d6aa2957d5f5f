-- pgbench: the count at the heart of an admission: a site's active sessions, over the
-- partial index of sessions that have not ended.
\set site random(1, :sites)
SELECT count(*) FROM sessions
WHERE site_id = :site AND ended_at IS NULL
  AND expires_at > (extract(epoch FROM now()) * 1000)::bigint;
