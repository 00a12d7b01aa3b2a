-- Campaigns: a MESSAGE (and/or OFFER) script run over a segment's members on one channel,
-- with a holdout, a frequency cap across all campaigns and quiet hours; their runs with
-- counters; and the outbox of messages, each with a unique idempotency key so a message is
-- queued at most once however often a run is retried. Times are microseconds (UTC).

CREATE TABLE campaigns (
    id                  INTEGER PRIMARY KEY,
    display_name        TEXT    NOT NULL,
    strategy            TEXT    NOT NULL,
    audience_segment_id INTEGER NOT NULL,
    offer_script        TEXT    NOT NULL DEFAULT '',
    message_script      TEXT    NOT NULL DEFAULT '',
    channel             TEXT    NOT NULL,
    holdout_percent     INTEGER NOT NULL DEFAULT 0,
    cap_max_messages    INTEGER NOT NULL DEFAULT 0,
    cap_per_days        INTEGER NOT NULL DEFAULT 0,
    quiet_start_hour    INTEGER,
    quiet_end_hour      INTEGER,
    state               TEXT    NOT NULL,
    request_id          TEXT UNIQUE,
    version             INTEGER NOT NULL DEFAULT 1,
    create_time         INTEGER NOT NULL,
    update_time         INTEGER NOT NULL
);

CREATE TABLE campaign_runs (
    id                      INTEGER PRIMARY KEY,
    campaign_id             INTEGER NOT NULL,
    state                   TEXT    NOT NULL,
    evaluated               INTEGER NOT NULL DEFAULT 0,
    targeted                INTEGER NOT NULL DEFAULT 0,
    held_out                INTEGER NOT NULL DEFAULT 0,
    suppressed_no_consent   INTEGER NOT NULL DEFAULT 0,
    suppressed_capped       INTEGER NOT NULL DEFAULT 0,
    suppressed_quiet_hours  INTEGER NOT NULL DEFAULT 0,
    suppressed_already_sent INTEGER NOT NULL DEFAULT 0,
    queued                  INTEGER NOT NULL DEFAULT 0,
    script_errors           INTEGER NOT NULL DEFAULT 0,
    last_customer_id        INTEGER NOT NULL DEFAULT 0,
    start_time              INTEGER NOT NULL,
    end_time                INTEGER
);
CREATE INDEX campaign_runs_campaign ON campaign_runs (campaign_id, id);

CREATE TABLE outbox_messages (
    id              INTEGER PRIMARY KEY,
    campaign_id     INTEGER NOT NULL,
    run_id          INTEGER NOT NULL,
    customer_id     INTEGER NOT NULL,
    channel         TEXT    NOT NULL,
    subject         TEXT    NOT NULL DEFAULT '',
    body            TEXT    NOT NULL DEFAULT '',
    idempotency_key TEXT    NOT NULL UNIQUE,
    status          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    lease_time      INTEGER,
    create_time     INTEGER NOT NULL,
    deliver_time    INTEGER
);
CREATE INDEX outbox_messages_campaign ON outbox_messages (campaign_id, id);
CREATE INDEX outbox_messages_customer ON outbox_messages (customer_id, id);
CREATE INDEX outbox_messages_cap ON outbox_messages (customer_id, create_time);
CREATE INDEX outbox_messages_status ON outbox_messages (status, id);
