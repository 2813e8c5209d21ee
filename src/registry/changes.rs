//! A level-triggered signal that this replica's index moved, for front ends that recompute
//! their answer from the index (xDS) instead of replaying each change (Watch).

use std::future::Future;
use std::pin::Pin;

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use super::Registry;
use crate::events::Item;

/// Wakes its holder when anything was applied here. It holds no history: falling behind the
/// feed costs nothing but a recomputation, so its memory is one broadcast cursor.
pub struct Changes {
    live: broadcast::Receiver<Item>,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Changes {
    /// Waits until the index moved (one or many changes, coalesced); `false` once the
    /// registry is shutting down.
    pub async fn changed(&mut self) -> bool {
        let first = tokio::select! {
            first = self.live.recv() => first,
            _ = &mut self.shutdown => return false,
        };
        match first {
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return false,
        }
        // Everything already queued is part of the same wake-up.
        loop {
            match self.live.try_recv() {
                Ok(_) | Err(TryRecvError::Lagged(_)) => continue,
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Closed) => return false,
            }
        }
    }
}

impl Registry {
    /// A signal for every later change applied on this replica (from any replica's writes).
    pub fn changes(&self) -> Changes {
        Changes {
            live: self.applier.hub.subscribe_live(),
            shutdown: Box::pin(self.liveness.shutting_down()),
        }
    }
}
