-- Agent cards (SPEC §15): every version of each agent's card, as the exact bytes received, by
-- namespace, logical id and digest (`sha256:` of its RFC 8785 canonical form). Each row's
-- revision is that of its last publication, or of its collection: a collected version (no
-- retained instance served it and a newer one was published) keeps its row, without its
-- bytes, until the change log it belongs to is compacted, so every replica learns it is gone.
CREATE TABLE agent_card (
    namespace    text        NOT NULL REFERENCES namespace (name),
    logical_id   text        NOT NULL,
    digest       text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('a2a', 'mcp')),
    card         bytea       NOT NULL,
    name         text        NOT NULL,
    version      text        NOT NULL,
    published_at timestamptz NOT NULL,
    revision     bigint      NOT NULL,
    collected    boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (namespace, logical_id, digest),
    CHECK (collected = (octet_length(card) = 0))
);
CREATE UNIQUE INDEX agent_card_revision_idx ON agent_card (revision);

-- The card each instance serves ('' when none); the change log carries it.
ALTER TABLE registry_instance ADD COLUMN card_digest text NOT NULL DEFAULT '';
ALTER TABLE registry_change ADD COLUMN card_digest text NOT NULL DEFAULT '';

CREATE OR REPLACE FUNCTION registry_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO registry_change (changed_at, instance_id, namespace, logical_id, epoch, status, agent_type, version, endpoint, capabilities, labels, actor_name, node_id, ip_address, pid, lease_ttl, started_at, last_heartbeat, stopped_at, death_reason, registered_by, card_digest, revision)
    VALUES (clock_timestamp(), NEW.instance_id, NEW.namespace, NEW.logical_id, NEW.epoch, NEW.status, NEW.agent_type, NEW.version, NEW.endpoint, NEW.capabilities, NEW.labels, NEW.actor_name, NEW.node_id, NEW.ip_address, NEW.pid, NEW.lease_ttl, NEW.started_at, NEW.last_heartbeat, NEW.stopped_at, NEW.death_reason, NEW.registered_by, NEW.card_digest, NEW.revision);
    RETURN NULL;
END
$$;

-- The instance views list their columns when created: made again, they show card_digest.
DROP VIEW active_instance;
DROP VIEW active_instances;
CREATE VIEW active_instances AS
SELECT i.*
FROM registry_instance i
JOIN namespace n ON n.name = i.namespace AND n.current_epoch = i.epoch
WHERE i.status = 'ALIVE'
  AND i.last_heartbeat + i.lease_ttl > now();

CREATE VIEW active_instance AS
SELECT DISTINCT ON (namespace, logical_id) *
FROM active_instances
ORDER BY namespace, logical_id, started_at, instance_id;

-- One row per agent (a namespace and logical id with a card): its current card — the active
-- instance's, or when that instance serves none (or none is live) the latest published —,
-- its live instances and state. GetAgent and SearchAgents (include_offline) answer the same.
CREATE VIEW active_agent AS
WITH latest AS (
    SELECT DISTINCT ON (namespace, logical_id) namespace, logical_id, digest
    FROM agent_card
    WHERE NOT collected
    ORDER BY namespace, logical_id, revision DESC
), live AS (
    SELECT namespace, logical_id, count(*) AS live_instances
    FROM active_instances
    GROUP BY namespace, logical_id
), chosen AS (
    SELECT l.namespace, l.logical_id,
           COALESCE(served.digest, l.digest) AS digest
    FROM latest l
    LEFT JOIN LATERAL (
        SELECT c.digest
        FROM active_instance a
        JOIN agent_card c ON c.namespace = a.namespace AND c.logical_id = a.logical_id
                         AND c.digest = a.card_digest AND NOT c.collected
        WHERE a.namespace = l.namespace AND a.logical_id = l.logical_id
    ) served ON true
)
SELECT c.namespace, c.logical_id, c.kind, c.name, c.version, c.digest,
       COALESCE(live.live_instances, 0) AS live_instances,
       CASE WHEN live.live_instances > 0 THEN 'LIVE' ELSE 'NO_LIVE_INSTANCES' END AS state,
       c.published_at, c.revision,
       convert_from(c.card, 'UTF8')::jsonb AS card
FROM chosen ch
JOIN agent_card c ON c.namespace = ch.namespace AND c.logical_id = ch.logical_id
                 AND c.digest = ch.digest
LEFT JOIN live ON live.namespace = ch.namespace AND live.logical_id = ch.logical_id;
