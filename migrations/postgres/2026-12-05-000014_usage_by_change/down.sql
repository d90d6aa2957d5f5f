-- Back to a row per site and covered minute: every dropped row is written again from
-- the row before it (without refusals), then the new tables go.
INSERT INTO usage_samples (site_id, minute, active, live, dangling, denied, session_limit)
SELECT r.site_id, g.minute, r.active, r.live, r.dangling, 0, r.session_limit
FROM sampler_coverage c
CROSS JOIN LATERAL generate_series(c.start_minute, c.end_minute - 60000, 60000) AS g(minute)
JOIN LATERAL (
    SELECT u.site_id, u.active, u.live, u.dangling, u.session_limit
    FROM (SELECT DISTINCT site_id FROM usage_samples) s
    CROSS JOIN LATERAL (
        SELECT * FROM usage_samples x
        WHERE x.site_id = s.site_id AND x.minute <= g.minute
        ORDER BY x.minute DESC LIMIT 1
    ) u
) r ON true
ON CONFLICT (site_id, minute) DO NOTHING;
DROP TABLE usage_current;
DROP TABLE sampler_passes;
DROP TABLE sampler_coverage;
