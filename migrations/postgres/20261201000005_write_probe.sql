-- One row any replica rewrites to learn whether the store takes writes again after writes
-- failed (a read-only failover target, a full disk): reads alone would not prove it.
CREATE TABLE registry_probe (
    id boolean     PRIMARY KEY DEFAULT true CHECK (id),
    at timestamptz NOT NULL
);
