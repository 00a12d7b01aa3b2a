-- Campaign triggers (once now, at a time, recurring, on events), the scheduler's leases, the
-- record of held-out customers (for the campaign report), and a unique key on events so the
-- scheduler's scans and order events are written once however often they run.

ALTER TABLE campaigns ADD COLUMN trigger_kind TEXT NOT NULL DEFAULT 'once';
ALTER TABLE campaigns ADD COLUMN trigger_time BIGINT;
ALTER TABLE campaigns ADD COLUMN trigger_every_hours BIGINT NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN trigger_every_days BIGINT NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN trigger_event TEXT NOT NULL DEFAULT '';
ALTER TABLE campaigns ADD COLUMN trigger_inactive_days BIGINT NOT NULL DEFAULT 0;
-- recurring: the last occurrence started (1-based; 0: none yet)
ALTER TABLE campaigns ADD COLUMN last_occurrence BIGINT NOT NULL DEFAULT 0;

-- recurring runs: their occurrence; event runs: the last event handled
ALTER TABLE campaign_runs ADD COLUMN occurrence BIGINT NOT NULL DEFAULT 0;
ALTER TABLE campaign_runs ADD COLUMN last_event_id BIGINT NOT NULL DEFAULT 0;
CREATE INDEX campaign_runs_state ON campaign_runs (state, id);

ALTER TABLE events ADD COLUMN dedupe_key TEXT;
CREATE UNIQUE INDEX events_dedupe ON events (dedupe_key);

CREATE TABLE campaign_holdouts (
    campaign_id BIGINT NOT NULL,
    run_id      BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    -- `once`, `occurrences/{n}` or `events/{id}`, as in the message keys
    occurrence  TEXT    NOT NULL,
    decide_time BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, customer_id, occurrence)
);

-- Work one server does at a time: `runs/{id}`, `campaigns/{id}/events`, `scan`.
CREATE TABLE scheduler_leases (
    name        TEXT    PRIMARY KEY,
    owner       TEXT    NOT NULL,
    until_time  BIGINT NOT NULL,
    -- when the work last finished (the scan: once a day)
    done_time   BIGINT NOT NULL DEFAULT 0
);
