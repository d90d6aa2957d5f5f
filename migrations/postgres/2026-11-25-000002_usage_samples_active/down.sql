DROP INDEX IF EXISTS usage_samples_site_minute_active;
