-- mTLS: a client certificate speaks for the service account that lists its SHA-256
-- fingerprint (lowercase hex of the DER certificate). A fingerprint belongs to at most one
-- account; an account may list several (two during a certificate rollover).
CREATE TABLE service_account_certificates (
    sha256              TEXT   PRIMARY KEY,
    service_account_id  BIGINT NOT NULL,
    create_time         BIGINT NOT NULL
);
CREATE INDEX service_account_certificates_account
    ON service_account_certificates (service_account_id);
