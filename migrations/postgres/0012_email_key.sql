-- A customer is unique by the key of their e-mail address (crates/bakkal-domain normalise::
-- email_key: NFKC, full case folding with İ as i, the domain in IDNA ASCII), not by the
-- address as written, which `email` keeps for display and filters. The key is computed in
-- Rust at every write; rows written before this migration get theirs from the backfill the
-- store runs after migrating (Store::migrate → backfill_email_keys).
ALTER TABLE customers ADD COLUMN email_key TEXT;
DROP INDEX customers_email;
CREATE INDEX customers_email ON customers (email);
CREATE UNIQUE INDEX customers_email_key ON customers (email_key);
