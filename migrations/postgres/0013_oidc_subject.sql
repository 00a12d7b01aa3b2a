-- Staff bearer tokens (OIDC): a user's subject at the identity provider (the token's `sub`),
-- unique when set. A user without one is matched by a verified `email` claim instead.

ALTER TABLE users ADD COLUMN oidc_subject TEXT;
CREATE UNIQUE INDEX users_oidc_subject ON users (oidc_subject);
