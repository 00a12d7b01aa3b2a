-- Loyalty points: the program (one row, JSON settings, versioned for etags), an account per
-- customer (balance, lifetime earned, tier) and the points ledger. Positive EARN and ADJUST
-- rows are lots: `remaining` is what is left of them after FIFO debits, `expire_time` when
-- the rest expires. Every row has a unique idempotency key (the order for EARN and REFUND, the
-- lot for EXPIRE, the caller's request_id for REDEEM and ADJUST), so each happens once.
-- Times are microseconds (UTC); points are whole numbers.

CREATE TABLE loyalty_program (
    id              INTEGER PRIMARY KEY,
    settings        TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    update_time     INTEGER NOT NULL
);

CREATE TABLE loyalty_accounts (
    customer_id     INTEGER PRIMARY KEY,
    balance         INTEGER NOT NULL DEFAULT 0,
    lifetime_earned INTEGER NOT NULL DEFAULT 0,
    tier            TEXT    NOT NULL DEFAULT '',
    create_time     INTEGER NOT NULL,
    update_time     INTEGER NOT NULL
);

CREATE TABLE points_transactions (
    id              INTEGER PRIMARY KEY,
    customer_id     INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    points          INTEGER NOT NULL,
    balance_after   INTEGER NOT NULL,
    reason          TEXT    NOT NULL DEFAULT '',
    order_id        TEXT,
    idempotency_key TEXT    NOT NULL UNIQUE,
    remaining       INTEGER NOT NULL DEFAULT 0,
    expire_time     INTEGER,
    create_time     INTEGER NOT NULL
);
CREATE INDEX points_transactions_customer ON points_transactions (customer_id, id);
CREATE INDEX points_transactions_lots ON points_transactions (expire_time) WHERE remaining > 0;
