-- Sales, part 1: organisations (customers may belong to one), pipelines with ordered stages,
-- opportunities in them, and each opportunity's history: an append-only event per change of
-- stage, amount, probability, close date, forecast category or owner, carrying the tracked
-- fields as they stood after the change (GetPipeline `as_of` reads the last event at or before
-- the instant). Money is integer minor units of the ISO 4217 currency; times are microseconds
-- (UTC); owners are `users/{id}` as on customers, so record scope reads them the same way.

CREATE TABLE organizations (
    id              INTEGER PRIMARY KEY,
    display_name    TEXT    NOT NULL,
    name_key        TEXT    NOT NULL DEFAULT '',
    -- normalised (lower-case, no scheme, no `www.`); NULL when none, unique among live ones
    domain          TEXT,
    industry        TEXT    NOT NULL DEFAULT '',
    size            TEXT    NOT NULL DEFAULT '',
    country_code    TEXT    NOT NULL DEFAULT '',
    region          TEXT    NOT NULL DEFAULT '',
    city            TEXT    NOT NULL DEFAULT '',
    parent_id       INTEGER,
    owner           TEXT    NOT NULL DEFAULT '',
    tags            TEXT    NOT NULL DEFAULT '',
    attributes      TEXT    NOT NULL DEFAULT '{}',
    -- set when merged into another organisation; the row stays as a pointer
    merged_into     INTEGER,
    version         INTEGER NOT NULL DEFAULT 1,
    create_time     INTEGER NOT NULL,
    update_time     INTEGER NOT NULL
);
CREATE UNIQUE INDEX organizations_domain ON organizations (domain) WHERE domain IS NOT NULL;
CREATE INDEX organizations_name_key ON organizations (name_key);
CREATE INDEX organizations_parent ON organizations (parent_id) WHERE parent_id IS NOT NULL;

ALTER TABLE customers ADD COLUMN organization_id INTEGER;
CREATE INDEX customers_organization ON customers (organization_id) WHERE organization_id IS NOT NULL;

CREATE TABLE pipelines (
    id              INTEGER PRIMARY KEY,
    display_name    TEXT    NOT NULL,
    version         INTEGER NOT NULL DEFAULT 1,
    create_time     INTEGER NOT NULL,
    update_time     INTEGER NOT NULL
);

CREATE TABLE pipeline_stages (
    id                  INTEGER PRIMARY KEY,
    pipeline_id         INTEGER NOT NULL,
    position            INTEGER NOT NULL,
    display_name        TEXT    NOT NULL,
    probability         INTEGER NOT NULL,
    forecast_category   TEXT    NOT NULL,
    -- OPEN, WON or LOST
    outcome             TEXT    NOT NULL
);
CREATE INDEX pipeline_stages_pipeline ON pipeline_stages (pipeline_id, position);

CREATE TABLE opportunities (
    id                  INTEGER PRIMARY KEY,
    display_name        TEXT    NOT NULL,
    customer_id         INTEGER,
    organization_id     INTEGER,
    pipeline_id         INTEGER NOT NULL,
    stage_id            INTEGER NOT NULL,
    amount              INTEGER NOT NULL DEFAULT 0,
    currency            TEXT    NOT NULL,
    probability         INTEGER NOT NULL,
    forecast_category   TEXT    NOT NULL,
    -- YYYY-MM-DD
    close_date          TEXT    NOT NULL DEFAULT '',
    owner               TEXT    NOT NULL DEFAULT '',
    source              TEXT    NOT NULL DEFAULT '',
    next_step           TEXT    NOT NULL DEFAULT '',
    lost_reason         TEXT    NOT NULL DEFAULT '',
    tags                TEXT    NOT NULL DEFAULT '',
    attributes          TEXT    NOT NULL DEFAULT '{}',
    close_time          INTEGER,
    request_id          TEXT UNIQUE,
    version             INTEGER NOT NULL DEFAULT 1,
    create_time         INTEGER NOT NULL,
    update_time         INTEGER NOT NULL
);
CREATE INDEX opportunities_pipeline ON opportunities (pipeline_id, stage_id);
CREATE INDEX opportunities_owner ON opportunities (owner) WHERE owner <> '';
CREATE INDEX opportunities_customer ON opportunities (customer_id) WHERE customer_id IS NOT NULL;
CREATE INDEX opportunities_organization ON opportunities (organization_id) WHERE organization_id IS NOT NULL;
CREATE INDEX opportunities_create ON opportunities (create_time, id);

-- Competitors, the list of lost reasons, and each opportunity's competitors with their role
-- (INCUMBENT, ACTIVE, LOST_TO, WON_AGAINST) and price position (LOWER, SIMILAR, HIGHER,
-- UNKNOWN). An opportunity's lost_reason is free text or `lostReasons/{id}`.
CREATE TABLE competitors (
    id              INTEGER PRIMARY KEY,
    display_name    TEXT    NOT NULL,
    website         TEXT    NOT NULL DEFAULT '',
    notes           TEXT    NOT NULL DEFAULT '',
    version         INTEGER NOT NULL DEFAULT 1,
    create_time     INTEGER NOT NULL,
    update_time     INTEGER NOT NULL
);

CREATE TABLE lost_reasons (
    id              INTEGER PRIMARY KEY,
    display_name    TEXT    NOT NULL,
    create_time     INTEGER NOT NULL
);

CREATE TABLE opportunity_competitors (
    opportunity_id  INTEGER NOT NULL,
    competitor_id   INTEGER NOT NULL,
    role            TEXT    NOT NULL,
    strengths       TEXT    NOT NULL DEFAULT '',
    weaknesses      TEXT    NOT NULL DEFAULT '',
    price_position  TEXT    NOT NULL,
    PRIMARY KEY (opportunity_id, competitor_id)
);
CREATE INDEX opportunity_competitors_competitor ON opportunity_competitors (competitor_id);
CREATE INDEX opportunities_close ON opportunities (close_time) WHERE close_time IS NOT NULL;

-- Append-only: triggers refuse UPDATE and DELETE.
CREATE TABLE opportunity_events (
    id                  INTEGER PRIMARY KEY,
    opportunity_id      INTEGER NOT NULL,
    pipeline_id         INTEGER NOT NULL,
    time                INTEGER NOT NULL,
    -- what changed, comma-separated: created, stage, amount, probability, close_date,
    -- forecast_category, owner
    changed             TEXT    NOT NULL,
    stage_id            INTEGER NOT NULL,
    amount              INTEGER NOT NULL,
    currency            TEXT    NOT NULL,
    probability         INTEGER NOT NULL,
    forecast_category   TEXT    NOT NULL,
    close_date          TEXT    NOT NULL,
    owner               TEXT    NOT NULL
);
CREATE INDEX opportunity_events_opportunity ON opportunity_events (opportunity_id, id);
CREATE INDEX opportunity_events_pipeline ON opportunity_events (pipeline_id, time, id);

CREATE TRIGGER opportunity_events_no_update BEFORE UPDATE ON opportunity_events
BEGIN
    SELECT RAISE(ABORT, 'opportunity_events is append-only');
END;
CREATE TRIGGER opportunity_events_no_delete BEFORE DELETE ON opportunity_events
BEGIN
    SELECT RAISE(ABORT, 'opportunity_events is append-only');
END;
