//! Small building blocks every layer may use and none owns: the lock-poison policy, the boxed
//! future of hand-written tower services, the sharded map behind the lease and stream tables,
//! the periodic loop every background task runs on, and a future polled only when woken.
//! Depends on nothing in the workspace.

mod periodic;
mod sharded;
mod woken;

use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use periodic::Every;
pub use sharded::{Shard, ShardedMap};
pub use woken::WhenWoken;

/// A boxed, sendable future of a `Result` (what a hand-written tower service returns).
pub type BoxFuture<T, E> = Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

/// The one lock-poison policy: a panic while a lock was held is a bug already reported by the
/// panic itself; the data behind every lock here stays consistent at each statement (no lock
/// guards a multi-step invariant across a call that can panic), so the next holder goes on.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// [`lock`] for the read side of a `RwLock`.
pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// [`lock`] for the write side of a `RwLock`.
pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}
