-- Consent with provenance: every grant and withdrawal on a channel, appended and never
-- changed (crates/bakkal-domain personal_data/consent.rs). The consent columns of customers
-- hold the projection: per channel the latest event's decision (by event_time, then id),
-- rewritten in the transaction that appends an event. channel: email, sms, push, phone;
-- source: WEB_FORM, IMPORT, AGENT, API, EMAIL_LINK, IN_STORE, MERGE, MIGRATED; actor: the
-- principal that recorded it. Triggers refuse DELETE and any UPDATE but the erasure's, which
-- only clears the free text (terms, ip_address, user_agent). Times are microseconds (UTC).

CREATE TABLE consent_events (
    id              INTEGER PRIMARY KEY,
    customer_id     INTEGER  NOT NULL,
    channel         TEXT    NOT NULL,
    granted         INTEGER NOT NULL,
    event_time      INTEGER  NOT NULL,
    source          TEXT    NOT NULL,
    terms           TEXT    NOT NULL DEFAULT '',
    actor           TEXT    NOT NULL DEFAULT '',
    ip_address      TEXT    NOT NULL DEFAULT '',
    user_agent      TEXT    NOT NULL DEFAULT '',
    create_time     INTEGER  NOT NULL
);
CREATE INDEX consent_events_customer ON consent_events (customer_id, channel, event_time, id);

-- The consent customers had before: one MIGRATED event per decided channel.
INSERT INTO consent_events (customer_id, channel, granted, event_time, source, actor, create_time)
SELECT id, 'email', consent_email, COALESCE(consent_email_time, update_time), 'MIGRATED',
       'system:migration', COALESCE(consent_email_time, update_time)
FROM customers
WHERE deleted_time IS NULL AND merged_into IS NULL
  AND (consent_email <> 0 OR consent_email_time IS NOT NULL);
INSERT INTO consent_events (customer_id, channel, granted, event_time, source, actor, create_time)
SELECT id, 'sms', consent_sms, COALESCE(consent_sms_time, update_time), 'MIGRATED',
       'system:migration', COALESCE(consent_sms_time, update_time)
FROM customers
WHERE deleted_time IS NULL AND merged_into IS NULL
  AND (consent_sms <> 0 OR consent_sms_time IS NOT NULL);
INSERT INTO consent_events (customer_id, channel, granted, event_time, source, actor, create_time)
SELECT id, 'push', consent_push, COALESCE(consent_push_time, update_time), 'MIGRATED',
       'system:migration', COALESCE(consent_push_time, update_time)
FROM customers
WHERE deleted_time IS NULL AND merged_into IS NULL
  AND (consent_push <> 0 OR consent_push_time IS NOT NULL);
INSERT INTO consent_events (customer_id, channel, granted, event_time, source, actor, create_time)
SELECT id, 'phone', consent_phone, COALESCE(consent_phone_time, update_time), 'MIGRATED',
       'system:migration', COALESCE(consent_phone_time, update_time)
FROM customers
WHERE deleted_time IS NULL AND merged_into IS NULL
  AND (consent_phone <> 0 OR consent_phone_time IS NOT NULL);

CREATE TRIGGER consent_events_no_delete BEFORE DELETE ON consent_events
BEGIN
    SELECT RAISE(ABORT, 'consent events are append-only');
END;

CREATE TRIGGER consent_events_only_scrubbed BEFORE UPDATE ON consent_events
WHEN NEW.id <> OLD.id OR NEW.customer_id <> OLD.customer_id OR NEW.channel <> OLD.channel
  OR NEW.granted <> OLD.granted OR NEW.event_time <> OLD.event_time
  OR NEW.source <> OLD.source OR NEW.actor <> OLD.actor OR NEW.create_time <> OLD.create_time
  OR (NEW.terms <> OLD.terms AND NEW.terms <> '')
  OR (NEW.ip_address <> OLD.ip_address AND NEW.ip_address <> '')
  OR (NEW.user_agent <> OLD.user_agent AND NEW.user_agent <> '')
BEGIN
    SELECT RAISE(ABORT, 'consent events are append-only (an erasure only clears their text)');
END;
