DROP TABLE IF EXISTS plan_prices;
