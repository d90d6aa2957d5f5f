-- People who sign in to the dashboard through the provider's identity provider
-- (OpenID Connect), their sign-ins in progress and their sessions. Only new tables:
-- the previous release runs on this schema without knowing them.

-- A sign-in between `GET /auth/login` and its callback: taken once, by its `state`.
CREATE TABLE sign_in_attempts (
    state         TEXT PRIMARY KEY,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    return_to     TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

-- A person as the identity provider names them (issuer and subject), from their first
-- sign-in on.
CREATE TABLE people (
    id            INTEGER PRIMARY KEY,
    issuer        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    email         TEXT,
    name          TEXT,
    first_seen_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    UNIQUE (issuer, subject)
);

-- A signed-in person's session: the cookie's hash (never the cookie), the role the
-- sign-in gave, the token every write made with the cookie must carry (CSRF), the ID
-- token for signing out at the provider, and its times.
CREATE TABLE web_sessions (
    id_hash      TEXT PRIMARY KEY,
    person_id    INTEGER NOT NULL REFERENCES people (id),
    role         TEXT NOT NULL,
    tenant       TEXT,
    csrf_token   TEXT NOT NULL,
    id_token     TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    ended_at     INTEGER
);
CREATE INDEX web_sessions_person ON web_sessions (person_id);
