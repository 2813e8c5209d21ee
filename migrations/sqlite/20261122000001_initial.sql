-- The registry's tables and its two public views, as on Postgres. SQLite has no timestamp or
-- interval types: times are INTEGER microseconds since the Unix epoch, lease_ttl INTEGER
-- milliseconds, ids TEXT (canonical UUIDs), capabilities and labels JSON TEXT.

CREATE TABLE registry_revision (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO registry_revision (id, value) VALUES (1, 0);

CREATE TABLE namespace (
    name             TEXT    PRIMARY KEY,
    current_epoch    TEXT    NOT NULL,
    epoch_started_at INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    revision         INTEGER NOT NULL
);
CREATE INDEX namespace_revision_idx ON namespace (revision);

CREATE TABLE registry_instance (
    instance_id    TEXT    PRIMARY KEY,
    namespace      TEXT    NOT NULL REFERENCES namespace (name),
    logical_id     TEXT    NOT NULL,
    epoch          TEXT    NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN ('STARTING', 'ALIVE', 'DRAINING', 'DEAD')),
    agent_type     TEXT    NOT NULL DEFAULT '',
    version        TEXT    NOT NULL DEFAULT '',
    endpoint       TEXT    NOT NULL DEFAULT '',
    capabilities   TEXT    NOT NULL DEFAULT '[]',
    labels         TEXT    NOT NULL DEFAULT '{}',
    actor_name     TEXT    NOT NULL DEFAULT '',
    node_id        TEXT    NOT NULL DEFAULT '',
    ip_address     TEXT    NOT NULL DEFAULT '',
    pid            INTEGER NOT NULL DEFAULT 0,
    lease_ttl      INTEGER NOT NULL,
    started_at     INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL,
    stopped_at     INTEGER,
    death_reason   TEXT    CHECK (death_reason IN ('DEREGISTERED', 'LEASE_EXPIRED', 'EPOCH_SUPERSEDED', 'EVICTED')),
    revision       INTEGER NOT NULL,
    CHECK ((status = 'DEAD') = (death_reason IS NOT NULL)),
    CHECK ((status = 'DEAD') = (stopped_at IS NOT NULL))
);
CREATE UNIQUE INDEX registry_instance_revision_idx ON registry_instance (revision);
CREATE INDEX registry_instance_logical_idx ON registry_instance (namespace, logical_id);
CREATE INDEX registry_instance_status_epoch_idx ON registry_instance (status, epoch);
CREATE INDEX registry_instance_lease_idx ON registry_instance (last_heartbeat) WHERE status <> 'DEAD';

CREATE VIEW active_instances AS
SELECT i.*
FROM registry_instance i
JOIN namespace n ON n.name = i.namespace AND n.current_epoch = i.epoch
WHERE i.status = 'ALIVE'
  AND i.last_heartbeat + i.lease_ttl * 1000
      > CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER);

-- SQLite has no DISTINCT ON: rank each (namespace, logical_id) group by seniority instead.
CREATE VIEW active_instance AS
SELECT instance_id, namespace, logical_id, epoch, status, agent_type, version, endpoint,
       capabilities, labels, actor_name, node_id, ip_address, pid, lease_ttl, started_at,
       last_heartbeat, stopped_at, death_reason, revision
FROM (
    SELECT *, row_number() OVER (
        PARTITION BY namespace, logical_id ORDER BY started_at, instance_id
    ) AS seniority
    FROM active_instances
)
WHERE seniority = 1;
