//! Conversions between generated protobuf types and domain types (public so the Discover
//! encode benchmark, `bench/src/bin/encode.rs`, times the same code the handlers run).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::proto;
use agent_registry_core::domain::{
    DeathReason, Instance, InstanceStatus, NamespaceSummary, RegisterInput,
};
use agent_registry_core::registry::Listed;

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// `None` when unset, `Some(Err(()))` when negative or malformed.
pub fn from_duration(d: Option<prost_types::Duration>) -> Option<Result<Duration, ()>> {
    let d = d?;
    if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 {
        return Some(Err(()));
    }
    Some(Ok(Duration::new(d.seconds as u64, d.nanos as u32)))
}

pub fn status(s: InstanceStatus) -> proto::InstanceStatus {
    match s {
        InstanceStatus::Starting => proto::InstanceStatus::Starting,
        InstanceStatus::Alive => proto::InstanceStatus::Alive,
        InstanceStatus::Draining => proto::InstanceStatus::Draining,
        InstanceStatus::Dead => proto::InstanceStatus::Dead,
    }
}

fn death_reason(r: Option<DeathReason>) -> proto::DeathReason {
    match r {
        None => proto::DeathReason::Unspecified,
        Some(DeathReason::Deregistered) => proto::DeathReason::Deregistered,
        Some(DeathReason::LeaseExpired) => proto::DeathReason::LeaseExpired,
        Some(DeathReason::EpochSuperseded) => proto::DeathReason::EpochSuperseded,
        Some(DeathReason::Evicted) => proto::DeathReason::Evicted,
    }
}

pub fn instance(i: &Instance) -> proto::Instance {
    proto::Instance {
        instance_id: i.instance_id.to_string(),
        namespace: i.namespace.clone(),
        logical_id: i.logical_id.clone(),
        epoch: i.epoch.to_string(),
        status: status(i.status) as i32,
        agent_type: i.agent_type.clone(),
        version: i.version.clone(),
        endpoint: i.endpoint.clone(),
        capabilities: i.capabilities.clone(),
        labels: i
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        actor_name: i.actor_name.clone(),
        node_id: i.node_id.clone(),
        ip_address: i.ip_address.clone(),
        pid: i.pid,
        lease_ttl: Some(duration(i.lease_ttl)),
        started_at: Some(timestamp(i.started_at)),
        last_heartbeat: Some(timestamp(i.last_heartbeat)),
        stopped_at: i.stopped_at.map(timestamp),
        death_reason: death_reason(i.death_reason) as i32,
        revision: i.revision,
        card_digest: i.card_digest.clone(),
    }
}

/// An instance as a read of the index returns it: the latest heartbeat known here.
pub fn listed(i: &Listed) -> proto::Instance {
    proto::Instance {
        last_heartbeat: Some(timestamp(i.last_heartbeat)),
        ..instance(&i.row)
    }
}

pub fn namespace(s: &NamespaceSummary) -> proto::Namespace {
    proto::Namespace {
        name: s.namespace.name.clone(),
        current_epoch: s.namespace.current_epoch.to_string(),
        epoch_started_at: Some(timestamp(s.namespace.epoch_started_at)),
        created_at: Some(timestamp(s.namespace.created_at)),
        starting_count: s.starting,
        alive_count: s.alive,
        draining_count: s.draining,
        dead_count: s.dead,
        live_count: s.live,
        revision: s.namespace.revision,
    }
}

/// One Watch message: events (a DEAD instance is a DELETE, any other a PUT) or a bookmark.
pub fn watch_response(out: agent_registry_core::registry::Output) -> proto::WatchResponse {
    use agent_registry_core::registry::Output;
    use proto::watch_event::Type;
    match out {
        Output::Events(rows) => proto::WatchResponse {
            events: rows
                .iter()
                .map(|row| proto::WatchEvent {
                    r#type: match row.status {
                        InstanceStatus::Dead => Type::Delete,
                        _ => Type::Put,
                    } as i32,
                    instance: Some(instance(row)),
                    revision: row.revision,
                })
                .collect(),
            bookmark_revision: 0,
        },
        Output::Bookmark(revision) => proto::WatchResponse {
            events: Vec::new(),
            bookmark_revision: revision,
        },
    }
}

/// A Register request as the domain reads it; `registered_by` is the caller, never the request.
pub fn register_input(
    r: proto::RegisterRequest,
    registered_by: &str,
    any_owner: bool,
) -> RegisterInput {
    RegisterInput {
        namespace: r.namespace,
        logical_id: r.logical_id,
        agent_type: r.agent_type,
        version: r.version,
        endpoint: r.endpoint,
        capabilities: r.capabilities,
        labels: r.labels.into_iter().collect(),
        actor_name: r.actor_name,
        node_id: r.node_id,
        ip_address: r.ip_address,
        pid: r.pid,
        lease_ttl: from_duration(r.lease_ttl),
        instance_id: r.instance_id,
        expected_epoch: r.expected_epoch,
        ready: r.ready,
        registered_by: registered_by.to_string(),
        any_owner,
        card: r.card.map(super::cards::card_input),
        card_digest: r.card_digest,
    }
}
