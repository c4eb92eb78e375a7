-- Usage and metering (PostgreSQL).

CREATE TABLE usage_events (
    -- `ue-…`, generated before the insert: the idempotency key of retried batches.
    id             TEXT PRIMARY KEY,
    agent_id       TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    session_id     TEXT NOT NULL,
    trace_id       TEXT REFERENCES traces (trace_id) ON DELETE SET NULL,
    -- When the exchange started.
    timestamp      TIMESTAMPTZ NOT NULL,
    provider       TEXT NOT NULL,
    model          TEXT NOT NULL,
    -- NULL when the provider reported no usage.
    tokens_in      BIGINT CHECK (tokens_in IS NULL OR tokens_in >= 0),
    tokens_out     BIGINT CHECK (tokens_out IS NULL OR tokens_out >= 0),
    duration_ms    BIGINT NOT NULL CHECK (duration_ms >= 0),
    tool_count     INTEGER NOT NULL DEFAULT 0 CHECK (tool_count >= 0),
    gateway_log_id TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
    -- No prompt, response or thinking text, by design.
);

-- Serves "usage of an agent over a time range" and the foreign key.
CREATE INDEX usage_events_agent_recent ON usage_events (agent_id, timestamp DESC);

CREATE TABLE metering_events (
    -- `me-…`, generated before the insert.
    event_id      TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL,
    agent_id      TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    event_type    TEXT NOT NULL CHECK (event_type IN ('integrity_check', 'proof')),
    -- The metered checkpoint: at most one event of each type per checkpoint, so a replayed
    -- metering event is never billed twice.
    checkpoint_id TEXT REFERENCES integrity_checkpoints (checkpoint_id) ON DELETE SET NULL,
    metadata      JSONB NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    timestamp     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (event_type, checkpoint_id)
);

-- Serves the daily rollup ("accounts with events since midnight").
CREATE INDEX metering_events_recent ON metering_events (timestamp, account_id);
-- Serves the foreign key (cascade on agent delete).
CREATE INDEX metering_events_agent ON metering_events (agent_id);
