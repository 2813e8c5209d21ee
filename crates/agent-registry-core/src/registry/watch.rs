//! One Watch stream, independent of gRPC: a snapshot (or a replay from a revision), then live
//! changes for one filter, with periodic bookmarks, cut off when it falls too far behind.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::broadcast::{Receiver, error::RecvError, error::TryRecvError};
use tokio::time::{Interval, MissedTickBehavior};

use super::{Registry, RegistryError};
use crate::domain::{Instance, InstanceFilter, ValidationError};
use crate::events::{Hub, Item};
use crate::storage::Store;

/// Tuning of watchers.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Changes kept in memory for watchers that resume (older ones are read from the store).
    pub history: usize,
    /// How far (in changes) a live watcher may fall behind before it is cut off.
    pub buffer: usize,
    /// How often a watcher gets a progress-only message.
    pub bookmark_interval: std::time::Duration,
    /// How long a watcher's next message may wait for the client before it is cut off.
    pub stall_timeout: std::time::Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            history: 16 * 1024,
            buffer: 4 * 1024,
            bookmark_interval: std::time::Duration::from_secs(10),
            stall_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// Most events one message carries…
const MAX_EVENTS: usize = 256;

/// …and about the most bytes: what one stuck watcher can hold in the server's buffers is a few
/// messages, so this bounds its memory whatever the instances weigh.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A queued message and the revision a client may resume from once it has it (`None` inside
/// a snapshot: until its bookmark, only a re-list is safe).
type Queued = (Output, Option<i64>);

/// Splits rows (in revision order) into messages of at most [`MAX_EVENTS`] events and about
/// [`MAX_MESSAGE_BYTES`]. `through` is where the whole set leaves a client: each message but
/// the last resumes after its own last row, the last at `through`.
fn messages(rows: Vec<Arc<Instance>>, through: Option<i64>, out: &mut VecDeque<Queued>) {
    let mut current: Vec<Arc<Instance>> = Vec::new();
    let mut bytes = 0;
    for row in rows {
        let size = row.approx_size();
        if !current.is_empty() && (current.len() == MAX_EVENTS || bytes + size > MAX_MESSAGE_BYTES)
        {
            let resume = through.and(current.last().map(|r| r.revision));
            out.push_back((Output::Events(std::mem::take(&mut current)), resume));
            bytes = 0;
        }
        bytes += size;
        current.push(row);
    }
    if !current.is_empty() {
        out.push_back((Output::Events(current), through));
    }
}

/// Change-log rows one replay step reads.
const REPLAY_PAGE: i64 = 1024;

/// What a watcher sends next.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Changes in revision order; a DEAD instance is a DELETE, any other a PUT.
    Events(Vec<Arc<Instance>>),
    /// Every change up to this revision has been sent.
    Bookmark(i64),
}

pub struct Watcher {
    filter: InstanceFilter,
    /// Every change at or below this revision has been sent or filtered out.
    position: i64,
    queued: VecDeque<Queued>,
    /// Where a client may resume once it has every message returned so far.
    resume_point: Option<i64>,
    /// Live changes; `None` while replaying from the store's change log.
    live: Option<Receiver<Item>>,
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    buffer: usize,
    bookmarks: Interval,
    /// Why the stream ends, held back until the events gathered before it are sent.
    ending: Option<RegistryError>,
    /// The namespace's cards changed: a bookmark goes out next.
    bookmark_due: bool,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Watcher {
    /// Starts at `start_revision`: 0 for the current matching set and a bookmark, R for every
    /// change after R. Fails with `OutOfRange` when R is compacted or not yet reached.
    pub async fn start(
        registry: &Registry,
        filter: InstanceFilter,
        start_revision: i64,
    ) -> Result<Watcher, RegistryError> {
        if start_revision < 0 {
            return Err(ValidationError {
                field: "start_revision".into(),
                message: "must not be negative".into(),
            }
            .into());
        }
        let applier = &registry.applier;
        let config = &registry.settings.watch;
        let mut queued = VecDeque::new();
        let (position, live) = if start_revision == 0 {
            let (rows, revision, live) = applier
                .index
                .snapshot(&filter, || applier.hub.subscribe_live());
            messages(rows, None, &mut queued);
            queued.push_back((Output::Bookmark(revision), Some(revision)));
            (revision, Some(live))
        } else {
            if start_revision > applier.index.revision() {
                // Another replica may have handed out this revision: look before refusing.
                let _ = applier.catch_up().await;
            }
            let applied = applier.index.revision();
            let horizon = applier.index.horizon();
            if start_revision < horizon {
                return Err(RegistryError::OutOfRange(format!(
                    "start_revision {start_revision} is compacted: changes at or below {horizon} \
                     are no longer kept; re-list (start_revision 0) and watch from its revision"
                )));
            }
            if start_revision > applied {
                return Err(RegistryError::OutOfRange(format!(
                    "start_revision {start_revision} is ahead of the registry (revision {applied})"
                )));
            }
            (start_revision, None)
        };
        let every = config.bookmark_interval;
        let mut bookmarks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        bookmarks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut watcher = Watcher {
            filter,
            position,
            queued,
            resume_point: (start_revision > 0).then_some(position),
            live,
            hub: applier.hub.clone(),
            store: applier.store.clone(),
            buffer: config.buffer,
            bookmarks,
            ending: None,
            bookmark_due: false,
            shutdown: Box::pin(registry.liveness.shutting_down()),
        };
        if watcher.live.is_none() {
            // The first step of a replay now, so a compacted revision fails the call itself.
            watcher.replay().await?;
        }
        Ok(watcher)
    }

    /// One step of a replay from `position`: the hub's history if it reaches back that far —
    /// then live changes follow — else one page of the store's change log. Only one page is
    /// held at a time, however far back the watcher starts.
    async fn replay(&mut self) -> Result<(), RegistryError> {
        let sub = self.hub.subscribe(self.position);
        if let Some(rows) = sub.backlog {
            self.queue(rows);
            self.live = Some(sub.live);
            return Ok(());
        }
        let page = self.store.changes_page(self.position, REPLAY_PAGE).await?;
        let through = page.last;
        self.queue(page.instances.into_iter().map(Arc::new).collect());
        self.position = self.position.max(through);
        Ok(())
    }

    /// Queues the rows above `position` that match, and moves `position` past them.
    fn queue(&mut self, rows: Vec<Arc<Instance>>) {
        let mut matching = Vec::new();
        for row in rows {
            if row.revision > self.position {
                self.position = row.revision;
                if matches(&self.filter, &row) {
                    matching.push(row);
                }
            }
        }
        let through = Some(self.position);
        messages(matching, through, &mut self.queued);
    }

    /// The next message, or why the stream ends.
    pub async fn next(&mut self) -> Result<Output, RegistryError> {
        loop {
            if let Some((out, resume)) = self.queued.pop_front() {
                self.resume_point = resume;
                return Ok(out);
            }
            if let Some(e) = self.ending.take() {
                return Err(e);
            }
            if self.live.is_some() {
                break;
            }
            if futures_util::FutureExt::now_or_never(&mut self.shutdown).is_some() {
                return Err(RegistryError::Unavailable(
                    "the server is shutting down; resume on another replica".into(),
                ));
            }
            self.replay().await?;
        }
        loop {
            if std::mem::take(&mut self.bookmark_due) {
                self.resume_point = Some(self.position);
                return Ok(Output::Bookmark(self.position));
            }
            let live = self.live.as_mut().expect("live after the replay");
            let item = tokio::select! {
                biased;
                _ = &mut self.shutdown => {
                    return Err(RegistryError::Unavailable(
                        "the server is shutting down; resume on another replica".into(),
                    ));
                }
                item = live.recv() => item,
                _ = self.bookmarks.tick() => {
                    self.resume_point = Some(self.position);
                    return Ok(Output::Bookmark(self.position));
                }
            };
            let mut events = Vec::new();
            self.take(item, &mut events)?;
            // Whatever else is already waiting goes in the same message, up to its bounds.
            let (mut bytes, mut counted) = (0, 0);
            loop {
                bytes += events[counted..]
                    .iter()
                    .map(|e| e.approx_size())
                    .sum::<usize>();
                counted = events.len();
                if events.len() >= MAX_EVENTS || bytes >= MAX_MESSAGE_BYTES {
                    break;
                }
                let live = self.live.as_mut().expect("live after the replay");
                let item = match live.try_recv() {
                    Ok(item) => Ok(item),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                    Err(TryRecvError::Closed) => Err(RecvError::Closed),
                };
                if let Err(e) = self.take(item, &mut events) {
                    if events.is_empty() {
                        return Err(e);
                    }
                    self.ending = Some(e);
                    break;
                }
            }
            if !events.is_empty() {
                self.resume_point = Some(self.position);
                return Ok(Output::Events(events));
            }
        }
    }

    fn take(
        &mut self,
        item: Result<Item, RecvError>,
        events: &mut Vec<Arc<Instance>>,
    ) -> Result<(), RegistryError> {
        match item {
            Ok(Item::Change(row)) => {
                if row.revision > self.position {
                    self.position = row.revision;
                    if matches(&self.filter, &row) {
                        events.push(row);
                    }
                }
                Ok(())
            }
            Ok(Item::Through(revision)) => {
                self.position = self.position.max(revision);
                Ok(())
            }
            Ok(Item::Catalog {
                namespace,
                revision,
            }) => {
                // A card changes no instance: a bookmark at once tells the watcher the
                // namespace moved (a console re-reads its agents).
                self.position = self.position.max(revision);
                if *namespace == *self.filter.namespace {
                    self.bookmark_due = true;
                }
                Ok(())
            }
            Ok(Item::Reset) => Err(RegistryError::OutOfRange(
                "this replica rebuilt its index from a snapshot; re-list".into(),
            )),
            Err(RecvError::Lagged(_)) => Err(RegistryError::ResourceExhausted(format!(
                "watcher fell more than {} changes behind; resume from revision {}",
                self.buffer, self.position
            ))),
            Err(RecvError::Closed) => Err(RegistryError::Unavailable(
                "the change feed closed; resume on another replica".into(),
            )),
        }
    }

    /// Every change at or below this revision has been sent (or did not match).
    pub fn resume_point(&self) -> Option<i64> {
        self.resume_point
    }

    /// Every change at or below this revision has been handed out or filtered out: where a
    /// watcher cut off resumes.
    pub fn position(&self) -> i64 {
        self.position
    }
}

fn matches(filter: &InstanceFilter, row: &Instance) -> bool {
    row.namespace == filter.namespace && filter.matches(row)
}
