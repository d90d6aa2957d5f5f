DROP TABLE IF EXISTS usage_rollups;
