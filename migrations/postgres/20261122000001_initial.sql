-- The registry's tables and its two public views. Times are timestamptz, lease_ttl an interval.

-- One row: the registry-wide revision. Every write transaction locks it first, so writes are
-- serialized, revisions have no gaps and commit order equals revision order.
CREATE TABLE registry_revision (
    id    boolean PRIMARY KEY DEFAULT true CHECK (id),
    value bigint  NOT NULL
);
INSERT INTO registry_revision (id, value) VALUES (true, 0);

CREATE TABLE namespace (
    name             text        PRIMARY KEY,
    current_epoch    uuid        NOT NULL,
    epoch_started_at timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    revision         bigint      NOT NULL
);
CREATE INDEX namespace_revision_idx ON namespace (revision);

CREATE TABLE registry_instance (
    instance_id    uuid        PRIMARY KEY,
    namespace      text        NOT NULL REFERENCES namespace (name),
    logical_id     text        NOT NULL,
    epoch          uuid        NOT NULL,
    status         text        NOT NULL CHECK (status IN ('STARTING', 'ALIVE', 'DRAINING', 'DEAD')),
    agent_type     text        NOT NULL DEFAULT '',
    version        text        NOT NULL DEFAULT '',
    endpoint       text        NOT NULL DEFAULT '',
    capabilities   text[]      NOT NULL DEFAULT '{}',
    labels         jsonb       NOT NULL DEFAULT '{}',
    actor_name     text        NOT NULL DEFAULT '',
    node_id        text        NOT NULL DEFAULT '',
    ip_address     text        NOT NULL DEFAULT '',
    pid            bigint      NOT NULL DEFAULT 0,
    lease_ttl      interval    NOT NULL,
    started_at     timestamptz NOT NULL,
    last_heartbeat timestamptz NOT NULL,
    stopped_at     timestamptz,
    death_reason   text        CHECK (death_reason IN ('DEREGISTERED', 'LEASE_EXPIRED', 'EPOCH_SUPERSEDED', 'EVICTED')),
    revision       bigint      NOT NULL,
    CHECK ((status = 'DEAD') = (death_reason IS NOT NULL)),
    CHECK ((status = 'DEAD') = (stopped_at IS NOT NULL))
);
-- Each revision names exactly one change; replicas tail this index.
CREATE UNIQUE INDEX registry_instance_revision_idx ON registry_instance (revision);
CREATE INDEX registry_instance_logical_idx ON registry_instance (namespace, logical_id);
CREATE INDEX registry_instance_status_epoch_idx ON registry_instance (status, epoch);
CREATE INDEX registry_instance_labels_idx ON registry_instance USING gin (labels);
CREATE INDEX registry_instance_capabilities_idx ON registry_instance USING gin (capabilities);
CREATE INDEX registry_instance_lease_idx ON registry_instance (last_heartbeat) WHERE status <> 'DEAD';

-- Every live instance: ALIVE, in its namespace's current epoch, lease not run out.
CREATE VIEW active_instances AS
SELECT i.*
FROM registry_instance i
JOIN namespace n ON n.name = i.namespace AND n.current_epoch = i.epoch
WHERE i.status = 'ALIVE'
  AND i.last_heartbeat + i.lease_ttl > now();

-- The active instance per (namespace, logical_id): the live one that has served longest.
CREATE VIEW active_instance AS
SELECT DISTINCT ON (namespace, logical_id) *
FROM active_instances
ORDER BY namespace, logical_id, started_at, instance_id;
