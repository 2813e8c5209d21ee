//! Watch fan-out across replicas: registrations sent to replica A, a watcher on replica B,
//! and the time from sending each Register until B's watcher receives its PUT.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_registry::proto::{
    WatchRequest, discovery_service_client::DiscoveryServiceClient,
    registry_service_client::RegistryServiceClient, watch_event,
};
use serde_json::json;
use tokio::time::Instant;

use crate::agents::{self, register_request};
use crate::progress;
use crate::stats::{Latency, histogram, record};

#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// The replica registrations are sent to.
    #[arg(long)]
    pub a: String,
    /// The replica being watched.
    #[arg(long)]
    pub b: String,
    #[arg(long, default_value_t = 1_000)]
    pub writes: usize,
    /// Registrations per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
}

pub async fn run(a: FanoutArgs) -> Result<serde_json::Value, String> {
    let namespace = agents::run_namespace();
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut watch = DiscoveryServiceClient::new(agents::registry_channel(&a.b).await?)
        .watch(WatchRequest {
            namespace: namespace.clone(),
            ..Default::default()
        })
        .await
        .map_err(|s| format!("watch: {:?} {}", s.code(), s.message()))?
        .into_inner();
    let writes = a.writes;
    let seen = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut h = histogram();
            let mut got = 0;
            while got < writes {
                let msg = match tokio::time::timeout(Duration::from_secs(10), watch.message()).await
                {
                    Ok(Ok(Some(m))) => m,
                    _ => break,
                };
                let now = Instant::now();
                for e in msg.events {
                    if e.r#type != watch_event::Type::Put as i32 {
                        continue;
                    }
                    let Some(i) = e.instance else { continue };
                    if let Some(t) = sent.lock().unwrap().remove(&i.logical_id) {
                        record(&mut h, now - t);
                        got += 1;
                    }
                }
            }
            h
        })
    };
    progress!(
        "{} registrations at {}/s: A={} → watcher on B={}",
        a.writes,
        a.rate,
        a.a,
        a.b
    );
    let mut client = RegistryServiceClient::new(agents::registry_channel(&a.a).await?);
    let t0 = Instant::now();
    for i in 0..a.writes {
        tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / a.rate)).await;
        let req = register_request(&namespace, i, "bench", Duration::from_secs(3600));
        sent.lock()
            .unwrap()
            .insert(req.logical_id.clone(), Instant::now());
        client
            .register(req)
            .await
            .map_err(|s| format!("register: {:?} {}", s.code(), s.message()))?;
    }
    let h = seen.await.map_err(|e| e.to_string())?;
    let missing = sent.lock().unwrap().len();
    Ok(json!({
        "scenario": "fanout",
        "writes": a.writes,
        "rate_per_s": a.rate,
        "latency": Latency::of(&h),
        "missing": missing,
    }))
}
