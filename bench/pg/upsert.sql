-- pgbench: the statement headcount runs for a batch of 500 session events on one
-- site: a multi-row insert that merges into existing rows with the monotone rule
-- (earliest start, latest activity and expiry, earliest end). Rows come from
-- generate_series rather than 5,500 bind parameters, which flatters the database a
-- little: the ratio to it is conservative. Each client writes into its own site, as
-- one site's agent sends its batches one after the other (headcount load does the same
-- in ingest-batch with --sites equal to --concurrency).
\set site :client_id + 1
\set first random(0, :sessions - 1)
INSERT INTO sessions (site_id, session, user_ref, started_at, last_activity_at, expires_at,
                      ended_at, end_reason, user_agent, ip, overage)
SELECT :site, md5(:site || '-' || ((:first + g) % :sessions)), 'user-' || ((:first + g) % :sessions),
       t, t, t + 1209600000, NULL, NULL, NULL, NULL, FALSE
FROM generate_series(0, 499) g,
     (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS t) now_ms
ON CONFLICT (site_id, session) DO UPDATE SET
    started_at = CASE WHEN excluded.started_at < sessions.started_at
                      THEN excluded.started_at ELSE sessions.started_at END,
    last_activity_at = CASE WHEN excluded.last_activity_at > sessions.last_activity_at
                            THEN excluded.last_activity_at ELSE sessions.last_activity_at END,
    expires_at = CASE WHEN excluded.expires_at > sessions.expires_at
                      THEN excluded.expires_at ELSE sessions.expires_at END,
    end_reason = CASE WHEN sessions.ended_at IS NULL OR excluded.ended_at < sessions.ended_at
                           OR (excluded.ended_at = sessions.ended_at
                               AND excluded.end_reason < sessions.end_reason)
                      THEN excluded.end_reason ELSE sessions.end_reason END,
    ended_at = CASE WHEN sessions.ended_at IS NULL OR excluded.ended_at < sessions.ended_at
                    THEN excluded.ended_at ELSE sessions.ended_at END,
    user_ref = CASE WHEN sessions.user_ref IS NULL THEN excluded.user_ref ELSE sessions.user_ref END,
    user_agent = CASE WHEN sessions.user_agent IS NULL THEN excluded.user_agent ELSE sessions.user_agent END,
    ip = CASE WHEN sessions.ip IS NULL THEN excluded.ip ELSE sessions.ip END;
