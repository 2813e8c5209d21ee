//! Reloading files that may change under a running server (certificates, the tokens file):
//! on SIGHUP, and whenever a poll sees a file's size or modification time move.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agent_registry_core::metrics::Metrics;

/// What identifies one version of a file well enough (`None`: unreadable right now).
fn signature(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Calls `reload` whenever one of `paths` changes (checked every `every`) or the process gets
/// SIGHUP, until `stop` is cancelled. `what` names the files in the log and in the `reloads`
/// metric, which counts every outcome.
pub async fn watch(
    what: &'static str,
    paths: Vec<PathBuf>,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
    metrics: Arc<Metrics>,
    reload: impl Fn() -> Result<String, String> + Send + 'static,
) {
    let mut seen: Vec<_> = paths.iter().map(signature).collect();
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
            _ = stop.cancelled() => return,
        };
        let now: Vec<_> = paths.iter().map(signature).collect();
        // A file being rewritten may be missing for a moment: wait for it to come back.
        if !forced && (now == seen || now.iter().any(Option::is_none)) {
            continue;
        }
        seen = now;
        let outcome = reload();
        metrics.reloaded(what, outcome.is_ok());
        match outcome {
            Ok(summary) => tracing::info!(what, %summary, "reloaded"),
            Err(error) => {
                tracing::error!(what, %error, "reload failed; keeping the previous version")
            }
        }
    }
}
