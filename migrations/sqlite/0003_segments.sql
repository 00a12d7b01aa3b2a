-- Segments and the customer pyramid: the value model (one row), each customer's score, tier
-- and RFM quintiles, segments defined by SEGMENT scripts with their materialised members, and
-- an outbox of events (`tier_changed`, `segment_entered`, `segment_exited`) written in the
-- same transaction as the change. Times are microseconds since the Unix epoch (UTC).

CREATE TABLE value_models (
    id              INTEGER PRIMARY KEY,
    weights         TEXT    NOT NULL,
    tiers           TEXT    NOT NULL,
    update_time     INTEGER NOT NULL
);

CREATE TABLE customer_scores (
    customer_id     INTEGER PRIMARY KEY,
    score           REAL    NOT NULL,
    tier            TEXT    NOT NULL,
    rfm_r           INTEGER NOT NULL,
    rfm_f           INTEGER NOT NULL,
    rfm_m           INTEGER NOT NULL,
    compute_time    INTEGER NOT NULL
);
-- No index on tier: the pyramid aggregates every score anyway, and segments filter on tier
-- through the primary key join; an index would double the cost of rewriting every score.

CREATE TABLE segments (
    id               INTEGER PRIMARY KEY,
    display_name     TEXT    NOT NULL,
    script           TEXT    NOT NULL,
    filter           TEXT    NOT NULL DEFAULT '',
    member_count     INTEGER NOT NULL DEFAULT 0,
    refresh_time     INTEGER,
    refresh_duration INTEGER,
    create_time      INTEGER NOT NULL
);

CREATE TABLE segment_members (
    segment_id      INTEGER NOT NULL,
    customer_id     INTEGER NOT NULL,
    PRIMARY KEY (segment_id, customer_id)
);
CREATE INDEX segment_members_customer ON segment_members (customer_id);

CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL,
    customer_id     INTEGER NOT NULL,
    payload         TEXT    NOT NULL DEFAULT '{}',
    create_time     INTEGER NOT NULL
);
CREATE INDEX events_kind ON events (kind, id);
CREATE INDEX events_customer ON events (customer_id, id);
