-- The SQLite form of the PostgreSQL migration of the same name.
-- Usage samples stored by change (src/domain/usage_runs.rs): a site's row is written
-- when its figures differ from its previous row or the minute had refusals, and holds
-- for every later minute the sampler covered until the site's next row. What the
-- per-minute rows said is kept exactly: the redundant rows go, the minutes sampled
-- become coverage intervals. The previous release keeps running on this schema (it
-- writes a row a site and minute, which reads the same; its minutes count once this
-- release's sampler covers them).

-- The minutes the sampler covered, as intervals [start_minute, end_minute), for the
-- whole fleet: one row per stretch of uninterrupted passes.
CREATE TABLE sampler_coverage (
    start_minute BIGINT PRIMARY KEY,
    end_minute   BIGINT NOT NULL
);

-- One row per minute whose pass a process claimed: the claim that makes one pass a
-- minute for the fleet, however many processes run; a pass not `done` whose holder
-- went quiet is taken over.
CREATE TABLE sampler_passes (
    minute     BIGINT PRIMARY KEY,
    holder     TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    done       BOOLEAN NOT NULL DEFAULT 0
);

-- Each site's latest figures (those of its latest row): what the next pass compares
-- with, read in one scan instead of a search per site.
CREATE TABLE usage_current (
    site_id       BIGINT PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
    minute        BIGINT NOT NULL,
    active        BIGINT NOT NULL,
    live          BIGINT NOT NULL,
    dangling      BIGINT NOT NULL,
    session_limit BIGINT NOT NULL
);

INSERT INTO sampler_coverage (start_minute, end_minute)
SELECT min(minute), max(minute) + 60000
FROM (SELECT minute, minute - 60000 * row_number() OVER (ORDER BY minute) AS island
      FROM (SELECT DISTINCT minute FROM usage_samples) d) m
GROUP BY island;

INSERT INTO usage_current (site_id, minute, active, live, dangling, session_limit)
SELECT u.site_id, u.minute, u.active, u.live, u.dangling, u.session_limit
FROM usage_samples u
WHERE u.minute = (SELECT max(x.minute) FROM usage_samples x WHERE x.site_id = u.site_id);

DELETE FROM usage_samples
WHERE (site_id, minute) IN (
    SELECT site_id, minute FROM (
        SELECT site_id, minute, denied, active, live, dangling, session_limit,
               lag(active) OVER w AS p_active, lag(live) OVER w AS p_live,
               lag(dangling) OVER w AS p_dangling, lag(session_limit) OVER w AS p_limit
        FROM usage_samples
        WINDOW w AS (PARTITION BY site_id ORDER BY minute)
    ) r
    WHERE denied = 0 AND active = p_active AND live = p_live AND dangling = p_dangling
      AND session_limit = p_limit
);
