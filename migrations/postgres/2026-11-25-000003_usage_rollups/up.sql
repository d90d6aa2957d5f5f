-- Hour and day roll-ups of the per-minute usage samples. Minute samples are kept for
-- HEADCOUNT_SAMPLE_RETENTION_DAYS (35 by default); the roll-ups as long as sessions
-- (HEADCOUNT_SESSION_RETENTION_DAYS), so history at hour and day steps and the
-- billing percentile of older months outlive the minutes they were made from.
-- `bucket_ms` is 3600000 for an hour and 86400000 for a day; `at` is the bucket's
-- start in milliseconds since the epoch (UTC hours and days).
CREATE TABLE usage_rollups (
    site_id       BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    bucket_ms     BIGINT NOT NULL,
    at            BIGINT NOT NULL,
    max_active    BIGINT NOT NULL,
    max_live      BIGINT NOT NULL,
    max_dangling  BIGINT NOT NULL,
    denied        BIGINT NOT NULL,
    session_limit BIGINT NOT NULL,
    PRIMARY KEY (site_id, bucket_ms, at)
);

-- The sampler rolls up the last hours of every site, and retention deletes what is
-- older than its window, every minute: both select by time across all sites, which
-- the keys (site first) cannot serve, and would otherwise scan whole tables.
CREATE INDEX usage_samples_minute ON usage_samples (minute);
CREATE INDEX usage_rollups_at ON usage_rollups (at);
CREATE INDEX denials_at ON denials (at);

-- Roll up what the minute samples already hold.
INSERT INTO usage_rollups
    (site_id, bucket_ms, at, max_active, max_live, max_dangling, denied, session_limit)
SELECT site_id, 3600000, (minute / 3600000) * 3600000, MAX(active), MAX(live),
       MAX(dangling), CAST(SUM(denied) AS BIGINT), MAX(session_limit)
FROM usage_samples
GROUP BY site_id, (minute / 3600000) * 3600000;

INSERT INTO usage_rollups
    (site_id, bucket_ms, at, max_active, max_live, max_dangling, denied, session_limit)
SELECT site_id, 86400000, (at / 86400000) * 86400000, MAX(max_active), MAX(max_live),
       MAX(max_dangling), CAST(SUM(denied) AS BIGINT), MAX(session_limit)
FROM usage_rollups
WHERE bucket_ms = 3600000
GROUP BY site_id, (at / 86400000) * 86400000;
