-- Delivery: channel sinks retry failed messages with backoff. A FAILED message is claimed
-- again once `next_attempt_time` has passed (QUEUED ones are always due); `last_error` keeps
-- the sink's last complaint, also for a DEAD (dead-lettered) message. Times are microseconds.

ALTER TABLE outbox_messages ADD COLUMN next_attempt_time INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox_messages ADD COLUMN last_error TEXT NOT NULL DEFAULT '';
-- Claims look up FAILED messages by due time (QUEUED and expired SENDING ones by status, id).
CREATE INDEX outbox_messages_retry ON outbox_messages (status, next_attempt_time);
