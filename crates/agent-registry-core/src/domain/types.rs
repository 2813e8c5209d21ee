//! The registry's nouns: instances, their status and death reason, namespaces.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::card::{Card, CardKind};

/// The namespace used when a request leaves it empty.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Wall-clock now, truncated to microseconds so it round-trips exactly through both stores.
///
/// It is the wall time at first use plus tokio's monotonic time since then: leases, sweeps
/// and stored times share one clock, a wall-clock step cannot expire a fleet, and under
/// tokio's paused clock (tests) wall time advances with virtual time.
pub fn now() -> DateTime<Utc> {
    from_micros(now_micros())
}

/// [`now`] as microseconds since the Unix epoch: the heartbeat path adds to it in integers
/// and builds one date at the end, instead of one per addition.
pub fn now_micros() -> i64 {
    // Anchored on the real monotonic clock: a paused test runtime's virtual instants start at
    // the real instant it was created, so every runtime in a process maps onto one wall line.
    static ANCHOR: std::sync::OnceLock<(i64, std::time::Instant)> = std::sync::OnceLock::new();
    let (wall, mono) =
        *ANCHOR.get_or_init(|| (Utc::now().timestamp_micros(), std::time::Instant::now()));
    let elapsed = tokio::time::Instant::now()
        .into_std()
        .saturating_duration_since(mono);
    wall.saturating_add(i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX))
}

/// The instant `micros` after the Unix epoch (clamped to chrono's range, which a clock
/// anchored on the real time and a lease of at most hours never leaves).
pub fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `STARTING → ALIVE → DRAINING → DEAD`; `DRAINING → ALIVE` is an undrain; `DEAD` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InstanceStatus {
    Starting,
    Alive,
    Draining,
    Dead,
}

impl InstanceStatus {
    pub const ALL: [InstanceStatus; 4] = [Self::Starting, Self::Alive, Self::Draining, Self::Dead];

    /// The spelling stored in the database (`status` column).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "STARTING",
            Self::Alive => "ALIVE",
            Self::Draining => "DRAINING",
            Self::Dead => "DEAD",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Why an instance is `DEAD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeathReason {
    Deregistered,
    LeaseExpired,
    EpochSuperseded,
    Evicted,
}

impl DeathReason {
    const ALL: [DeathReason; 4] = [
        Self::Deregistered,
        Self::LeaseExpired,
        Self::EpochSuperseded,
        Self::Evicted,
    ];

    /// The spelling stored in the database (`death_reason` column).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deregistered => "DEREGISTERED",
            Self::LeaseExpired => "LEASE_EXPIRED",
            Self::EpochSuperseded => "EPOCH_SUPERSEDED",
            Self::Evicted => "EVICTED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One incarnation of a logical id, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub instance_id: Uuid,
    pub namespace: String,
    pub logical_id: String,
    pub epoch: Uuid,
    pub status: InstanceStatus,
    pub agent_type: String,
    pub version: String,
    pub endpoint: String,
    pub capabilities: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub actor_name: String,
    /// The token name that registered it (empty when the server runs without tokens): only
    /// that caller's `agent` token may heartbeat, drain or deregister it.
    pub registered_by: String,
    pub node_id: String,
    pub ip_address: String,
    pub pid: i64,
    pub lease_ttl: Duration,
    pub started_at: DateTime<Utc>,
    pub last_heartbeat: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub death_reason: Option<DeathReason>,
    /// The digest of the card this instance serves (`sha256:…`), or empty: stored for its
    /// namespace and logical id (SPEC §15).
    pub card_digest: String,
    pub revision: i64,
}

#[cfg(any(test, feature = "test-support"))]
impl Instance {
    /// The one fixture unit tests build on: an ALIVE instance of `logical_id` in `default`,
    /// beating now, with a 15 s lease; change what a test needs with `..Instance::sample(…)`.
    pub fn sample(logical_id: &str) -> Instance {
        Instance {
            instance_id: Uuid::now_v7(),
            namespace: "default".into(),
            logical_id: logical_id.into(),
            epoch: Uuid::nil(),
            status: InstanceStatus::Alive,
            agent_type: String::new(),
            version: String::new(),
            endpoint: String::new(),
            capabilities: vec![],
            labels: Default::default(),
            actor_name: String::new(),
            registered_by: String::new(),
            node_id: String::new(),
            ip_address: String::new(),
            pid: 0,
            lease_ttl: Duration::from_secs(15),
            started_at: now(),
            last_heartbeat: now(),
            stopped_at: None,
            death_reason: None,
            card_digest: String::new(),
            revision: 1,
        }
    }
}

impl Instance {
    /// When the lease runs out unless renewed.
    pub fn lease_expires_at(&self) -> DateTime<Utc> {
        self.last_heartbeat + self.lease_ttl
    }

    /// Live: `ALIVE`, in the namespace's current epoch, lease not run out (SPEC §1).
    pub fn is_live(&self, current_epoch: Uuid, now: DateTime<Utc>) -> bool {
        self.status == InstanceStatus::Alive
            && self.epoch == current_epoch
            && self.lease_expires_at() > now
    }

    /// The order that picks the active instance: longest-serving first, ties by id.
    pub fn seniority(&self) -> (DateTime<Utc>, Uuid) {
        (self.started_at, self.instance_id)
    }

    /// About how many bytes the instance takes on the wire (its text fields plus a fixed part
    /// for ids, times and numbers), to bound messages in bytes rather than in instances.
    pub fn approx_size(&self) -> usize {
        let text = self.namespace.len()
            + self.logical_id.len()
            + self.agent_type.len()
            + self.version.len()
            + self.endpoint.len()
            + self.actor_name.len()
            + self.registered_by.len()
            + self.node_id.len()
            + self.ip_address.len()
            + self.card_digest.len();
        let caps: usize = self.capabilities.iter().map(|c| c.len() + 2).sum();
        let labels: usize = self.labels.iter().map(|(k, v)| k.len() + v.len() + 6).sum();
        160 + text + caps + labels
    }
}

/// A validated registration, ready to be admitted by the store.
#[derive(Debug, Clone)]
pub struct NewInstance {
    /// Client-chosen id for idempotent retry, or a fresh UUIDv7.
    pub instance_id: Uuid,
    /// Whether `instance_id` came from the client (a retry may find it stored).
    pub client_chose_id: bool,
    pub expected_epoch: Option<Uuid>,
    pub ready: bool,
    /// Whether a retry may renew an instance another caller registered (open server, admin).
    pub any_owner: bool,
    /// Every stored field except epoch, status, times and revision (`card_digest` set when a
    /// card came with it or was named).
    pub template: Instance,
    /// The card sent with the registration, stored with it if this agent has no such card yet.
    pub card: Option<Card>,
}

/// One version of an agent's card as stored: by namespace, logical id and digest.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCard {
    pub namespace: String,
    pub logical_id: String,
    pub digest: String,
    pub kind: CardKind,
    /// The card; `None` once collected (no retained instance served it and a newer version
    /// was published): the row is then a tombstone, deleted with the log it belongs to.
    pub card: Option<Card>,
    /// When it was last published (stored, or published again).
    pub published_at: DateTime<Utc>,
    /// The revision of its last publication (or of its collection).
    pub revision: i64,
}

/// A namespace row: its current epoch and when things happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Namespace {
    pub name: String,
    pub current_epoch: Uuid,
    pub epoch_started_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub revision: i64,
}

/// A namespace with the counts that Admin reports.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceSummary {
    pub namespace: Namespace,
    pub starting: i64,
    pub alive: i64,
    pub draining: i64,
    pub dead: i64,
    pub live: i64,
}

/// The rows one committed transaction changed, covering revisions `first..=last`.
///
/// A change set read back from the store (`Store::changes_since`) covers a range too, but
/// may hold fewer rows than revisions: a row changed twice shows only its latest revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeSet {
    pub first: i64,
    pub last: i64,
    /// The compaction horizon the store reported with it (0 when not read from the store):
    /// dead instances at or below it are gone from the store.
    pub horizon: i64,
    pub namespaces: Vec<Namespace>,
    pub instances: Vec<Instance>,
    /// Card versions published or collected, each at its own revision.
    pub cards: Vec<StoredCard>,
}

impl ChangeSet {
    /// An empty set just after `revision`.
    pub fn after(revision: i64) -> Self {
        Self {
            first: revision + 1,
            last: revision,
            ..Self::default()
        }
    }

    /// True when it consumed no revision (an idempotent repeat).
    pub fn is_empty(&self) -> bool {
        self.last < self.first
    }
}
