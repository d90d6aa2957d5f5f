-- Limits over time: changes scheduled for a site or a plan, and temporary boosts of a
-- site's limit. New tables only: the previous release keeps running on this schema
-- and ignores them.

-- A change of a site to apply once at `at`: `body` holds `plan` and the overrides, as
-- a PATCH of the site takes them. `status`: pending, done, failed or cancelled; a
-- process claims a pending one with a conditional update, so it runs once.
CREATE TABLE scheduled_changes (
    id          INTEGER PRIMARY KEY,
    site_id     BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    at          BIGINT NOT NULL,
    body        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    by_provider BOOLEAN NOT NULL,
    actor       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    finished_at BIGINT,
    error       TEXT
);
CREATE INDEX scheduled_changes_due ON scheduled_changes (status, at);
CREATE INDEX scheduled_changes_site ON scheduled_changes (site_id, id);

-- A change of a plan to apply once at `at` (`body`: the plan's changes); the same
-- states. Kept apart from the sites' changes: it belongs to no site.
CREATE TABLE plan_scheduled_changes (
    id          INTEGER PRIMARY KEY,
    plan_id     BIGINT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    at          BIGINT NOT NULL,
    body        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    actor       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    finished_at BIGINT,
    error       TEXT
);
CREATE INDEX plan_scheduled_changes_due ON plan_scheduled_changes (status, at);
CREATE INDEX plan_scheduled_changes_plan ON plan_scheduled_changes (plan_id, id);

-- A site's limit raised for [starts_at, ends_at). `status`: scheduled, active (the
-- site runs with it), ended or cancelled; each edge is claimed like a change.
CREATE TABLE site_boosts (
    id            INTEGER PRIMARY KEY,
    site_id       BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    session_limit BIGINT NOT NULL,
    starts_at     BIGINT NOT NULL,
    ends_at       BIGINT NOT NULL,
    note          TEXT,
    status        TEXT NOT NULL DEFAULT 'scheduled',
    actor         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    cancelled_at  BIGINT
);
CREATE INDEX site_boosts_site ON site_boosts (site_id, status);
CREATE INDEX site_boosts_due ON site_boosts (status, starts_at);
