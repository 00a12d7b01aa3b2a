-- Campaign triggers (once now, at a time, recurring, on events), the scheduler's leases, the
-- record of held-out customers (for the campaign report), and a unique key on events so the
-- scheduler's scans and order events are written once however often they run.

ALTER TABLE campaigns ADD COLUMN trigger_kind TEXT NOT NULL DEFAULT 'once';
ALTER TABLE campaigns ADD COLUMN trigger_time INTEGER;
ALTER TABLE campaigns ADD COLUMN trigger_every_hours INTEGER NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN trigger_every_days INTEGER NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN trigger_event TEXT NOT NULL DEFAULT '';
ALTER TABLE campaigns ADD COLUMN trigger_inactive_days INTEGER NOT NULL DEFAULT 0;
-- recurring: the last occurrence started (1-based; 0: none yet)
ALTER TABLE campaigns ADD COLUMN last_occurrence INTEGER NOT NULL DEFAULT 0;

-- recurring runs: their occurrence; event runs: the last event handled
ALTER TABLE campaign_runs ADD COLUMN occurrence INTEGER NOT NULL DEFAULT 0;
ALTER TABLE campaign_runs ADD COLUMN last_event_id INTEGER NOT NULL DEFAULT 0;
CREATE INDEX campaign_runs_state ON campaign_runs (state, id);

ALTER TABLE events ADD COLUMN dedupe_key TEXT;
CREATE UNIQUE INDEX events_dedupe ON events (dedupe_key);

CREATE TABLE campaign_holdouts (
    campaign_id INTEGER NOT NULL,
    run_id      INTEGER NOT NULL,
    customer_id INTEGER NOT NULL,
    -- `once`, `occurrences/{n}` or `events/{id}`, as in the message keys
    occurrence  TEXT    NOT NULL,
    decide_time INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, customer_id, occurrence)
);

-- Work one server does at a time: `runs/{id}`, `campaigns/{id}/events`, `scan`.
CREATE TABLE scheduler_leases (
    name        TEXT    PRIMARY KEY,
    owner       TEXT    NOT NULL,
    until_time  INTEGER NOT NULL,
    -- when the work last finished (the scan: once a day)
    done_time   INTEGER NOT NULL DEFAULT 0
);
