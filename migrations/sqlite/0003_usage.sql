-- Usage and metering (SQLite). See migrations/postgres/0003_usage.sql.

CREATE TABLE usage_events (
    id             TEXT PRIMARY KEY,
    agent_id       TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    session_id     TEXT NOT NULL,
    trace_id       TEXT REFERENCES traces (trace_id) ON DELETE SET NULL,
    timestamp      TEXT NOT NULL,
    provider       TEXT NOT NULL,
    model          TEXT NOT NULL,
    tokens_in      INTEGER CHECK (tokens_in IS NULL OR tokens_in >= 0),
    tokens_out     INTEGER CHECK (tokens_out IS NULL OR tokens_out >= 0),
    duration_ms    INTEGER NOT NULL CHECK (duration_ms >= 0),
    tool_count     INTEGER NOT NULL DEFAULT 0 CHECK (tool_count >= 0),
    gateway_log_id TEXT,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE INDEX usage_events_agent_recent ON usage_events (agent_id, timestamp DESC);

CREATE TABLE metering_events (
    event_id      TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL,
    agent_id      TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    event_type    TEXT NOT NULL CHECK (event_type IN ('integrity_check', 'proof')),
    checkpoint_id TEXT REFERENCES integrity_checkpoints (checkpoint_id) ON DELETE SET NULL,
    metadata      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    timestamp     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (event_type, checkpoint_id)
) STRICT;

CREATE INDEX metering_events_recent ON metering_events (timestamp, account_id);
CREATE INDEX metering_events_agent ON metering_events (agent_id);
