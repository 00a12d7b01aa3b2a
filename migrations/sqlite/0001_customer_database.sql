-- The customer database: customers, their interactions and orders, the product catalogue,
-- and idempotency keys for retried creates. Times are microseconds since the Unix epoch (UTC);
-- money is micro-units of the currency.

CREATE TABLE customers (
    id                  INTEGER PRIMARY KEY,
    display_name        TEXT    NOT NULL DEFAULT '',
    name_key            TEXT    NOT NULL DEFAULT '',
    email               TEXT,
    phone               TEXT,
    country_code        TEXT,
    region              TEXT    NOT NULL DEFAULT '',
    city                TEXT    NOT NULL DEFAULT '',
    birth_date          TEXT,
    tags                TEXT    NOT NULL DEFAULT '',
    attributes          TEXT    NOT NULL DEFAULT '{}',
    consent_email       INTEGER NOT NULL DEFAULT 0,
    consent_email_time  INTEGER,
    consent_sms         INTEGER NOT NULL DEFAULT 0,
    consent_sms_time    INTEGER,
    consent_push        INTEGER NOT NULL DEFAULT 0,
    consent_push_time   INTEGER,
    consent_phone       INTEGER NOT NULL DEFAULT 0,
    consent_phone_time  INTEGER,
    referred_by         INTEGER,
    owner               TEXT    NOT NULL DEFAULT '',
    create_time         INTEGER NOT NULL,
    update_time         INTEGER NOT NULL,
    converted_time      INTEGER,
    version             INTEGER NOT NULL DEFAULT 1,
    order_count         INTEGER NOT NULL DEFAULT 0,
    total_spent         INTEGER NOT NULL DEFAULT 0,
    first_order_time    INTEGER,
    last_order_time     INTEGER,
    referral_count      INTEGER NOT NULL DEFAULT 0,
    merged_into         INTEGER,
    deleted_time        INTEGER
);
CREATE UNIQUE INDEX customers_email ON customers (email);
CREATE UNIQUE INDEX customers_phone ON customers (phone);
CREATE INDEX customers_name_key ON customers (name_key);
CREATE INDEX customers_referred_by ON customers (referred_by) WHERE referred_by IS NOT NULL;
CREATE INDEX customers_merged_into ON customers (merged_into) WHERE merged_into IS NOT NULL;

CREATE TABLE interactions (
    id              INTEGER PRIMARY KEY,
    customer_id     INTEGER NOT NULL,
    channel         TEXT    NOT NULL,
    direction       TEXT    NOT NULL,
    kind            TEXT    NOT NULL DEFAULT '',
    subject         TEXT    NOT NULL DEFAULT '',
    body            TEXT    NOT NULL DEFAULT '',
    occurred_time   INTEGER NOT NULL,
    agent           TEXT    NOT NULL DEFAULT '',
    create_time     INTEGER NOT NULL
);
CREATE INDEX interactions_customer ON interactions (customer_id, occurred_time DESC, id DESC);

CREATE TABLE products (
    sku             TEXT    PRIMARY KEY,
    display_name    TEXT    NOT NULL,
    category        TEXT    NOT NULL DEFAULT '',
    price           INTEGER NOT NULL,
    related_skus    TEXT    NOT NULL DEFAULT '',
    update_time     INTEGER NOT NULL
);
CREATE INDEX products_category ON products (category, sku);

CREATE TABLE orders (
    order_id        TEXT    PRIMARY KEY,
    customer_id     INTEGER NOT NULL,
    currency        TEXT    NOT NULL,
    placed_time     INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    total           INTEGER NOT NULL,
    lines           TEXT    NOT NULL,
    create_time     INTEGER NOT NULL
);
CREATE INDEX orders_customer ON orders (customer_id, placed_time DESC, order_id DESC);

CREATE TABLE idempotency_keys (
    key             TEXT    PRIMARY KEY,
    resource        TEXT    NOT NULL,
    create_time     INTEGER NOT NULL
);
