-- The audit trail: one row per audited call (every write, export and denied call), appended
-- in the write's own transaction. `seq` is gapless, assigned at append under the writer turn;
-- `hash` = SHA-256(prev_hash || seq || '|' || the event's canonical encoding), hex
-- (bakkal-domain audit::chain_hash). The table is append-only: the triggers below refuse
-- UPDATE and DELETE. Times are microseconds (UTC).

CREATE TABLE audit_events (
    seq             INTEGER PRIMARY KEY,
    time            BIGINT NOT NULL,
    principal       TEXT   NOT NULL,
    key_id          TEXT,
    request_id      TEXT   NOT NULL,
    peer            TEXT   NOT NULL,
    method          TEXT   NOT NULL,
    resource        TEXT   NOT NULL,
    action          TEXT   NOT NULL,
    result          TEXT   NOT NULL,
    code            TEXT   NOT NULL,
    changes         TEXT   NOT NULL,
    prev_hash       TEXT   NOT NULL,
    hash            TEXT   NOT NULL
);

CREATE INDEX audit_events_principal ON audit_events (principal, seq);
CREATE INDEX audit_events_resource ON audit_events (resource, seq);
CREATE INDEX audit_events_time ON audit_events (time);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;

-- The keys that seal the personal values (email, phone, birth date) of customer events, one
-- per event, under the customer's id (crates/bakkal-store/src/audit/seal.rs). Outside the
-- chain and not append-only: erasing a customer deletes their keys, and their events' personal
-- values can no longer be read, while the chain over the sealed text still verifies.
CREATE TABLE audit_keys (
    key_id          TEXT   PRIMARY KEY,
    customer_id     BIGINT NOT NULL,
    key             TEXT   NOT NULL
);

CREATE INDEX audit_keys_customer ON audit_keys (customer_id);
