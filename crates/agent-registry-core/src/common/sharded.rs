//! A hash map keyed by instance id, split into independently locked shards so the hot paths
//! (a heartbeat, a directive) take one small lock and never contend on one big one.

use std::sync::{Mutex, MutexGuard};

use uuid::Uuid;

/// A shard: instance ids to values, hashed by foldhash (see Cargo.toml).
pub type Shard<V> = std::collections::HashMap<Uuid, V, foldhash::fast::RandomState>;

const SHARDS: usize = 64;

pub struct ShardedMap<V> {
    shards: Box<[Mutex<Shard<V>>]>,
}

impl<V> Default for ShardedMap<V> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl<V> ShardedMap<V> {
    /// The shard holding `id`, locked. The low half of a UUIDv7 (or v4) is random: a fair spread.
    pub fn shard(&self, id: &Uuid) -> MutexGuard<'_, Shard<V>> {
        let i = (id.as_u64_pair().1 % SHARDS as u64) as usize;
        super::lock(&self.shards[i])
    }

    /// Every shard in turn, each locked only while the caller holds it.
    pub fn each_shard(&self) -> impl Iterator<Item = MutexGuard<'_, Shard<V>>> {
        self.shards.iter().map(super::lock)
    }

    /// Entries across all shards (each counted under its own lock: a moment's estimate).
    pub fn len(&self) -> usize {
        self.each_shard().map(|s| s.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_always_lands_in_the_same_shard() {
        let map: ShardedMap<u32> = ShardedMap::default();
        let ids: Vec<Uuid> = (0..500).map(|_| Uuid::now_v7()).collect();
        for (n, id) in ids.iter().enumerate() {
            map.shard(id).insert(*id, n as u32);
        }
        assert_eq!(map.len(), 500);
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(map.shard(id).get(id), Some(&(n as u32)));
        }
        let used = map.each_shard().filter(|s| !s.is_empty()).count();
        assert!(used > SHARDS / 2, "500 ids spread over only {used} shards");
    }
}
