-- Nudge claims (SQLite). See migrations/postgres/0005_nudge_claims.sql.

ALTER TABLE enforcement_nudges ADD COLUMN claim_token TEXT;
ALTER TABLE enforcement_nudges ADD COLUMN claimed_until TEXT
    CHECK ((claim_token IS NULL) = (claimed_until IS NULL));

CREATE INDEX enforcement_nudges_claim_token
    ON enforcement_nudges (claim_token) WHERE claim_token IS NOT NULL;
