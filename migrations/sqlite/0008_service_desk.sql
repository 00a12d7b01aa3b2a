-- The service desk: teams, agents (in teams), SLA policies with business hours, tickets with
-- their SLA clocks, and ticket comments. Outbox messages may now belong to a ticket instead of
-- a campaign (campaign_id = 0, run_id = 0) and be addressed to an agent or a team
-- (`recipient`; customer_id = 0 then). Times are microseconds since the Unix epoch (UTC);
-- durations are microseconds of business time.

CREATE TABLE teams (
    id              INTEGER PRIMARY KEY,
    display_name    TEXT    NOT NULL,
    email           TEXT    NOT NULL DEFAULT '',
    version         INTEGER NOT NULL DEFAULT 1,
    create_time     INTEGER NOT NULL,
    update_time     INTEGER NOT NULL
);

CREATE TABLE agents (
    id              INTEGER PRIMARY KEY,
    display_name    TEXT    NOT NULL,
    email           TEXT    NOT NULL UNIQUE,
    active          INTEGER NOT NULL DEFAULT 1,
    -- open (NEW, OPEN, WAITING_ON_CUSTOMER) tickets assigned: routing picks the least busy
    open_tickets    INTEGER NOT NULL DEFAULT 0,
    version         INTEGER NOT NULL DEFAULT 1,
    create_time     INTEGER NOT NULL,
    update_time     INTEGER NOT NULL
);

CREATE TABLE agent_teams (
    agent_id        INTEGER NOT NULL,
    team_id         INTEGER NOT NULL,
    PRIMARY KEY (team_id, agent_id)
);
CREATE INDEX agent_teams_agent ON agent_teams (agent_id);

CREATE TABLE sla_policies (
    id                      INTEGER PRIMARY KEY,
    display_name            TEXT    NOT NULL,
    kinds                   TEXT    NOT NULL DEFAULT '',
    priorities              TEXT    NOT NULL DEFAULT '',
    tier                    TEXT    NOT NULL DEFAULT '',
    first_response_within   INTEGER NOT NULL,
    resolve_within          INTEGER NOT NULL,
    business_hours          TEXT,
    at_risk_fraction        REAL    NOT NULL,
    version                 INTEGER NOT NULL DEFAULT 1,
    create_time             INTEGER NOT NULL,
    update_time             INTEGER NOT NULL
);

CREATE TABLE tickets (
    id                              INTEGER PRIMARY KEY,
    customer_id                     INTEGER NOT NULL,
    contact_email                   TEXT    NOT NULL DEFAULT '',
    contact_phone                   TEXT    NOT NULL DEFAULT '',
    kind                            TEXT    NOT NULL,
    channel                         TEXT    NOT NULL,
    subject                         TEXT    NOT NULL,
    description                     TEXT    NOT NULL DEFAULT '',
    topic                           TEXT    NOT NULL DEFAULT '',
    priority                        TEXT    NOT NULL,
    state                           TEXT    NOT NULL,
    team_id                         INTEGER,
    assignee_id                     INTEGER,
    sla_policy_id                   INTEGER,
    first_response_target           INTEGER,
    resolution_target               INTEGER,
    at_risk_fraction                REAL    NOT NULL DEFAULT 0.8,
    first_response_used             INTEGER NOT NULL DEFAULT 0,
    resolution_used                 INTEGER NOT NULL DEFAULT 0,
    clock_start_time                INTEGER,
    first_response_due_time         INTEGER,
    resolution_due_time             INTEGER,
    first_response_time             INTEGER,
    resolved_time                   INTEGER,
    first_response_business_micros  INTEGER,
    resolution_business_micros      INTEGER,
    sla_status                      TEXT    NOT NULL,
    sla_flags                       INTEGER NOT NULL DEFAULT 0,
    next_sla_check_time             INTEGER,
    overdue_key                     INTEGER,
    satisfaction                    INTEGER,
    satisfaction_comment            TEXT    NOT NULL DEFAULT '',
    resolution                      TEXT    NOT NULL DEFAULT '',
    resolution_article_id           INTEGER,
    request_id                      TEXT UNIQUE,
    version                         INTEGER NOT NULL DEFAULT 1,
    create_time                     INTEGER NOT NULL,
    update_time                     INTEGER NOT NULL
);
-- The SLA watcher's scan: only tickets with a clock still to fire are in this index.
CREATE INDEX tickets_sla_check ON tickets (next_sla_check_time) WHERE next_sla_check_time IS NOT NULL;
CREATE INDEX tickets_overdue ON tickets (overdue_key, id) WHERE overdue_key IS NOT NULL;
CREATE INDEX tickets_customer ON tickets (customer_id, id);
CREATE INDEX tickets_assignee ON tickets (assignee_id, state);
CREATE INDEX tickets_team ON tickets (team_id, state);
CREATE INDEX tickets_state ON tickets (state, id);
CREATE INDEX tickets_create ON tickets (create_time, id);

CREATE TABLE ticket_comments (
    id              INTEGER PRIMARY KEY,
    ticket_id       INTEGER NOT NULL,
    author_agent_id INTEGER,
    body            TEXT    NOT NULL,
    public          INTEGER NOT NULL,
    create_time     INTEGER NOT NULL
);
CREATE INDEX ticket_comments_ticket ON ticket_comments (ticket_id, id);

ALTER TABLE outbox_messages ADD COLUMN ticket_id INTEGER;
ALTER TABLE outbox_messages ADD COLUMN recipient TEXT NOT NULL DEFAULT '';
CREATE INDEX outbox_messages_ticket ON outbox_messages (ticket_id, id) WHERE ticket_id IS NOT NULL;
