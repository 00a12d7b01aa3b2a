-- Record scope: a customer's owner is a staff user, `users/{id}` (a sales rep sees the
-- customers they own, a manager also their reports'). Free-text owners written before this
-- migration become the user with that e-mail address (compared case-insensitively) or are
-- cleared; every former value is kept in legacy_customer_owners for review.

CREATE TABLE legacy_customer_owners (
    customer_id     BIGINT PRIMARY KEY,
    owner           TEXT   NOT NULL
);

INSERT INTO legacy_customer_owners (customer_id, owner)
    SELECT id, owner FROM customers WHERE owner <> '';

UPDATE customers SET owner = COALESCE(
    (SELECT 'users/' || CAST(u.id AS TEXT) FROM users u
      WHERE lower(u.email) = lower(trim(customers.owner))),
    '')
WHERE owner <> '';

CREATE INDEX customers_owner ON customers (owner) WHERE owner <> '';
