-- Serves the observer's webhook redelivery ("undelivered deliveries created since the retry
-- window began, oldest first"); small, because delivered rows leave it.
CREATE INDEX aip_webhook_deliveries_undelivered
    ON aip_webhook_deliveries (created_at) WHERE NOT delivered;
