DROP TRIGGER delivery_attempts_site;
DROP INDEX delivery_attempts_by_outbox;
ALTER TABLE delivery_attempts DROP COLUMN site_id;
DROP TABLE site_slugs;
