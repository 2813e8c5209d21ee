//! How `ctl` prints: aligned tables for people, JSON for scripts (one document per command,
//! one object per line for `watch`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::proto;

fn time(t: &Option<prost_types::Timestamp>) -> Option<String> {
    let t = t.as_ref()?;
    DateTime::<Utc>::from_timestamp(t.seconds, t.nanos.max(0) as u32)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Millis, true))
}

pub fn status(s: i32) -> &'static str {
    match proto::InstanceStatus::try_from(s) {
        Ok(proto::InstanceStatus::Starting) => "STARTING",
        Ok(proto::InstanceStatus::Alive) => "ALIVE",
        Ok(proto::InstanceStatus::Draining) => "DRAINING",
        Ok(proto::InstanceStatus::Dead) => "DEAD",
        _ => "UNSPECIFIED",
    }
}

fn death(d: i32) -> Option<&'static str> {
    match proto::DeathReason::try_from(d) {
        Ok(proto::DeathReason::Deregistered) => Some("DEREGISTERED"),
        Ok(proto::DeathReason::LeaseExpired) => Some("LEASE_EXPIRED"),
        Ok(proto::DeathReason::EpochSuperseded) => Some("EPOCH_SUPERSEDED"),
        Ok(proto::DeathReason::Evicted) => Some("EVICTED"),
        _ => None,
    }
}

pub fn instance_json(i: &proto::Instance) -> Value {
    json!({
        "instance_id": i.instance_id,
        "namespace": i.namespace,
        "logical_id": i.logical_id,
        "epoch": i.epoch,
        "status": status(i.status),
        "agent_type": i.agent_type,
        "version": i.version,
        "endpoint": i.endpoint,
        "capabilities": i.capabilities,
        "labels": i.labels,
        "actor_name": i.actor_name,
        "node_id": i.node_id,
        "ip_address": i.ip_address,
        "pid": i.pid,
        "lease_ttl_seconds": i.lease_ttl.map(|d| d.seconds as f64 + d.nanos as f64 / 1e9),
        "started_at": time(&i.started_at),
        "last_heartbeat": time(&i.last_heartbeat),
        "stopped_at": time(&i.stopped_at),
        "death_reason": death(i.death_reason),
        "revision": i.revision,
    })
}

pub fn namespace_json(n: &proto::Namespace) -> Value {
    json!({
        "name": n.name,
        "current_epoch": n.current_epoch,
        "epoch_started_at": time(&n.epoch_started_at),
        "created_at": time(&n.created_at),
        "starting": n.starting_count,
        "alive": n.alive_count,
        "draining": n.draining_count,
        "dead": n.dead_count,
        "live": n.live_count,
        "revision": n.revision,
    })
}

/// Columns padded to their widest cell, two spaces apart.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (n, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if n + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

pub fn instances_table(items: &[proto::Instance]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                i.instance_id.clone(),
                i.namespace.clone(),
                i.logical_id.clone(),
                status(i.status).to_string(),
                i.endpoint.clone(),
                time(&i.last_heartbeat).unwrap_or_default(),
                i.revision.to_string(),
            ]
        })
        .collect();
    let headers = [
        "INSTANCE_ID",
        "NAMESPACE",
        "LOGICAL_ID",
        "STATUS",
        "ENDPOINT",
        "LAST_HEARTBEAT",
        "REVISION",
    ];
    table(&headers, &rows)
}

pub fn namespaces_table(items: &[proto::Namespace]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.current_epoch.clone(),
                n.starting_count.to_string(),
                n.alive_count.to_string(),
                n.draining_count.to_string(),
                n.dead_count.to_string(),
                n.live_count.to_string(),
            ]
        })
        .collect();
    let headers = [
        "NAME", "EPOCH", "STARTING", "ALIVE", "DRAINING", "DEAD", "LIVE",
    ];
    table(&headers, &rows)
}

/// One instance, a field per line.
pub fn instance_detail(i: &proto::Instance) -> String {
    let Value::Object(fields) = instance_json(i) else {
        unreachable!("an object")
    };
    let width = fields.keys().map(String::len).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in fields {
        let v = match v {
            Value::Null => String::new(),
            Value::String(s) => s,
            other => other.to_string(),
        };
        out.push_str(&format!("{k:<width$}  {v}\n"));
    }
    out
}

/// One Watch event as a line: revision, type, instance, logical id, status.
pub fn event_line(e: &proto::WatchEvent) -> String {
    let kind = match proto::watch_event::Type::try_from(e.r#type) {
        Ok(proto::watch_event::Type::Put) => "PUT",
        Ok(proto::watch_event::Type::Delete) => "DELETE",
        _ => "UNSPECIFIED",
    };
    let i = e.instance.clone().unwrap_or_default();
    format!(
        "{}  {kind:<6}  {}  {}  {}",
        e.revision,
        i.instance_id,
        i.logical_id,
        status(i.status)
    )
}

pub fn event_json(e: &proto::WatchEvent) -> Value {
    let kind = match proto::watch_event::Type::try_from(e.r#type) {
        Ok(proto::watch_event::Type::Put) => "PUT",
        Ok(proto::watch_event::Type::Delete) => "DELETE",
        _ => "UNSPECIFIED",
    };
    json!({
        "type": kind,
        "revision": e.revision,
        "instance": e.instance.as_ref().map(instance_json),
    })
}
