DROP TRIGGER sessions_counts_delete ON sessions;
DROP TRIGGER sessions_counts_update ON sessions;
DROP TRIGGER sessions_counts_insert ON sessions;
DROP FUNCTION site_counts_deleted();
DROP FUNCTION site_counts_updated();
DROP FUNCTION site_counts_inserted();
DROP INDEX sessions_open_by_expiry;
DROP TABLE site_counts;
