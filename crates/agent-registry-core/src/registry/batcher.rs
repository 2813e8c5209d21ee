//! Group commit for Register: concurrent registrations are written in one transaction.
//!
//! Registrations queue to one task per replica. Each round takes everything queued (up to
//! `MAX_BATCH`), commits it as one transaction — one fsync for all — applies the changes to
//! the index and answers each caller. An idle registry answers a lone registration at once;
//! under load, batches grow by themselves. Writes are serialized by the revision lock anyway,
//! so the queue costs no parallelism.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::Applier;
use crate::domain::{NewInstance, RuleError};
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
pub async fn run(store: Arc<dyn Store>, applier: Arc<Applier>, mut queue: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (news, replies): (Vec<_>, Vec<_>) = batch.drain(..).map(|r| (r.new, r.reply)).unzip();
        // Each round in a task of its own: a panic in it fails that round's callers, not
        // every later registration on this replica.
        let round = tokio::spawn(commit(store.clone(), applier.clone(), news));
        let outcome = round.await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "registration round panicked");
            Err(StoreError::Internal(format!(
                "registration round failed: {e}"
            )))
        });
        match outcome {
            Ok((results, last)) => {
                for (reply, result) in replies.into_iter().zip(results) {
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

/// Commits one batch and applies it; when its revisions land behind a gap (another write in
/// flight), waits briefly, then reads the gap back from the store — once for the whole batch.
async fn commit(
    store: Arc<dyn Store>,
    applier: Arc<Applier>,
    news: Vec<NewInstance>,
) -> Result<(Vec<Result<Registered, RuleError>>, i64), StoreError> {
    let done = store.register_batch(news).await?;
    let created = done
        .results
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| !r.retried))
        .count();
    applier.metrics.registrations.inc_by(created as u64);
    let last = done.changes.last;
    applier.committed(done.changes);
    // The batch is committed: from here nothing may turn it into an error for its callers
    // (a retry without a client-chosen id would register twice). Catching up is best effort.
    applier.catch_up_to(last).await;
    Ok((done.results, last))
}
