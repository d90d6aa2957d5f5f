-- The keys PostgreSQL gains for distribution (see the PostgreSQL migration of the same
-- name), as far as they matter on SQLite: the register of site slugs, and the site of
-- each delivery attempt. SQLite keeps its tables' rowid keys: a database file is never
-- distributed, and a composite key would give up the rowid's id assignment.
CREATE TABLE site_slugs (
    slug    TEXT PRIMARY KEY,
    site_id BIGINT NOT NULL
);
INSERT INTO site_slugs (slug, site_id) SELECT slug, id FROM sites;

ALTER TABLE delivery_attempts ADD COLUMN site_id BIGINT;
UPDATE delivery_attempts
   SET site_id = (SELECT o.site_id FROM outbox o WHERE o.id = delivery_attempts.outbox_id);
CREATE INDEX delivery_attempts_by_outbox ON delivery_attempts (site_id, outbox_id);

-- The previous release records attempts without their site.
CREATE TRIGGER delivery_attempts_site AFTER INSERT ON delivery_attempts
    WHEN NEW.site_id IS NULL
BEGIN
    UPDATE delivery_attempts
       SET site_id = (SELECT o.site_id FROM outbox o WHERE o.id = NEW.outbox_id)
     WHERE id = NEW.id;
END;
