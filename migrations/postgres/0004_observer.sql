-- Observer: claimed scheduled runs (exactly once across replicas) and the daily usage roll-up
-- (PostgreSQL). See docs/observer.md.

CREATE TABLE observer_runs (
    job          TEXT NOT NULL,
    -- The scheduled minute, Unix seconds (UTC).
    scheduled_at BIGINT NOT NULL,
    -- The replica that claimed the run (hostname/pid), for diagnosis.
    claimed_by   TEXT NOT NULL,
    claimed_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (job, scheduled_at)
);

CREATE TABLE usage_daily (
    agent_id    TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    -- The UTC day of the exchanges' start.
    day         DATE NOT NULL,
    provider    TEXT NOT NULL,
    model       TEXT NOT NULL,
    requests    BIGINT NOT NULL CHECK (requests >= 0),
    tokens_in   BIGINT NOT NULL CHECK (tokens_in >= 0),
    tokens_out  BIGINT NOT NULL CHECK (tokens_out >= 0),
    duration_ms BIGINT NOT NULL CHECK (duration_ms >= 0),
    tool_count  BIGINT NOT NULL CHECK (tool_count >= 0),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, day, provider, model)
);

-- Integrity summary per agent over the trailing window, for dashboards and the API.
CREATE TABLE integrity_summaries (
    agent_id            TEXT PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
    -- Checkpoints and drift alerts created since this instant are counted.
    window_start        TIMESTAMPTZ NOT NULL,
    checkpoints         BIGINT NOT NULL CHECK (checkpoints >= 0),
    clear               BIGINT NOT NULL CHECK (clear >= 0 AND clear <= checkpoints),
    -- clear / checkpoints; NULL without checkpoints.
    clear_ratio         DOUBLE PRECISION CHECK (clear_ratio IS NULL OR clear_ratio BETWEEN 0 AND 1),
    active_drift_alerts BIGINT NOT NULL CHECK (active_drift_alerts >= 0),
    computed_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
