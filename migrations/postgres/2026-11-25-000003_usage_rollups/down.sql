DROP INDEX IF EXISTS denials_at;
DROP INDEX IF EXISTS usage_samples_minute;
DROP TABLE IF EXISTS usage_rollups;
