-- Marketers' scripts (segments, offers, messages) and their immutable revisions. A script's
-- `active_revision` is the one that runs; `latest_revision` numbers the next one. Times are
-- microseconds since the Unix epoch (UTC).

CREATE TABLE scripts (
    id              INTEGER PRIMARY KEY,
    display_name    TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    active_revision INTEGER NOT NULL,
    latest_revision INTEGER NOT NULL,
    version         INTEGER NOT NULL DEFAULT 1,
    create_time     INTEGER NOT NULL,
    update_time     INTEGER NOT NULL
);
CREATE INDEX scripts_kind ON scripts (kind, id);

CREATE TABLE script_revisions (
    script_id       INTEGER NOT NULL,
    revision        INTEGER NOT NULL,
    source          TEXT    NOT NULL,
    create_time     INTEGER NOT NULL,
    PRIMARY KEY (script_id, revision)
);
