-- All instants are stored as BIGINT milliseconds since the Unix epoch (UTC), so
-- that one diesel schema fits both backends and comparisons stay integer compares.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE plans (
    id                       BIGSERIAL PRIMARY KEY,
    code                     TEXT NOT NULL UNIQUE,
    name                     TEXT NOT NULL,
    session_limit            BIGINT NOT NULL,
    count_mode               TEXT NOT NULL,
    over_limit               TEXT NOT NULL,
    overage_percent          BIGINT NOT NULL,
    idle_timeout_seconds     BIGINT NOT NULL,
    session_ttl_seconds      BIGINT NOT NULL,
    limit_message            TEXT NOT NULL,
    monthly_price_cents      BIGINT NOT NULL,
    overage_unit_price_cents BIGINT NOT NULL,
    currency                 TEXT NOT NULL,
    created_at               BIGINT NOT NULL,
    updated_at               BIGINT NOT NULL
);

CREATE TABLE tenants (
    id            BIGSERIAL PRIMARY KEY,
    slug          TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    billing_email TEXT,
    notify_url    TEXT,
    notify_secret TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE sites (
    id                         BIGSERIAL PRIMARY KEY,
    slug                       TEXT NOT NULL UNIQUE,
    tenant_id                  BIGINT NOT NULL REFERENCES tenants (id),
    plan_id                    BIGINT NOT NULL REFERENCES plans (id),
    name                       TEXT NOT NULL,
    webhook_url                TEXT,
    webhook_disabled_at        BIGINT,
    webhook_secret             TEXT NOT NULL,
    previous_webhook_secret    TEXT,
    previous_secret_expires_at BIGINT,
    session_limit              BIGINT,
    count_mode                 TEXT,
    over_limit                 TEXT,
    idle_timeout_seconds       BIGINT,
    session_ttl_seconds        BIGINT,
    limit_message              TEXT,
    config_version             BIGINT NOT NULL,
    utilization_alert_armed    BOOLEAN NOT NULL DEFAULT TRUE,
    last_limit_alert_at        BIGINT,
    created_at                 BIGINT NOT NULL,
    updated_at                 BIGINT NOT NULL
);
CREATE INDEX sites_tenant ON sites (tenant_id);
CREATE INDEX sites_plan ON sites (plan_id);

-- What a site's effective limit and plan were from which instant: billing splits a
-- period into segments along these rows.
CREATE TABLE site_plan_history (
    id                       BIGSERIAL PRIMARY KEY,
    site_id                  BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    plan_id                  BIGINT NOT NULL REFERENCES plans (id),
    session_limit            BIGINT NOT NULL,
    over_limit               TEXT NOT NULL,
    effective_from           BIGINT NOT NULL
);
CREATE INDEX site_plan_history_site ON site_plan_history (site_id, effective_from);

CREATE TABLE sessions (
    id               BIGSERIAL PRIMARY KEY,
    site_id          BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    session          TEXT NOT NULL,
    user_ref         TEXT,
    started_at       BIGINT NOT NULL,
    last_activity_at BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    ended_at         BIGINT,
    end_reason       TEXT,
    user_agent       TEXT,
    ip               TEXT,
    overage          BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (site_id, session)
);
-- Counting and admission only look at sessions that have not ended; this index stays
-- small however many ended sessions a site has kept for billing.
CREATE INDEX sessions_open_by_site ON sessions (site_id, last_activity_at, expires_at)
    WHERE ended_at IS NULL;
CREATE INDEX sessions_site_user ON sessions (site_id, user_ref);
CREATE INDEX sessions_site_activity ON sessions (site_id, last_activity_at DESC, id DESC);
CREATE INDEX sessions_ended ON sessions (ended_at) WHERE ended_at IS NOT NULL;

CREATE TABLE denials (
    id      BIGSERIAL PRIMARY KEY,
    site_id BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    at      BIGINT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX denials_site_at ON denials (site_id, at);

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    revoked_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    webhook_id      TEXT NOT NULL UNIQUE,
    site_id         BIGINT REFERENCES sites (id) ON DELETE CASCADE,
    tenant_id       BIGINT REFERENCES tenants (id) ON DELETE CASCADE,
    target          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    locked_until    BIGINT,
    created_at      BIGINT NOT NULL,
    finished_at     BIGINT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_site ON outbox (site_id, id);

CREATE TABLE delivery_attempts (
    id           BIGSERIAL PRIMARY KEY,
    outbox_id    BIGINT NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    attempted_at BIGINT NOT NULL,
    status_code  BIGINT,
    duration_ms  BIGINT NOT NULL,
    error        TEXT
);
CREATE INDEX delivery_attempts_outbox ON delivery_attempts (outbox_id);

CREATE TABLE usage_samples (
    site_id       BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    minute        BIGINT NOT NULL,
    active        BIGINT NOT NULL,
    live          BIGINT NOT NULL,
    dangling      BIGINT NOT NULL,
    denied        BIGINT NOT NULL,
    session_limit BIGINT NOT NULL,
    PRIMARY KEY (site_id, minute)
);

CREATE TABLE audit_log (
    id         BIGSERIAL PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    entity     TEXT NOT NULL,
    entity_key TEXT NOT NULL,
    detail     TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
