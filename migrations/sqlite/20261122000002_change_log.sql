-- The change log, as on Postgres: one row per instance change, written with the change.
CREATE TABLE registry_change (
    revision       INTEGER PRIMARY KEY,
    changed_at     INTEGER NOT NULL,
    instance_id    TEXT    NOT NULL,
    namespace      TEXT    NOT NULL,
    logical_id     TEXT    NOT NULL,
    epoch          TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    agent_type     TEXT    NOT NULL,
    version        TEXT    NOT NULL,
    endpoint       TEXT    NOT NULL,
    capabilities   TEXT    NOT NULL,
    labels         TEXT    NOT NULL,
    actor_name     TEXT    NOT NULL,
    node_id        TEXT    NOT NULL,
    ip_address     TEXT    NOT NULL,
    pid            INTEGER NOT NULL,
    lease_ttl      INTEGER NOT NULL,
    started_at     INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL,
    stopped_at     INTEGER,
    death_reason   TEXT
);
CREATE INDEX registry_change_changed_at_idx ON registry_change (changed_at);

ALTER TABLE registry_revision ADD COLUMN compacted INTEGER NOT NULL DEFAULT 0;
UPDATE registry_revision SET compacted = value;
