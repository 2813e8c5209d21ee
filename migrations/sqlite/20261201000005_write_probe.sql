-- One row any write probe rewrites (see the Postgres migration of the same name).
CREATE TABLE registry_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
);
