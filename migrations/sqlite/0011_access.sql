-- Access control: staff users, service accounts, their API keys (only a hash of each secret
-- is stored) and custom roles. Roles are lists of role names (JSON text); built-in roles live
-- in the transport's permission table, custom ones here. Times are microseconds (UTC).

CREATE TABLE users (
    id              INTEGER PRIMARY KEY,
    display_name    TEXT   NOT NULL,
    email           TEXT   NOT NULL UNIQUE,
    roles           TEXT   NOT NULL DEFAULT '[]',
    teams           TEXT   NOT NULL DEFAULT '[]',
    manager_id      BIGINT,
    active          BIGINT NOT NULL DEFAULT 1,
    version         BIGINT NOT NULL DEFAULT 1,
    create_time     BIGINT NOT NULL,
    update_time     BIGINT NOT NULL
);

CREATE TABLE service_accounts (
    id              INTEGER PRIMARY KEY,
    display_name    TEXT   NOT NULL UNIQUE,
    roles           TEXT   NOT NULL DEFAULT '[]',
    active          BIGINT NOT NULL DEFAULT 1,
    version         BIGINT NOT NULL DEFAULT 1,
    create_time     BIGINT NOT NULL,
    update_time     BIGINT NOT NULL
);

CREATE TABLE api_keys (
    -- the public key id, part of the key itself
    key_id          TEXT   PRIMARY KEY,
    -- 'user' or 'service_account'
    parent_kind     TEXT   NOT NULL,
    parent_id       BIGINT NOT NULL,
    display_name    TEXT   NOT NULL,
    -- empty: the parent's roles
    roles           TEXT   NOT NULL DEFAULT '[]',
    test            BIGINT NOT NULL DEFAULT 0,
    -- hex SHA-256 of the secret part
    secret_hash     TEXT   NOT NULL,
    expire_time     BIGINT,
    revoke_time     BIGINT,
    -- the key this one replaced by rotation
    rotated_from    TEXT,
    create_time     BIGINT NOT NULL
);
CREATE INDEX api_keys_parent ON api_keys (parent_kind, parent_id);

CREATE TABLE roles (
    name            TEXT   PRIMARY KEY,
    description     TEXT   NOT NULL DEFAULT '',
    permissions     TEXT   NOT NULL DEFAULT '[]',
    create_time     BIGINT NOT NULL
);
