-- A custom role's record scope per family, as JSON: {"customers": "OWN", "tickets": "TEAM"}.
-- A family left out gives no reach of its own (see src/auth/permissions.rs, scope_of).
ALTER TABLE roles ADD COLUMN scopes TEXT NOT NULL DEFAULT '{}';
