-- Refusals a site made itself (`session.refused` events) are denials too; the
-- agent's event id makes a resent refusal count once.
ALTER TABLE denials ADD COLUMN event_id TEXT;
ALTER TABLE denials ADD COLUMN session TEXT;
ALTER TABLE denials ADD COLUMN user_ref TEXT;
CREATE UNIQUE INDEX denials_site_event ON denials (site_id, event_id);

-- A random key per tenant and site, named in the tokens minted for it, so that a
-- token dies with its subject even when the slug is created again later (row ids
-- can be reused). Rows from before have none; their tokens are judged by time.
ALTER TABLE tenants ADD COLUMN token_key TEXT;
ALTER TABLE sites ADD COLUMN token_key TEXT;
