-- The billing export reads each site's active counts for a month; with the count in
-- the index SQLite answers from the index alone (a covering index).
CREATE INDEX usage_samples_site_minute_active ON usage_samples (site_id, minute, active);
