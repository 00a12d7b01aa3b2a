-- The outbox's status indexes hold only the messages the dispatcher still has work for: a
-- delivered or dead message leaves them, so they stay small, and a status change touches one
-- small index instead of two indexes over every message ever sent. The frequency cap counts
-- a customer's recent messages through outbox_messages_customer (few rows per customer), so
-- its own index goes too.
DROP INDEX outbox_messages_status;
DROP INDEX outbox_messages_retry;
DROP INDEX outbox_messages_cap;
CREATE INDEX outbox_messages_queued ON outbox_messages (id) WHERE status = 'QUEUED';
CREATE INDEX outbox_messages_sending ON outbox_messages (id) WHERE status = 'SENDING';
CREATE INDEX outbox_messages_failed ON outbox_messages (next_attempt_time) WHERE status = 'FAILED';
