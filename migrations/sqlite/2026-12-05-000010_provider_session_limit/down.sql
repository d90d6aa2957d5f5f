ALTER TABLE sites DROP COLUMN provider_session_limit;
