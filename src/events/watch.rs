//! One Watch stream, independent of gRPC: a snapshot (or a replay from a revision), then live
//! changes for one filter, with periodic bookmarks, cut off when it falls too far behind.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::broadcast::{Receiver, error::RecvError, error::TryRecvError};
use tokio::time::{Interval, MissedTickBehavior};

use super::Item;
use crate::domain::{Instance, InstanceFilter, ValidationError};
use crate::registry::{Registry, RegistryError};

/// Most events one message carries.
const MAX_EVENTS: usize = 256;

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
    queued: VecDeque<Output>,
    live: Receiver<Item>,
    buffer: usize,
    bookmarks: Interval,
    /// Why the stream ends, held back until the events gathered before it are sent.
    ending: Option<RegistryError>,
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
        let followers = registry.followers();
        let config = registry.watch_config();
        let mut queued = VecDeque::new();
        let (position, live) = if start_revision == 0 {
            let (rows, revision, live) = followers
                .index
                .snapshot(&filter, || followers.hub.subscribe_live());
            for chunk in rows.chunks(MAX_EVENTS) {
                queued.push_back(Output::Events(chunk.to_vec()));
            }
            queued.push_back(Output::Bookmark(revision));
            (revision, live)
        } else {
            if start_revision > followers.index.revision() {
                // Another replica may have handed out this revision: look before refusing.
                let _ = followers.catch_up().await;
            }
            let applied = followers.index.revision();
            let horizon = followers.index.horizon();
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
            let sub = followers.hub.subscribe(start_revision);
            let (rows, through) = match sub.backlog {
                Some(rows) => (rows, start_revision),
                None => {
                    let changes = followers.store.changes_since(start_revision).await?;
                    let rows = changes.instances.into_iter().map(Arc::new).collect();
                    (rows, changes.last)
                }
            };
            let mut position = start_revision;
            let matching: Vec<_> = rows
                .into_iter()
                .filter(|r| {
                    position = position.max(r.revision);
                    matches(&filter, r)
                })
                .collect();
            for chunk in matching.chunks(MAX_EVENTS) {
                queued.push_back(Output::Events(chunk.to_vec()));
            }
            (position.max(through), sub.live)
        };
        let every = config.bookmark_interval;
        let mut bookmarks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        bookmarks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(Watcher {
            filter,
            position,
            queued,
            live,
            buffer: config.buffer,
            bookmarks,
            ending: None,
            shutdown: Box::pin(registry.liveness().shutting_down()),
        })
    }

    /// The next message, or why the stream ends.
    pub async fn next(&mut self) -> Result<Output, RegistryError> {
        if let Some(out) = self.queued.pop_front() {
            return Ok(out);
        }
        if let Some(e) = self.ending.take() {
            return Err(e);
        }
        loop {
            let item = tokio::select! {
                biased;
                _ = &mut self.shutdown => {
                    return Err(RegistryError::Unavailable(
                        "the server is shutting down; resume on another replica".into(),
                    ));
                }
                item = self.live.recv() => item,
                _ = self.bookmarks.tick() => return Ok(Output::Bookmark(self.position)),
            };
            let mut events = Vec::new();
            self.take(item, &mut events)?;
            // Whatever else is already waiting goes in the same message.
            while events.len() < MAX_EVENTS {
                let item = match self.live.try_recv() {
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
    pub fn position(&self) -> i64 {
        self.position
    }
}

fn matches(filter: &InstanceFilter, row: &Instance) -> bool {
    row.namespace == filter.namespace && filter.matches(row)
}
