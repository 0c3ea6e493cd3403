//! The response cache: pay once for the same image request (off unless configured).
//!
//! # Why
//!
//! Applications send the same request again: a product page rendered again, a retry after a
//! client time-out, a thumbnail asked for by ten users at once. Each generation costs money
//! ($0.01 to $0.25) and a slot of a rate limit as low as 5 images a minute. With the cache
//! on ([`RouterBuilder::cache`](crate::RouterBuilder::cache), or the config file's `[cache]`
//! table), such a request is answered from memory (or from a Redis tier shared by instances,
//! feature `redis`) at no cost, and identical requests in flight at the same moment make a
//! single upstream call. It is off by default because many applications send the same
//! prompt precisely to get a *new* image.
//!
//! # How a request goes through it
//!
//! The router resolves the request's model and validates it, then (unless the request's
//! [`CachePolicy`] is `Bypass`):
//! 1. **key** ([`CacheKey`]): SHA-256 over every field that changes the images, nothing else;
//! 2. **memory tier** (`memory.rs`, moka: a byte bound over image data and a time to live)
//!    — skipped by `Refresh`;
//! 3. **single-flight** (`flight.rs`): the first caller leads, identical callers wait for
//!    it; the leader looks in the **second tier** (`second_tier.rs`, `Use` only), else
//!    routes the request as usual, then **stores** the answer in both tiers before waking
//!    the waiters.
//!
//! A cached answer has [`ImageResponse::cached`](crate::ImageResponse::cached) set, costs
//! `Some(0.0)`, lists no attempts, and leaves the router's spend, rate-limit windows and
//! health untouched (no provider slot is involved). Waiters of a flight get the leader's
//! images the same way: only the leader's call was paid.
//!
//! # Failures of the single call
//!
//! A permanent failure (invalid request, content policy, access denied, authentication,
//! not found, a bad setting) is every waiter's answer. A transient one (rate limited,
//! time-out, 5xx, connect, decode, the deadline, no provider with room) is the leader's
//! answer only; one waiter then leads and routes again. A dropped leader hands over the
//! same way. Waiters wait at most until the router's deadline.
//!
//! # Time
//!
//! Expiry in memory follows the router's injected clock ([`crate::clock`]), see `memory.rs`;
//! the Redis tier's expiry is a Redis key TTL (the server's clock).

mod entry;
mod flight;
mod key;
mod memory;
#[cfg(feature = "redis")]
mod second_tier;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use crate::request::CachePolicy;
pub use key::CacheKey;
#[cfg(feature = "redis")]
pub use second_tier::{
    RedisTier, DEFAULT_MAX_ENTRY_BYTES, DEFAULT_SHARED_MAX_BYTES, DEFAULT_SHARED_PREFIX,
    DEFAULT_SHARED_TIMEOUT, DEFAULT_SHARED_TTL,
};

use entry::Entry;
use flight::{Flights, Turn};
use memory::MemoryTier;

use crate::clock::SharedClock;
use crate::config_error::ConfigError;
use crate::error::Error;
use crate::metrics as m;
use crate::request::ImageRequest;
use crate::response::ImageResponse;

/// Default bound of the memory tier: 256 MiB of image data.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;
/// Default time to live of a cached response in memory: one hour.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Longest time to live accepted (moka refuses much longer ones).
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Settings of the response cache (see the module docs).
///
/// ```
/// use std::time::Duration;
/// use image_router::{cache::CacheConfig, providers::OpenAi, Router};
/// let router = Router::builder()
///     .provider(OpenAi::builder().api_key("sk-test").build().unwrap())
///     .cache(CacheConfig::new().max_bytes(64 << 20).ttl(Duration::from_secs(600)))
///     .build()
///     .unwrap();
/// # let _ = router;
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct CacheConfig {
    max_bytes: u64,
    ttl: Duration,
    #[cfg(feature = "redis")]
    redis: Option<RedisTier>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl CacheConfig {
    /// The defaults: [`DEFAULT_MAX_BYTES`], [`DEFAULT_TTL`], no second tier.
    pub fn new() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            ttl: DEFAULT_TTL,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

    /// Sets the memory tier's bound in bytes of image data.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets how long a response stays in memory.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Adds the Redis second tier shared by instances (feature `redis`).
    #[cfg(feature = "redis")]
    pub fn redis(mut self, tier: RedisTier) -> Self {
        self.redis = Some(tier);
        self
    }

    /// The memory tier's bound in bytes.
    pub fn max_bytes_value(&self) -> u64 {
        self.max_bytes
    }

    /// The memory tier's time to live.
    pub fn ttl_value(&self) -> Duration {
        self.ttl
    }

    /// Checks the settings; errors name the field (`cache.max_bytes`, `cache.ttl`,
    /// `cache.redis.*`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_bytes == 0 {
            return Err(ConfigError::new("cache.max_bytes", "must be above zero"));
        }
        if self.ttl < Duration::from_millis(1) || self.ttl > MAX_TTL {
            return Err(ConfigError::new(
                "cache.ttl",
                "must be at least 1 ms and at most 365 days",
            ));
        }
        #[cfg(feature = "redis")]
        if let Some(r) = &self.redis {
            r.validate()?;
        }
        Ok(())
    }
}

/// Figures of a router's response cache ([`Router::cache_stats`](crate::Router::cache_stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Entries in the memory tier.
    pub entries: u64,
    /// Bytes of image data in the memory tier (moka's weighted size).
    pub bytes: u64,
    /// The memory tier's bound.
    pub max_bytes: u64,
    /// Requests answered without a call of their own (memory, Redis tier, or a flight).
    pub hits: u64,
    /// Requests that routed upstream through the cache (`Use` or `Refresh`).
    pub misses: u64,
}

/// The router's cache: tiers, flights and counters.
pub(crate) struct ResponseCache {
    memory: MemoryTier,
    flights: Flights<CacheKey, Arc<Entry>, Error>,
    #[cfg(feature = "redis")]
    second: Option<Arc<second_tier::SecondTier>>,
    clock: SharedClock,
    max_bytes: u64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl ResponseCache {
    /// The cache for `config` (checked), on the router's clock.
    pub(crate) fn new(config: CacheConfig, clock: SharedClock) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            memory: MemoryTier::new(config.max_bytes, config.ttl, clock.clone()),
            flights: Flights::default(),
            #[cfg(feature = "redis")]
            second: config.redis.map(second_tier::SecondTier::new).transpose()?,
            clock,
            max_bytes: config.max_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// Answers `req` (model resolved, validated) from the cache, from an identical request
    /// in flight, or by `route` (see the module docs); waiters give up at `deadline` after
    /// now.
    pub(crate) async fn serve<F, Fut>(
        &self,
        req: ImageRequest,
        deadline: Duration,
        route: F,
    ) -> Result<ImageResponse, Error>
    where
        F: FnOnce(ImageRequest) -> Fut,
        Fut: std::future::Future<Output = Result<ImageResponse, Error>>,
    {
        let started = Instant::now();
        let policy = req.cache_policy();
        if policy == CachePolicy::Bypass {
            return route(req).await;
        }
        let key = CacheKey::of(&req);
        if policy == CachePolicy::Use {
            if let Some(entry) = self.memory.get(&key).await {
                self.hit("memory");
                return Ok(entry.response(started.elapsed()));
            }
        }
        let deadline_at = started + deadline;
        let timed_out = || Error::Exhausted {
            attempts: Vec::new(),
            skipped: Vec::new(),
            deadline_exceeded: true,
        };
        let lead = move |took_over: bool| async move {
            // A waiter taking over from a leader dropped after it stored its answer finds it
            // here instead of paying again.
            if took_over && policy == CachePolicy::Use {
                if let Some(entry) = self.memory.get(&key).await {
                    self.hit("memory");
                    return Ok((entry.response(started.elapsed()), entry));
                }
            }
            #[cfg(feature = "redis")]
            if policy == CachePolicy::Use {
                if let Some(second) = &self.second {
                    if let Some(entry) = second.get(&key, self.clock.now()).await {
                        let entry = Arc::new(entry);
                        self.memory.put(key, Arc::clone(&entry)).await;
                        self.publish_bytes();
                        self.hit("shared");
                        return Ok((entry.response(started.elapsed()), entry));
                    }
                }
            }
            self.misses.fetch_add(1, Ordering::Relaxed);
            m::cache_miss();
            // A first leader's route ends by the same deadline on its own (and keeps its
            // attempt trace); a waiter that took over must still end by its own deadline.
            let resp = if took_over {
                match tokio::time::timeout_at(deadline_at, route(req)).await {
                    Ok(r) => r?,
                    Err(_) => return Err(timed_out()),
                }
            } else {
                route(req).await?
            };
            let entry = Arc::new(Entry::of(&resp, self.clock.now()));
            if entry.storable() {
                self.memory.put(key, Arc::clone(&entry)).await;
                self.publish_bytes();
                #[cfg(feature = "redis")]
                if let Some(second) = &self.second {
                    second.put(&key, &entry).await;
                }
            } else {
                // A stale entry must not outlive a refresh that could not be stored.
                self.memory.remove(&key).await;
            }
            Ok((resp, entry))
        };
        let turn = self
            .flights
            .run(key, deadline_at, lead, hands_over, timed_out)
            .await?;
        Ok(match turn {
            Turn::Led(resp) => resp,
            Turn::Joined(entry) => {
                self.hit("flight");
                entry.response(started.elapsed())
            }
        })
    }

    /// The cache's figures now (after moka's pending maintenance, so they are exact).
    pub(crate) async fn stats(&self) -> CacheStats {
        self.memory.settle().await;
        self.publish_bytes();
        CacheStats {
            entries: self.memory.entries(),
            bytes: self.memory.bytes(),
            max_bytes: self.max_bytes,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    fn hit(&self, tier: &'static str) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        m::cache_hit(tier);
    }

    fn publish_bytes(&self) {
        m::cache_bytes(self.memory.bytes());
    }
}

/// Whether a failed call hands the lead to a waiter (transient) rather than being every
/// waiter's answer (permanent).
fn hands_over(e: &Error) -> bool {
    match e {
        // A stream never goes through the cache; were one to, its partials were delivered.
        Error::Config(_)
        | Error::Invalid(_)
        | Error::Rejected { .. }
        | Error::StreamInterrupted { .. } => false,
        Error::Exhausted {
            deadline_exceeded: true,
            ..
        } => true,
        Error::Exhausted { .. } => match e.cause() {
            // No provider was called (all skipped: limits, breakers): another try may find
            // room, and costs nothing if it does not.
            None => true,
            Some(c) => c.is_rate_limited() || c.is_transient(),
        },
    }
}
