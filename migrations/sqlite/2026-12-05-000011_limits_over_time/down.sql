DROP TABLE site_boosts;
DROP TABLE plan_scheduled_changes;
DROP TABLE scheduled_changes;
