-- Nudge claims (PostgreSQL): a pending nudge is claimed by one request before it is injected,
-- and marked delivered only once the upstream accepted that request, so concurrent requests of
-- an agent never inject the same nudge twice and a refused request gives it back.
--
-- `claim_token` is the claiming request's random token, `claimed_until` when the claim lapses
-- (a request that died without confirming or releasing gives the nudge back this way). Both are
-- NULL when the nudge is not claimed. The observer's expiry ignores claims: a pending nudge older
-- than 4 hours expires whether or not a lapsed claim is still recorded on it.

ALTER TABLE enforcement_nudges
    ADD COLUMN claim_token   TEXT,
    ADD COLUMN claimed_until TIMESTAMPTZ,
    ADD CONSTRAINT enforcement_nudges_claim_pair
        CHECK ((claim_token IS NULL) = (claimed_until IS NULL));

-- Serves confirming and releasing a claim by its token; only claimed rows are indexed.
CREATE INDEX enforcement_nudges_claim_token
    ON enforcement_nudges (claim_token) WHERE claim_token IS NOT NULL;
