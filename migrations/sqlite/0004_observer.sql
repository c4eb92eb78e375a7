-- Observer runs and the daily usage roll-up (SQLite). See migrations/postgres/0004_observer.sql.

CREATE TABLE observer_runs (
    job          TEXT NOT NULL,
    scheduled_at INTEGER NOT NULL,
    claimed_by   TEXT NOT NULL,
    claimed_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (job, scheduled_at)
) STRICT;

CREATE TABLE usage_daily (
    agent_id    TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    -- `YYYY-MM-DD`, UTC.
    day         TEXT NOT NULL,
    provider    TEXT NOT NULL,
    model       TEXT NOT NULL,
    requests    INTEGER NOT NULL CHECK (requests >= 0),
    tokens_in   INTEGER NOT NULL CHECK (tokens_in >= 0),
    tokens_out  INTEGER NOT NULL CHECK (tokens_out >= 0),
    duration_ms INTEGER NOT NULL CHECK (duration_ms >= 0),
    tool_count  INTEGER NOT NULL CHECK (tool_count >= 0),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (agent_id, day, provider, model)
) STRICT;

CREATE TABLE integrity_summaries (
    agent_id            TEXT PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
    window_start        TEXT NOT NULL,
    checkpoints         INTEGER NOT NULL CHECK (checkpoints >= 0),
    clear               INTEGER NOT NULL CHECK (clear >= 0 AND clear <= checkpoints),
    clear_ratio         REAL CHECK (clear_ratio IS NULL OR clear_ratio BETWEEN 0 AND 1),
    active_drift_alerts INTEGER NOT NULL CHECK (active_drift_alerts >= 0),
    computed_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
