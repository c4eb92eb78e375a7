-- AIP integrity records: traces, checkpoints, nudges, proofs, drift alerts, webhooks (SQLite).
-- See migrations/postgres/0002_integrity.sql for what each column means.

CREATE TABLE traces (
    trace_id     TEXT PRIMARY KEY,
    agent_id     TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    card_id      TEXT,
    session_id   TEXT,
    timestamp    TEXT NOT NULL,
    action       TEXT NOT NULL CHECK (json_valid(action) AND json_type(action) = 'object'),
    decision     TEXT NOT NULL CHECK (json_valid(decision) AND json_type(decision) = 'object'),
    escalation   TEXT CHECK (escalation IS NULL OR (json_valid(escalation) AND json_type(escalation) = 'object')),
    context      TEXT CHECK (context IS NULL OR (json_valid(context) AND json_type(context) = 'object')),
    verification TEXT CHECK (verification IS NULL
                             OR (json_valid(verification) AND json_type(verification) = 'object')),
    trace_json   TEXT NOT NULL CHECK (json_valid(trace_json) AND json_type(trace_json) = 'object'),
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE INDEX traces_agent_recent ON traces (agent_id, timestamp DESC);

CREATE TABLE integrity_checkpoints (
    checkpoint_id       TEXT PRIMARY KEY,
    agent_id            TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    card_id             TEXT,
    session_id          TEXT NOT NULL,
    timestamp           TEXT NOT NULL,
    created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    thinking_block_hash TEXT NOT NULL
                        CHECK (length(thinking_block_hash) = 64 AND thinking_block_hash NOT GLOB '*[^0-9a-f]*'),
    provider            TEXT NOT NULL,
    model               TEXT NOT NULL,
    verdict             TEXT NOT NULL
                        CHECK (verdict IN ('clear', 'review_needed', 'boundary_violation')),
    concerns            TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(concerns) AND json_type(concerns) = 'array'),
    reasoning_summary   TEXT NOT NULL DEFAULT '',
    conscience_context  TEXT CHECK (conscience_context IS NULL
                                    OR (json_valid(conscience_context) AND json_type(conscience_context) = 'object')),
    window_position     TEXT CHECK (window_position IS NULL
                                    OR (json_valid(window_position) AND json_type(window_position) = 'object')),
    analysis_metadata   TEXT CHECK (analysis_metadata IS NULL
                                    OR (json_valid(analysis_metadata) AND json_type(analysis_metadata) = 'object')),
    linked_trace_id     TEXT REFERENCES traces (trace_id) ON DELETE SET NULL,
    source              TEXT NOT NULL DEFAULT 'gateway' CHECK (source IN ('gateway', 'hybrid')),
    input_commitment    TEXT,
    issuer_signature    TEXT,
    signing_key_id      TEXT,
    chain_hash          TEXT,
    prev_chain_hash     TEXT,
    merkle_leaf_index   INTEGER CHECK (merkle_leaf_index IS NULL OR merkle_leaf_index >= 0),
    certificate_id      TEXT UNIQUE,
    CHECK (chain_hash IS NULL
           OR (input_commitment IS NOT NULL AND issuer_signature IS NOT NULL AND signing_key_id IS NOT NULL))
) STRICT;

CREATE INDEX integrity_checkpoints_agent_session_recent
    ON integrity_checkpoints (agent_id, session_id, timestamp DESC);
CREATE INDEX integrity_checkpoints_agent_recent ON integrity_checkpoints (agent_id, created_at DESC);
CREATE UNIQUE INDEX integrity_checkpoints_chain_link
    ON integrity_checkpoints (agent_id, session_id, prev_chain_hash) WHERE prev_chain_hash IS NOT NULL;
CREATE UNIQUE INDEX integrity_checkpoints_merkle_leaf
    ON integrity_checkpoints (agent_id, merkle_leaf_index) WHERE merkle_leaf_index IS NOT NULL;

CREATE TABLE enforcement_nudges (
    id                  TEXT PRIMARY KEY,
    agent_id            TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    checkpoint_id       TEXT NOT NULL UNIQUE
                        REFERENCES integrity_checkpoints (checkpoint_id) ON DELETE CASCADE,
    session_id          TEXT NOT NULL,
    status              TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'delivered', 'expired')),
    nudge_content       TEXT NOT NULL,
    concerns_summary    TEXT NOT NULL,
    created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    delivered_at        TEXT,
    delivery_session_id TEXT,
    expired_at          TEXT,
    CHECK (status <> 'delivered' OR delivered_at IS NOT NULL),
    CHECK (status <> 'expired' OR expired_at IS NOT NULL)
) STRICT;

CREATE INDEX enforcement_nudges_agent_pending
    ON enforcement_nudges (agent_id, created_at) WHERE status = 'pending';
CREATE INDEX enforcement_nudges_agent ON enforcement_nudges (agent_id);

CREATE TABLE verdict_proofs (
    proof_id      TEXT PRIMARY KEY,
    checkpoint_id TEXT NOT NULL UNIQUE
                  REFERENCES integrity_checkpoints (checkpoint_id) ON DELETE CASCADE,
    proof_type    TEXT NOT NULL DEFAULT 'risc-zero-stark',
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'proving', 'completed', 'verified', 'failed')),
    analysis_json TEXT NOT NULL CHECK (json_valid(analysis_json) AND json_type(analysis_json) = 'object'),
    thinking_hash TEXT NOT NULL CHECK (length(thinking_hash) = 64 AND thinking_hash NOT GLOB '*[^0-9a-f]*'),
    card_hash     TEXT NOT NULL CHECK (length(card_hash) = 64 AND card_hash NOT GLOB '*[^0-9a-f]*'),
    values_hash   TEXT NOT NULL CHECK (length(values_hash) = 64 AND values_hash NOT GLOB '*[^0-9a-f]*'),
    model         TEXT NOT NULL,
    error         TEXT,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE TABLE drift_alerts (
    id          TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    card_id     TEXT,
    session_id  TEXT,
    alert_type  TEXT NOT NULL,
    severity    TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high')),
    description TEXT NOT NULL,
    drift_data  TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(drift_data) AND json_type(drift_data) = 'object'),
    trace_ids   TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(trace_ids) AND json_type(trace_ids) = 'array'),
    dedup_key   TEXT UNIQUE,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE INDEX drift_alerts_agent_recent ON drift_alerts (agent_id, created_at DESC);

CREATE TABLE aip_webhook_registrations (
    id              TEXT PRIMARY KEY,
    agent_id        TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    callback_url    TEXT NOT NULL CHECK (callback_url GLOB 'http://*' OR callback_url GLOB 'https://*'),
    secret          TEXT NOT NULL,
    event_types     TEXT NOT NULL DEFAULT '["*"]'
                    CHECK (json_valid(event_types) AND json_type(event_types) = 'array'
                           AND json_array_length(event_types) > 0),
    failure_count   INTEGER NOT NULL DEFAULT 0 CHECK (failure_count >= 0),
    enabled         INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    disabled_at     TEXT,
    last_failure_at TEXT,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (agent_id, callback_url)
) STRICT;

CREATE TABLE aip_webhook_deliveries (
    id              TEXT PRIMARY KEY,
    registration_id TEXT NOT NULL REFERENCES aip_webhook_registrations (id) ON DELETE CASCADE,
    checkpoint_id   TEXT NOT NULL REFERENCES integrity_checkpoints (checkpoint_id) ON DELETE CASCADE,
    event_type      TEXT NOT NULL
                    CHECK (event_type IN ('verdict.clear', 'verdict.review_needed', 'verdict.boundary_violation')),
    delivered       INTEGER NOT NULL CHECK (delivered IN (0, 1)),
    attempts        INTEGER NOT NULL CHECK (attempts >= 1),
    last_status     INTEGER,
    last_error      TEXT,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (registration_id, checkpoint_id)
) STRICT;

CREATE INDEX aip_webhook_deliveries_checkpoint ON aip_webhook_deliveries (checkpoint_id);
