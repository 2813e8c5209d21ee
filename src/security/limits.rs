//! The limits of SPEC §9 that are counted rather than checked on one message: requests per
//! second per caller (a token bucket each), calls in flight per connection and long-lived
//! streams per replica (counted by slots released when the call ends).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

/// The configured limits; each breach is RESOURCE_EXHAUSTED.
#[derive(Debug, Clone)]
pub struct AccessLimits {
    /// Largest request message, in bytes.
    pub max_message_bytes: usize,
    /// Largest request metadata (all headers together), in bytes.
    pub max_metadata_bytes: usize,
    /// Calls in flight on one connection (each is an HTTP/2 stream).
    pub max_streams_per_connection: usize,
    /// Heartbeat and Watch streams open on this replica.
    pub max_open_streams: usize,
    /// Watch streams open on one connection.
    pub max_watches_per_connection: usize,
    /// Requests (unary calls and stream opens) per second per caller; 0 turns it off.
    pub requests_per_second: u32,
}

impl Default for AccessLimits {
    fn default() -> Self {
        AccessLimits {
            max_message_bytes: 1 << 20,
            max_metadata_bytes: 8 << 10,
            max_streams_per_connection: 1024,
            max_open_streams: 200_000,
            max_watches_per_connection: 32,
            requests_per_second: 0,
        }
    }
}

/// A token bucket per caller: `rate` tokens a second, holding at most one second's worth.
pub struct RateLimiter {
    rate: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Buckets kept before full (idle) ones are dropped; bounds memory when callers are many.
const MAX_BUCKETS: usize = 100_000;

impl RateLimiter {
    pub fn new(per_second: u32) -> RateLimiter {
        RateLimiter {
            rate: per_second as f64,
            buckets: Mutex::default(),
        }
    }

    /// Takes one request from `caller`'s bucket; false when it is empty.
    pub fn admit(&self, caller: &str) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut buckets = agent_registry_core::common::lock(&self.buckets);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(caller) {
            let rate = self.rate;
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < rate
            });
        }
        let (tokens, at) = buckets
            .entry(caller.to_string())
            .or_insert((self.rate, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.rate);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Calls in flight per connection and streams open on the replica.
#[derive(Default)]
pub struct Counts {
    inner: Mutex<CountsInner>,
}

#[derive(Default)]
struct CountsInner {
    per_connection: HashMap<SocketAddr, usize>,
    watches_per_connection: HashMap<SocketAddr, usize>,
    open_streams: usize,
}

/// What kind of call takes a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Unary,
    Heartbeat,
    Watch,
}

/// Which limit a new call would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breach {
    StreamsPerConnection(usize),
    OpenStreams(usize),
    WatchesPerConnection(usize),
}

impl Counts {
    /// Reserves a slot for a call of `kind` on `connection`; the slot is given back when the
    /// returned guard is dropped, i.e. when the call ends.
    pub fn enter(
        self: &Arc<Self>,
        limits: &AccessLimits,
        connection: Option<SocketAddr>,
        kind: CallKind,
    ) -> Result<Slot, Breach> {
        let stream = kind != CallKind::Unary;
        let watch = kind == CallKind::Watch;
        let mut c = agent_registry_core::common::lock(&self.inner);
        if let Some(addr) = connection
            && c.per_connection.get(&addr).copied().unwrap_or(0)
                >= limits.max_streams_per_connection
        {
            return Err(Breach::StreamsPerConnection(
                limits.max_streams_per_connection,
            ));
        }
        if stream && c.open_streams >= limits.max_open_streams {
            return Err(Breach::OpenStreams(limits.max_open_streams));
        }
        if watch
            && let Some(addr) = connection
            && c.watches_per_connection.get(&addr).copied().unwrap_or(0)
                >= limits.max_watches_per_connection
        {
            return Err(Breach::WatchesPerConnection(
                limits.max_watches_per_connection,
            ));
        }
        if let Some(addr) = connection {
            *c.per_connection.entry(addr).or_default() += 1;
            if watch {
                *c.watches_per_connection.entry(addr).or_default() += 1;
            }
        }
        c.open_streams += stream as usize;
        Ok(Slot {
            counts: self.clone(),
            connection,
            kind,
        })
    }

    pub fn open_streams(&self) -> usize {
        agent_registry_core::common::lock(&self.inner).open_streams
    }
}

/// One call's place in the counts.
pub struct Slot {
    counts: Arc<Counts>,
    connection: Option<SocketAddr>,
    kind: CallKind,
}

/// Gives one count back, forgetting connections that hold none.
fn give_back(map: &mut HashMap<SocketAddr, usize>, addr: SocketAddr) {
    if let Some(n) = map.get_mut(&addr) {
        *n -= 1;
        if *n == 0 {
            map.remove(&addr);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = agent_registry_core::common::lock(&self.counts.inner);
        if let Some(addr) = self.connection {
            give_back(&mut c.per_connection, addr);
            if self.kind == CallKind::Watch {
                give_back(&mut c.watches_per_connection, addr);
            }
        }
        c.open_streams -= (self.kind != CallKind::Unary) as usize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_refills_at_its_rate_and_callers_are_apart() {
        let limiter = RateLimiter::new(5);
        for _ in 0..5 {
            assert!(limiter.admit("a"));
        }
        assert!(!limiter.admit("a"), "the sixth request within a second");
        assert!(limiter.admit("b"), "another caller has its own bucket");
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(limiter.admit("a"), "one token back after 1/5 s");
        assert!(!limiter.admit("a"));
        tokio::time::advance(Duration::from_secs(60)).await;
        let burst = (0..100).filter(|_| limiter.admit("a")).count();
        assert_eq!(burst, 5, "an idle caller saves at most one second's worth");
    }

    #[test]
    fn slots_are_counted_until_dropped() {
        let limits = AccessLimits {
            max_streams_per_connection: 2,
            max_open_streams: 3,
            ..AccessLimits::default()
        };
        let counts = Arc::new(Counts::default());
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        let (unary, beat) = (CallKind::Unary, CallKind::Heartbeat);
        let s1 = counts.enter(&limits, Some(a), beat).unwrap();
        let _s2 = counts.enter(&limits, Some(a), beat).unwrap();
        assert_eq!(
            counts.enter(&limits, Some(a), unary).err(),
            Some(Breach::StreamsPerConnection(2))
        );
        let _s3 = counts.enter(&limits, Some(b), beat).unwrap();
        assert_eq!(
            counts.enter(&limits, Some(b), beat).err(),
            Some(Breach::OpenStreams(3))
        );
        // Unary calls do not count against open streams.
        let _u = counts.enter(&limits, Some(b), unary).unwrap();
        drop(s1);
        assert_eq!(counts.open_streams(), 2);
        assert!(counts.enter(&limits, Some(a), beat).is_ok());
    }

    #[test]
    fn watches_are_counted_per_connection() {
        let limits = AccessLimits {
            max_watches_per_connection: 2,
            ..AccessLimits::default()
        };
        let counts = Arc::new(Counts::default());
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        let w1 = counts.enter(&limits, Some(a), CallKind::Watch).unwrap();
        let _w2 = counts.enter(&limits, Some(a), CallKind::Watch).unwrap();
        assert_eq!(
            counts.enter(&limits, Some(a), CallKind::Watch).err(),
            Some(Breach::WatchesPerConnection(2))
        );
        assert!(counts.enter(&limits, Some(a), CallKind::Heartbeat).is_ok());
        assert!(counts.enter(&limits, Some(b), CallKind::Watch).is_ok());
        drop(w1);
        assert!(counts.enter(&limits, Some(a), CallKind::Watch).is_ok());
    }
}
