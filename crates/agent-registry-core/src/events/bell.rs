//! The Redis bell: after each commit this replica publishes its revision on one channel, and
//! every replica subscribed to it wakes its change feed at once instead of at the next poll.
//!
//! Redis carries no data — the database is the log — so a lost message, or Redis being away
//! altogether, costs at most one poll interval, never a change. Both halves reconnect on their
//! own with capped back-off; whether Redis is reachable is published for health.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Doorbell;

/// Where and under which name replicas ring each other.
#[derive(Debug, Clone)]
pub struct BellConfig {
    pub url: String,
    /// Prefix of every Redis key and channel this registry uses (several registries, or tests,
    /// can share one Redis).
    pub prefix: String,
}

impl BellConfig {
    fn channel(&self) -> String {
        format!("{}changes", self.prefix)
    }

    /// Checks the URL (no connection yet): a bad one fails start-up, not later.
    pub fn client(self) -> Result<Client, redis::RedisError> {
        Ok(Client {
            redis: redis::Client::open(self.url.as_str())?,
            channel: self.channel(),
        })
    }
}

/// A checked Redis address and the channel to use.
pub struct Client {
    redis: redis::Client,
    channel: String,
}

/// The running bell: whether Redis is reachable (`None` until the first attempt tells), and
/// the publisher and subscriber tasks (they end when `stop` is cancelled).
pub struct Bell {
    pub up: watch::Receiver<Option<bool>>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Starts the publisher and the subscriber.
pub fn start(client: Client, doorbell: Arc<Doorbell>, stop: CancellationToken) -> Bell {
    let Client {
        redis: client,
        channel,
    } = client;
    // Not up until the subscription stands: a message published before it would be missed.
    let (up, up_rx) = watch::channel(None);
    let up = Arc::new(up);
    // Tells a replica's own messages apart from the others'.
    let me = Uuid::new_v4().simple().to_string();
    let tasks = vec![
        tokio::spawn(publish(
            client.clone(),
            channel.clone(),
            me.clone(),
            doorbell.clone(),
            up.clone(),
            stop.clone(),
        )),
        tokio::spawn(subscribe(client, channel.clone(), me, doorbell, up, stop)),
    ];
    Bell { up: up_rx, tasks }
}

/// Records whether Redis is reachable (`None` until first known), logging each change once.
fn set_up(up: &watch::Sender<Option<bool>>, ok: bool, error: Option<&redis::RedisError>) {
    let was = up.send_replace(Some(ok));
    match (was, ok) {
        (None | Some(true), false) => tracing::error!(error = ?error.map(ToString::to_string),
            "Redis unreachable: replicas fall back to polling the change log"),
        (None | Some(false), true) => tracing::info!("Redis reachable: change notifications on"),
        _ => {}
    }
}

/// Waits `wait`, or less if `stop` is cancelled first; true when it did.
async fn stopped_during(wait: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = stop.cancelled() => true,
    }
}

fn backoff(current: Duration) -> Duration {
    (current * 2).clamp(Duration::from_millis(100), MAX_BACKOFF)
}

/// Publishes the latest revision committed here whenever it moves.
async fn publish(
    client: redis::Client,
    channel: String,
    me: String,
    doorbell: Arc<Doorbell>,
    up: Arc<watch::Sender<Option<bool>>>,
    stop: CancellationToken,
) {
    let mut committed = doorbell.committed.subscribe();
    let mut conn = None;
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            r = committed.changed() => if r.is_err() { return },
            _ = stop.cancelled() => return,
        }
        let revision = *committed.borrow_and_update();
        let message = format!("{me} {revision}");
        // A connection that broke while Redis was away fails once: reconnect and send again,
        // so the first change after Redis returns is rung like any other.
        for _attempt in 0..2 {
            if conn.is_none() {
                match tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    client.get_multiplexed_async_connection(),
                )
                .await
                {
                    Ok(Ok(c)) => conn = Some(c),
                    Ok(Err(e)) => {
                        set_up(&up, false, Some(&e));
                        break;
                    }
                    Err(_) => {
                        set_up(&up, false, None);
                        break;
                    }
                }
            }
            let c = conn.as_mut().expect("connected above");
            // Bounded: a Redis that stopped answering must not hold this task (or shutdown).
            let sent = tokio::select! {
                r = tokio::time::timeout(CONNECT_TIMEOUT, c.publish::<_, _, i64>(&channel, &message)) => r,
                _ = stop.cancelled() => return,
            };
            match sent {
                Ok(Ok(_)) => {
                    wait = Duration::ZERO;
                    break;
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "publishing a change notification failed");
                    conn = None;
                }
                Err(_) => {
                    tracing::debug!("publishing a change notification timed out");
                    conn = None;
                }
            }
        }
        if conn.is_none() {
            // Redis is away: wait a little before trying again (changes still reach the other
            // replicas through their polling meanwhile).
            wait = backoff(wait);
            if stopped_during(wait, &stop).await {
                return;
            }
        }
    }
}

/// Listens for other replicas' revisions and wakes the change feed for each one it lacks.
async fn subscribe(
    client: redis::Client,
    channel: String,
    me: String,
    doorbell: Arc<Doorbell>,
    up: Arc<watch::Sender<Option<bool>>>,
    stop: CancellationToken,
) {
    let mut wait = Duration::ZERO;
    loop {
        // When this session subscribed: one that then stood a while reconnects fast.
        let subscribed = std::sync::Mutex::new(None);
        let session = async {
            let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
                .await
                .map_err(|_| None)?
                .map_err(Some)?;
            pubsub.subscribe(&channel).await.map_err(Some)?;
            set_up(&up, true, None);
            *crate::common::lock(&subscribed) = Some(std::time::Instant::now());
            // Whatever was rung while we were away is in the log: read it now.
            doorbell.poke.notify_one();
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = messages.next().await {
                let Ok(text) = msg.get_payload::<String>() else {
                    continue;
                };
                let mut parts = text.split(' ');
                let (Some(from), Some(rev)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let rev: i64 = rev.parse().unwrap_or(i64::MAX);
                if from == me {
                    continue;
                }
                doorbell.heard(rev);
            }
            Err::<(), Option<redis::RedisError>>(None)
        };
        tokio::select! {
            r = session => {
                let e = r.err().flatten();
                set_up(&up, false, e.as_ref());
            }
            _ = stop.cancelled() => return,
        }
        let stood = subscribed
            .into_inner()
            .unwrap_or_else(|p| p.into_inner()) // (the same policy as `common::lock`, by value)
            .is_some_and(|t: std::time::Instant| t.elapsed() >= MAX_BACKOFF);
        wait = match stood {
            true => backoff(Duration::ZERO),
            false => backoff(wait),
        };
        if stopped_during(wait, &stop).await {
            return;
        }
    }
}
