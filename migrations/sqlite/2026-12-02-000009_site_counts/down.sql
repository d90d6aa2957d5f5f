DROP TRIGGER sessions_counts_delete;
DROP TRIGGER sessions_counts_update;
DROP TRIGGER sessions_counts_insert;
DROP INDEX sessions_open_by_expiry;
DROP TABLE site_counts;
