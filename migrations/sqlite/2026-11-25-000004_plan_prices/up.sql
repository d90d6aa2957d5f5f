-- A plan's prices from an instant on: a price change applies from then on, so the
-- billing export of an earlier month keeps the prices of that month.
CREATE TABLE plan_prices (
    id                       INTEGER PRIMARY KEY,
    plan_id                  BIGINT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    monthly_price_cents      BIGINT NOT NULL,
    overage_unit_price_cents BIGINT NOT NULL,
    currency                 TEXT NOT NULL,
    effective_from           BIGINT NOT NULL
);
CREATE INDEX plan_prices_plan ON plan_prices (plan_id, effective_from);

-- Earlier changes were not kept: the current prices stand for the whole past.
INSERT INTO plan_prices (plan_id, monthly_price_cents, overage_unit_price_cents, currency, effective_from)
SELECT id, monthly_price_cents, overage_unit_price_cents, currency, created_at FROM plans;
