//! Change fan-out on one replica and between replicas: the hub that hands committed changes
//! to watchers (one shared ring), and the Redis bell that tells other replicas to read the
//! store's log now rather than at their next poll, through the [`Doorbell`] it shares with the
//! change feed.

pub mod bell;
mod doorbell;
mod hub;

pub use doorbell::Doorbell;
pub use hub::{Hub, Item, Subscription};
