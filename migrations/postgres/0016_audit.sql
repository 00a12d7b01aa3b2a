-- The audit trail: one row per audited call (every write, export and denied call), appended
-- in the write's own transaction. `seq` is gapless, assigned at append by
-- bakkal_audit_append, which takes the chain's advisory lock (the key `audit:chain`, as
-- lock.rs's lock_key hashes it) so appends serialise on the chain head for the rest of the
-- transaction only; `hash` = SHA-256(prev_hash || seq || '|' || the event's canonical
-- encoding), hex (bakkal-domain audit::chain_hash). The table is append-only: a trigger
-- refuses UPDATE, DELETE and TRUNCATE, the owner's included. Times are microseconds (UTC).

CREATE TABLE audit_events (
    seq             BIGINT PRIMARY KEY,
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

CREATE FUNCTION bakkal_audit_refuse() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION bakkal_audit_refuse();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION bakkal_audit_refuse();

-- Append one event after the chain head, in one round trip: lock the chain (held until the
-- calling transaction ends), read the head with a fresh snapshot (each statement of a
-- PL/pgSQL function takes one under READ COMMITTED), insert. Returns the new seq.
CREATE FUNCTION bakkal_audit_append(
    p_time BIGINT, p_principal TEXT, p_key_id TEXT, p_request_id TEXT, p_peer TEXT,
    p_method TEXT, p_resource TEXT, p_action TEXT, p_result TEXT, p_code TEXT,
    p_changes TEXT, p_canonical TEXT
) RETURNS BIGINT AS $$
DECLARE
    head_seq BIGINT;
    head_hash TEXT;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('audit:chain', 0));
    SELECT seq, hash INTO head_seq, head_hash FROM audit_events ORDER BY seq DESC LIMIT 1;
    IF head_seq IS NULL THEN
        head_seq := 0;
        head_hash := repeat('0', 64);
    END IF;
    INSERT INTO audit_events (seq, time, principal, key_id, request_id, peer, method, resource,
                              action, result, code, changes, prev_hash, hash)
    VALUES (head_seq + 1, p_time, p_principal, p_key_id, p_request_id, p_peer, p_method,
            p_resource, p_action, p_result, p_code, p_changes, head_hash,
            encode(sha256(convert_to(head_hash || (head_seq + 1)::text || '|' || p_canonical,
                                     'UTF8')), 'hex'));
    RETURN head_seq + 1;
END;
$$ LANGUAGE plpgsql;

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
