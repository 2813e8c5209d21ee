//! The Watch use case ([`Registry::watch`]): a watcher run in a task of its own, and its way out,
//! bounded in bytes and in time even when the client never reads.
//!
//! The watcher runs in a task of its own and hands each message over a one-message channel. A
//! message the client has not taken within the stall timeout ends the watcher there: the task
//! stops, and what it held (a queued snapshot, its place in the live feed) is released at once,
//! although the stream itself is not polled while the client's flow-control window is shut.
//! The client, when it reads again, gets the messages already handed over and then
//! RESOURCE_EXHAUSTED naming the revision to resume from. What a stuck watcher keeps meanwhile
//! is the message in the channel and the one HTTP/2 holds: two bounded messages.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::mpsc;

use super::watch::{Output, Watcher};
use super::{Registry, RegistryError};
use crate::domain::InstanceFilter;
use crate::metrics::Metrics;

/// The receiving end: the messages, then (if the watcher ended) why.
pub struct Outbox {
    messages: mpsc::Receiver<Result<Output, RegistryError>>,
    /// Why the watcher ended without a message saying so (it stalled).
    ending: Arc<Mutex<Option<RegistryError>>>,
    done: bool,
    /// Counts the events handed to the front end.
    metrics: Arc<Metrics>,
}

impl Registry {
    /// A Watch of `filter` from `start_revision` (0: the current set first), running in a task
    /// of its own behind a bounded [`Outbox`].
    pub async fn watch(
        &self,
        filter: InstanceFilter,
        start_revision: i64,
    ) -> Result<Outbox, RegistryError> {
        let watcher = Watcher::start(self, filter, start_revision).await?;
        Ok(spawn(
            watcher,
            self.settings.watch.stall_timeout,
            self.metrics.clone(),
        ))
    }
}

/// Runs `watcher` in its own task; a message not taken within `stall` ends it.
fn spawn(mut watcher: Watcher, stall: Duration, metrics: Arc<Metrics>) -> Outbox {
    let (tx, messages) = mpsc::channel(1);
    let ending: Arc<Mutex<Option<RegistryError>>> = Arc::default();
    let stalled = ending.clone();
    tokio::spawn(async move {
        // Where the client may resume once it has what was handed over (`None`: inside the
        // snapshot, only a re-list is safe).
        let mut handed = watcher.resume_point();
        loop {
            let next = tokio::select! {
                next = watcher.next() => next,
                // The client went away: nothing left to send to.
                _ = tx.closed() => return,
            };
            let resume = watcher.resume_point();
            let last = next.is_err();
            let pending = match tokio::time::timeout(stall, tx.reserve()).await {
                Ok(Ok(permit)) => {
                    permit.send(next);
                    handed = resume;
                    if last {
                        return;
                    }
                    continue;
                }
                Ok(Err(_)) => return,
                Err(_) => next,
            };
            // Stalled. An error the watcher meant to send stays the reason.
            let why = match pending {
                Err(e) => e,
                Ok(_) => RegistryError::ResourceExhausted(match handed {
                    Some(r) => format!(
                        "the watcher read nothing for {stall:?} (--watch-stall-timeout); \
                         resume from revision {r}"
                    ),
                    None => format!(
                        "the watcher read nothing for {stall:?} (--watch-stall-timeout) during \
                         its snapshot; re-list (start_revision 0)"
                    ),
                }),
            };
            *crate::common::lock(&stalled) = Some(why);
            return;
        }
    });
    Outbox {
        messages,
        ending,
        done: false,
        metrics,
    }
}

impl Stream for Outbox {
    type Item = Result<Output, RegistryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.messages.poll_recv(cx) {
            Poll::Ready(Some(item)) => {
                self.done = item.is_err();
                if let Ok(Output::Events(events)) = &item {
                    self.metrics.watch_events.inc_by(events.len() as u64);
                }
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                self.done = true;
                // No reason left behind: the watcher's task ended abnormally.
                let why = crate::common::lock(&self.ending).take();
                Poll::Ready(Some(Err(why.unwrap_or_else(|| {
                    RegistryError::Unavailable("the watch ended unexpectedly; resume".into())
                }))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
