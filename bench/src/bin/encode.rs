//! What a Discover page costs to build and encode on the server, apart from the transport:
//! 100 instances shaped like the `discover` scenario's, turned into the contract's messages
//! the way the handler does (`api::convert::listed`), then encoded by prost.
//!
//!   cargo run --release -p agent-registry-bench --bin encode

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_registry::api::convert;
use agent_registry::proto;
use agent_registry_core::domain::{Instance, InstanceStatus, now};
use agent_registry_core::index::Listed;
use prost::Message;

const PAGE: usize = 100;
const ROUNDS: u32 = 20_000;

fn listed(i: usize) -> Listed {
    let at = now();
    let labels = BTreeMap::from([("zone".to_string(), format!("z{}", i % 3))]);
    Listed {
        row: Arc::new(Instance {
            instance_id: uuid::Uuid::now_v7(),
            namespace: "bench".into(),
            logical_id: format!("agent-{i}"),
            epoch: uuid::Uuid::now_v7(),
            status: InstanceStatus::Alive,
            agent_type: format!("type-{}", i % 100),
            version: "1.0.0".into(),
            endpoint: format!("10.0.{}.{}:{}", i / 250 % 250, i % 250, 9000 + i % 1000),
            capabilities: vec!["plan".into(), "search".into()],
            labels,
            actor_name: "bench".into(),
            registered_by: String::new(),
            node_id: "node-1".into(),
            ip_address: "10.0.0.1".into(),
            pid: 1234,
            lease_ttl: Duration::from_secs(120),
            started_at: at,
            last_heartbeat: at,
            stopped_at: None,
            death_reason: None,
            card_digest: String::new(),
            revision: i as i64,
        }),
        last_heartbeat: at,
    }
}

fn page(rows: &[Listed]) -> proto::DiscoverResponse {
    proto::DiscoverResponse {
        instances: rows.iter().map(convert::listed).collect(),
        next_page_token: "x".repeat(40),
        revision: 1,
    }
}

/// Mean time of `f` over `ROUNDS` calls.
fn time<T>(mut f: impl FnMut() -> T) -> Duration {
    let t = Instant::now();
    for _ in 0..ROUNDS {
        black_box(f());
    }
    t.elapsed() / ROUNDS
}

fn main() {
    let rows: Vec<Listed> = (0..PAGE).map(listed).collect();
    let built = page(&rows);
    let convert = time(|| page(black_box(&rows)));
    let encode = time(|| black_box(&built).encode_to_vec());
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{{\"scenario\":\"discover-encode\",\"instances\":{PAGE},\"rounds\":{ROUNDS},\
         \"convert_us\":{:.1},\"encode_us\":{:.1},\"bytes\":{}}}",
        us(convert),
        us(encode),
        built.encoded_len()
    );
}
