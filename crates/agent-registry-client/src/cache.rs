//! A local cache of the instances matching a filter, kept current by Watch: a snapshot first,
//! then every change; after a disconnect it resumes from the last revision it saw, and re-lists
//! when the server says that revision is compacted. Readers see whole snapshots only.

use std::collections::BTreeMap;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::Client;
use super::backoff::Backoff;
use crate::proto::{self, watch_event::Type};

/// What the cache holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheView {
    /// Matching instances that are not dead, by instance id.
    pub instances: BTreeMap<String, proto::Instance>,
    /// Every change up to this revision is reflected.
    pub revision: i64,
    /// False until the first snapshot is complete.
    pub synced: bool,
}

pub struct WatchCache {
    view: watch::Receiver<CacheView>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl WatchCache {
    /// Starts caching what `filter` (a WatchRequest; its `start_revision` is ignored) matches.
    pub fn spawn(client: Client, filter: proto::WatchRequest, backoff: Backoff) -> WatchCache {
        let (tx, view) = watch::channel(CacheView::default());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(client, filter, backoff, tx, stopped));
        WatchCache {
            view,
            stop: Some(stop),
            task,
        }
    }

    /// The cache as it changes.
    pub fn view(&self) -> watch::Receiver<CacheView> {
        self.view.clone()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

async fn run(
    client: Client,
    filter: proto::WatchRequest,
    mut backoff: Backoff,
    view: watch::Sender<CacheView>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let (revision, synced) = {
            let v = view.borrow();
            (v.revision, v.synced)
        };
        // Resume after the last revision seen, or list afresh.
        let start = if synced { revision } else { 0 };
        let mut req = filter.clone();
        req.start_revision = start;
        let mut discovery = client.discovery.clone();
        let opened = tokio::select! {
            r = discovery.watch(req) => r,
            _ = &mut stopped => return,
        };
        let ended = match opened {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                // A fresh listing builds aside and replaces the view at its bookmark.
                let mut listing = (start == 0).then(BTreeMap::new);
                loop {
                    let message = tokio::select! {
                        m = stream.message() => m,
                        _ = &mut stopped => return,
                    };
                    match message {
                        Ok(Some(m)) => {
                            backoff.reset();
                            apply(&view, &mut listing, m);
                        }
                        Ok(None) => break None,
                        Err(e) => break Some(e),
                    }
                }
            }
            Err(e) => Some(e),
        };
        if let Some(e) = ended
            && e.code() == tonic::Code::OutOfRange
        {
            // Compacted (or the server rebuilt): list again.
            view.send_modify(|v| v.synced = false);
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_wait()) => {}
            _ = &mut stopped => return,
        }
    }
}

fn apply(
    view: &watch::Sender<CacheView>,
    listing: &mut Option<BTreeMap<String, proto::Instance>>,
    m: proto::WatchResponse,
) {
    if let Some(fresh) = listing {
        // A snapshot is PUT messages, then one message without events: its bookmark.
        if !m.events.is_empty() {
            for e in m.events {
                if let Some(i) = e.instance {
                    fresh.insert(i.instance_id.clone(), i);
                }
            }
        } else {
            // The snapshot is complete: swap it in whole.
            let instances = listing.take().unwrap_or_default();
            view.send_modify(|v| {
                v.instances = instances;
                v.revision = m.bookmark_revision;
                v.synced = true;
            });
        }
        return;
    }
    view.send_modify(|v| {
        for e in m.events {
            v.revision = v.revision.max(e.revision);
            let Some(i) = e.instance else { continue };
            if e.r#type == Type::Delete as i32 {
                v.instances.remove(&i.instance_id);
            } else {
                v.instances.insert(i.instance_id.clone(), i);
            }
        }
        v.revision = v.revision.max(m.bookmark_revision);
    });
}
