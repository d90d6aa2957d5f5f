-- The provider's own session limit for one site (an admin's `session_limit`): it
-- replaces the plan's limit for that site, upwards too, and is what a tenant's own
-- `session_limit` override is capped at. Added, nullable: the previous release keeps
-- running on this schema and ignores it. Existing overrides stay where they are,
-- capped at the plan's limit as before, so no site's limit changes in the upgrade.
ALTER TABLE sites ADD COLUMN provider_session_limit BIGINT;
