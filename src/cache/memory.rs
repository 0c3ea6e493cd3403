//! The memory tier: a [`moka`] cache bounded by the bytes of image data it holds, with a
//! time to live.
//!
//! Why moka: a maintained concurrent cache with a weigher (the bound is in bytes, not in
//! entries: one 4K PNG weighs as much as hundreds of thumbnails), TinyLFU admission and
//! eviction, and a time to live, all of which a map behind a lock would have to re-invent.
//!
//! Time: moka measures its time to live on its own monotonic clock, which cannot be
//! injected. So each entry also carries the router clock's time it was stored at, and a
//! lookup treats an entry older than the time to live as a miss (and drops it): expiry
//! follows the injected clock ([`crate::clock`]), and moka's own time to live (the same
//! duration) only reclaims the memory of entries nobody asks for again.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use super::entry::Entry;
use super::key::CacheKey;
use crate::clock::SharedClock;

/// The in-process tier.
pub(crate) struct MemoryTier {
    cache: Cache<CacheKey, Arc<Entry>>,
    max_bytes: u64,
    ttl: Duration,
    clock: SharedClock,
}

impl MemoryTier {
    /// A tier of at most `max_bytes` of image data whose entries live `ttl`.
    pub(crate) fn new(max_bytes: u64, ttl: Duration, clock: SharedClock) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_k: &CacheKey, v: &Arc<Entry>| u32::try_from(v.weight()).unwrap_or(u32::MAX))
            .time_to_live(ttl)
            .build();
        Self {
            cache,
            max_bytes,
            ttl,
            clock,
        }
    }

    /// The entry for `key`, if held and not older than the time to live.
    pub(crate) async fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        let entry = self.cache.get(key).await?;
        let age = self.clock.now().saturating_sub(entry.stored_at);
        if age >= self.ttl {
            self.cache.invalidate(key).await;
            return None;
        }
        Some(entry)
    }

    /// Stores `entry` under `key`. An entry that alone weighs more than the whole bound is
    /// not stored (moka would take it and evict it only at its next maintenance, serving it
    /// meanwhile), and an older entry under the key is dropped.
    pub(crate) async fn put(&self, key: CacheKey, entry: Arc<Entry>) {
        if entry.weight() > self.max_bytes {
            self.cache.invalidate(&key).await;
            return;
        }
        self.cache.insert(key, entry).await;
    }

    /// Drops `key`'s entry.
    pub(crate) async fn remove(&self, key: &CacheKey) {
        self.cache.invalidate(key).await;
    }

    /// Bytes held (moka's weighted size; exact after [`settle`](Self::settle)).
    pub(crate) fn bytes(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Entries held (exact after [`settle`](Self::settle)).
    pub(crate) fn entries(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Runs moka's pending maintenance (evictions, expiries) now.
    pub(crate) async fn settle(&self) {
        self.cache.run_pending_tasks().await;
    }
}
