DROP TABLE site_boosts;
DROP TABLE scheduled_changes;
