//! The write use cases: register (through the group-commit task), status changes, deregister,
//! drain, evict, advance an epoch — each durable, applied here and read-your-writes on return.

use std::future::Future;

use tokio::sync::oneshot;
use uuid::Uuid;

use super::reads::required_namespace;
use super::{Registry, RegistryError, batcher};
use crate::domain::{
    ChangeSet, DeathReason, Instance, NamespaceSummary, RegisterInput, Transition, parse_uuid,
    validate_register,
};
use crate::storage::StoreError;

impl Registry {
    /// Runs a store write in its own task, applies its changes, then waits for read-your-writes.
    pub(super) async fn write<T, F>(&self, op: F) -> Result<T, RegistryError>
    where
        T: Send + 'static,
        F: Future<Output = Result<(T, ChangeSet), StoreError>> + Send + 'static,
    {
        let applier = self.applier.clone();
        let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
            let (out, changes) = op.await?;
            let last = changes.last;
            applier.committed(changes);
            Ok::<_, StoreError>((out, last))
        }));
        let (out, last) = task
            .await
            .map_err(|e| RegistryError::Internal(format!("write task failed: {e}")))??;
        self.read_your_writes(last).await;
        Ok(out)
    }

    /// Read-your-writes: waits until the index holds `revision` (best effort).
    async fn read_your_writes(&self, revision: i64) {
        self.applier.catch_up_to(revision).await;
    }

    /// Applies every change the store holds beyond the index.
    pub async fn catch_up(&self) -> Result<(), RegistryError> {
        Ok(self.applier.catch_up().await?)
    }

    pub async fn register(&self, input: RegisterInput) -> Result<Instance, RegistryError> {
        let settings = &self.settings;
        let new = validate_register(
            input,
            &settings.lease_bounds,
            settings.catalog.max_card_bytes,
        )?;
        let (reply, answer) = oneshot::channel();
        let request = batcher::Request { new, reply };
        let gone = || RegistryError::Internal("the registration queue is closed".into());
        self.registrations.send(request).await.map_err(|_| gone())?;
        let (admitted, last) = answer.await.map_err(|_| gone())??;
        let done = admitted?;
        self.read_your_writes(last).await;
        if done.retried {
            self.index
                .renew(done.instance.instance_id, done.instance.last_heartbeat);
            // The lease may be missing here (first seen through the store): a retry must leave
            // the agent a lease — judged on the index's current row, under its lock, so a death
            // applied meanwhile is never undone.
            self.index.with_current(done.instance.instance_id, |now| {
                self.liveness.ensure_lease(&now.row, now.last_heartbeat)
            });
            self.liveness.renew_registered(done.instance.instance_id);
        }
        Ok(done.instance)
    }

    async fn transition(
        &self,
        id: &str,
        t: Transition,
        reason: &str,
    ) -> Result<Instance, RegistryError> {
        let id = parse_uuid("instance_id", id)?;
        self.transition_id(id, t, reason).await
    }

    /// A status change an agent reported on its heartbeat stream; durable when this returns.
    pub async fn report_status(&self, id: Uuid, t: Transition) -> Result<Instance, RegistryError> {
        self.transition_id(id, t, "reported by the agent").await
    }

    async fn transition_id(
        &self,
        id: Uuid,
        t: Transition,
        reason: &str,
    ) -> Result<Instance, RegistryError> {
        let store = self.store.clone();
        let done = self
            .write(async move {
                let r = store.transition(id, t).await?;
                Ok((r.instance, r.changes))
            })
            .await?;
        tracing::info!(instance_id = %id, transition = ?t, reason, "instance transition");
        Ok(done)
    }

    pub async fn deregister(&self, id: &str, reason: &str) -> Result<Instance, RegistryError> {
        self.transition(id, Transition::Kill(DeathReason::Deregistered), reason)
            .await
    }

    pub async fn drain(&self, id: &str, reason: &str) -> Result<Instance, RegistryError> {
        self.transition(id, Transition::Drain, reason).await
    }

    pub async fn evict(&self, id: &str, reason: &str) -> Result<Instance, RegistryError> {
        self.transition(id, Transition::Kill(DeathReason::Evicted), reason)
            .await
    }

    /// Advances the epoch; returns the namespace as it now is and how many instances were fenced.
    pub async fn advance_epoch(
        &self,
        namespace: &str,
    ) -> Result<(NamespaceSummary, u64), RegistryError> {
        let name = required_namespace("namespace", namespace)?;
        let store = self.store.clone();
        let target = name.clone();
        let fenced = self
            .write(async move {
                let r = store.advance_epoch(&target).await?;
                Ok((r.fenced, r.changes))
            })
            .await?;
        tracing::warn!(namespace = %name, fenced, "epoch advanced");
        Ok((self.namespace("namespace", &name)?, fenced))
    }
}
