-- The billing export reads each site's active counts for a month. The sampler writes
-- every site each minute, so one site's samples lie on as many pages as it has
-- minutes; with the count in the index the read is an index-only scan instead.
CREATE INDEX usage_samples_site_minute_active ON usage_samples (site_id, minute) INCLUDE (active);
