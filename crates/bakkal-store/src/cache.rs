//! A read cache of customers for the embedded (SQLite) database, where this process is the only
//! writer. Coherence is structural: every committed write transaction bumps a generation, and
//! an entry is only served while the generation it was read at is still current. A write
//! anywhere therefore empties the cache in effect; reads between writes are served from memory.
//! (With PostgreSQL other servers may write, so no cache is kept.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bakkal_domain::Customer;

const SHARDS: usize = 16;

#[derive(Debug)]
pub(crate) struct CustomerCache {
    shards: Vec<Mutex<HashMap<i64, (u64, Customer)>>>,
    per_shard: usize,
}

impl CustomerCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, id: i64) -> &Mutex<HashMap<i64, (u64, Customer)>> {
        &self.shards[id.rem_euclid(SHARDS as i64) as usize]
    }

    /// The customer read under `generation`, if it is still current.
    pub fn get(&self, id: i64, generation: u64) -> Option<Customer> {
        let shard = self.shard(id).lock().ok()?;
        match shard.get(&id) {
            Some((g, c)) if *g == generation => Some(c.clone()),
            _ => None,
        }
    }

    pub fn put(&self, id: i64, generation: u64, c: &Customer) {
        if let Ok(mut shard) = self.shard(id).lock() {
            if shard.len() >= self.per_shard && !shard.contains_key(&id) {
                // bounded memory: start the shard afresh rather than track recency
                shard.clear();
            }
            shard.insert(id, (generation, c.clone()));
        }
    }
}

/// The write generation shared by every clone of a store.
#[derive(Debug, Clone, Default)]
pub(crate) struct Generation(Arc<AtomicU64>);

impl Generation {
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(id: i64) -> Customer {
        Customer {
            id,
            fields: Default::default(),
            create_time: 0,
            update_time: 0,
            converted_time: None,
            version: 1,
            totals: Default::default(),
            referral_count: 0,
        }
    }

    #[test]
    fn entries_die_with_their_generation() {
        let cache = CustomerCache::new(64);
        let g = Generation::default();
        cache.put(1, g.current(), &customer(1));
        assert!(cache.get(1, g.current()).is_some());
        g.bump();
        assert!(cache.get(1, g.current()).is_none());
    }

    #[test]
    fn memory_is_bounded() {
        let cache = CustomerCache::new(32);
        for id in 0..10_000 {
            cache.put(id, 0, &customer(id));
        }
        let held: usize = cache.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(held <= 32, "{held}");
    }
}
