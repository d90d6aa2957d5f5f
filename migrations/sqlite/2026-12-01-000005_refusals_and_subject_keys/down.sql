DROP INDEX denials_site_event;
ALTER TABLE denials DROP COLUMN user_ref;
ALTER TABLE denials DROP COLUMN session;
ALTER TABLE denials DROP COLUMN event_id;
ALTER TABLE sites DROP COLUMN token_key;
ALTER TABLE tenants DROP COLUMN token_key;
