-- Agents, their alignment cards and their containment history (SQLite, the embedded default).
--
-- The same tables, keys, constraints and indexes as migrations/postgres, in SQLite's terms:
-- STRICT tables; timestamps are TEXT in UTC, `YYYY-MM-DDTHH:MM:SS.sssZ` (fixed width, so text
-- order is time order); booleans are INTEGER 0/1; JSON is TEXT checked with json_valid();
-- PostgreSQL TEXT[] columns are JSON arrays. Foreign keys are enforced (PRAGMA foreign_keys=ON
-- on every connection).

CREATE TABLE agents (
    id                         TEXT PRIMARY KEY
                               CHECK (id GLOB 'smolt-*' AND length(id) IN (14, 22)
                                      AND substr(id, 7) NOT GLOB '*[^0-9a-f]*'),
    agent_hash                 TEXT NOT NULL UNIQUE
                               CHECK (length(agent_hash) = 16 AND agent_hash NOT GLOB '*[^0-9a-f]*'),
    created_at                 TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    last_seen                  TEXT,
    claimed_at                 TEXT,
    claimed_by                 TEXT,
    email                      TEXT,

    aap_enabled                INTEGER NOT NULL DEFAULT 1 CHECK (aap_enabled IN (0, 1)),
    aip_enabled                INTEGER NOT NULL DEFAULT 1 CHECK (aip_enabled IN (0, 1)),
    aip_enforcement_mode       TEXT NOT NULL DEFAULT 'observe'
                               CHECK (aip_enforcement_mode IN ('observe', 'nudge', 'enforce')),
    org_card_exempt            INTEGER NOT NULL DEFAULT 0 CHECK (org_card_exempt IN (0, 1)),
    nudge_strategy             TEXT NOT NULL DEFAULT 'always'
                               CHECK (nudge_strategy IN ('off', 'sampling', 'threshold', 'always')),
    nudge_rate                 INTEGER NOT NULL DEFAULT 100 CHECK (nudge_rate BETWEEN 0 AND 100),
    nudge_threshold            INTEGER NOT NULL DEFAULT 3 CHECK (nudge_threshold >= 1),
    proof_enabled              INTEGER NOT NULL DEFAULT 0 CHECK (proof_enabled IN (0, 1)),
    proof_rate                 INTEGER NOT NULL DEFAULT 10 CHECK (proof_rate BETWEEN 0 AND 100),
    auto_containment_threshold INTEGER
                               CHECK (auto_containment_threshold IS NULL OR auto_containment_threshold >= 1),
    containment_status         TEXT NOT NULL DEFAULT 'active'
                               CHECK (containment_status IN ('active', 'paused', 'killed')),
    contained_at               TEXT,
    contained_by               TEXT,
    containment_reason         TEXT,
    CHECK (containment_status = 'active' OR contained_at IS NOT NULL)
) STRICT;

CREATE TABLE alignment_cards (
    id                TEXT PRIMARY KEY,
    agent_id          TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    card_json         TEXT NOT NULL CHECK (json_valid(card_json) AND json_type(card_json) = 'object'),
    conscience_values TEXT CHECK (conscience_values IS NULL
                                  OR (json_valid(conscience_values) AND json_type(conscience_values) = 'array')),
    is_active         INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    issued_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE UNIQUE INDEX alignment_cards_active_agent ON alignment_cards (agent_id) WHERE is_active = 1;
CREATE INDEX alignment_cards_agent ON alignment_cards (agent_id);

CREATE TABLE agent_containment_log (
    id              TEXT PRIMARY KEY,
    agent_id        TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    action          TEXT NOT NULL CHECK (action IN ('auto_pause', 'pause', 'resume', 'kill')),
    actor           TEXT NOT NULL,
    reason          TEXT,
    previous_status TEXT CHECK (previous_status IS NULL OR previous_status IN ('active', 'paused', 'killed')),
    new_status      TEXT NOT NULL CHECK (new_status IN ('active', 'paused', 'killed')),
    metadata        TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE INDEX agent_containment_log_agent_recent ON agent_containment_log (agent_id, created_at DESC);
