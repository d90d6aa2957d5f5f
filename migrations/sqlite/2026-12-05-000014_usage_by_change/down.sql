-- Back to a row per site and covered minute: every dropped row is written again from
-- the row before it (without refusals), then the new tables go.
WITH RECURSIVE minutes(minute, stop) AS (
    SELECT start_minute, end_minute FROM sampler_coverage
    UNION ALL
    SELECT minute + 60000, stop FROM minutes WHERE minute + 60000 < stop
)
INSERT OR IGNORE INTO usage_samples (site_id, minute, active, live, dangling, denied, session_limit)
SELECT s.site_id, m.minute, u.active, u.live, u.dangling, 0, u.session_limit
FROM minutes m
JOIN (SELECT DISTINCT site_id FROM usage_samples) s
JOIN usage_samples u ON u.site_id = s.site_id
 AND u.minute = (SELECT max(x.minute) FROM usage_samples x
                 WHERE x.site_id = s.site_id AND x.minute <= m.minute);
DROP TABLE usage_current;
DROP TABLE sampler_passes;
DROP TABLE sampler_coverage;
