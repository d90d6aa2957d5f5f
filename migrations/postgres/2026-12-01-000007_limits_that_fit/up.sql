-- Reserved places, per-user caps (plan values a site may override), tenant pools,
-- and what each refusal saw.
ALTER TABLE plans ADD COLUMN reserved_slots BIGINT NOT NULL DEFAULT 0;
ALTER TABLE plans ADD COLUMN reserved_roles TEXT NOT NULL DEFAULT '["admin"]';
ALTER TABLE plans ADD COLUMN per_user_limit BIGINT;
ALTER TABLE plans ADD COLUMN per_user_over_limit TEXT NOT NULL DEFAULT 'reject';
ALTER TABLE sites ADD COLUMN reserved_slots BIGINT;
ALTER TABLE sites ADD COLUMN reserved_roles TEXT;
ALTER TABLE sites ADD COLUMN per_user_limit BIGINT;
ALTER TABLE sites ADD COLUMN per_user_over_limit TEXT;
ALTER TABLE tenants ADD COLUMN pooled_session_limit BIGINT;
ALTER TABLE denials ADD COLUMN counted BIGINT;
ALTER TABLE denials ADD COLUMN session_limit BIGINT;
ALTER TABLE denials ADD COLUMN count_mode TEXT;
ALTER TABLE denials ADD COLUMN counted_sessions TEXT;
