-- The change log: every change to an instance row, one row per revision, written in the same
-- transaction as the change. Replicas tail it to keep their index current and Watch replays it,
-- so no intermediate state is lost even when a row changes twice between two reads.
CREATE TABLE registry_change (
    revision       bigint      PRIMARY KEY,
    changed_at     timestamptz NOT NULL,
    instance_id    uuid        NOT NULL,
    namespace      text        NOT NULL,
    logical_id     text        NOT NULL,
    epoch          uuid        NOT NULL,
    status         text        NOT NULL,
    agent_type     text        NOT NULL,
    version        text        NOT NULL,
    endpoint       text        NOT NULL,
    capabilities   text[]      NOT NULL,
    labels         jsonb       NOT NULL,
    actor_name     text        NOT NULL,
    node_id        text        NOT NULL,
    ip_address     text        NOT NULL,
    pid            bigint      NOT NULL,
    lease_ttl      interval    NOT NULL,
    started_at     timestamptz NOT NULL,
    last_heartbeat timestamptz NOT NULL,
    stopped_at     timestamptz,
    death_reason   text
);
CREATE INDEX registry_change_changed_at_idx ON registry_change (changed_at);

-- Changes at or below `compacted` may be gone from the log: a watch cannot resume from there.
-- Whatever was committed before the log existed is not in it.
ALTER TABLE registry_revision ADD COLUMN compacted bigint NOT NULL DEFAULT 0;
UPDATE registry_revision SET compacted = value;
