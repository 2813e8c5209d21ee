//! Group commit for Register: concurrent registrations are written in one transaction.
//!
//! Registrations queue to one task per replica. Each round takes everything queued (up to
//! `MAX_BATCH`), commits it as one transaction — one fsync for all — applies the changes to
//! the index and answers each caller. An idle registry answers a lone registration at once;
//! under load, batches grow by themselves. Writes are serialized by the revision lock anyway,
//! so the queue costs no parallelism.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::domain::{ChangeSet, NewInstance, RuleError};
use crate::index::Index;
use crate::liveness::Liveness;
use crate::storage::{Registered, Store, StoreError};

/// Most registrations one transaction carries.
const MAX_BATCH: usize = 512;

/// One caller's answer: its outcome and the batch's last revision (for read-your-writes).
pub type Reply = Result<(Result<Registered, RuleError>, i64), StoreError>;

pub struct Request {
    pub new: NewInstance,
    pub reply: oneshot::Sender<Reply>,
}

/// Runs until every sender is dropped (the registry is gone).
pub async fn run(
    store: Arc<dyn Store>,
    index: Arc<Index>,
    liveness: Arc<Liveness>,
    mut queue: mpsc::Receiver<Request>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (news, replies): (Vec<_>, Vec<_>) = batch.drain(..).map(|r| (r.new, r.reply)).unzip();
        match store.register_batch(news).await {
            Ok(done) => {
                let last = done.changes.last;
                apply(&index, &liveness, done.changes);
                for (reply, result) in replies.into_iter().zip(done.results) {
                    let _ = reply.send(Ok((result, last)));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Applies committed changes to the index, with liveness following each row in order.
pub fn apply(index: &Index, liveness: &Liveness, changes: ChangeSet) {
    if !changes.is_empty() {
        index.apply_observed(changes, &mut |row| liveness.observe(row));
    }
}
