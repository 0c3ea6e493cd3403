//! The optional second tier (feature `redis`): cached images shared by every router instance
//! that points at the same Redis server and prefix.
//!
//! # What is stored
//!
//! Per key, one Redis string `{<prefix>:cache}:e:<sha256 hex>` holding the images (base64
//! in a small JSON document with their format, the serving provider and model, and
//! `created`). Nothing else: no API key, no prompt (the prompt exists in Redis only inside
//! the SHA-256 key), no revised prompt (dall-e-3's revised prompt restates the prompt, so it
//! is dropped: an answer from this tier has none), no URL.
//!
//! # Size bound and time to live
//!
//! Every entry is written with a Redis key TTL (`PX`), so Redis itself drops it when it
//! expires. The total size is bounded by one Lua script run on every write (atomic on the
//! server): besides the entry it keeps a sorted set `…:idx` of entries by write time, a hash
//! `…:sizes` of their sizes and a counter `…:total`; it first forgets index members whose
//! TTL has passed, then adds the new entry and, while the total is above `max_bytes`, pops
//! the oldest member and deletes its entry (oldest-first eviction). The bound is exact for
//! what the index counts; an entry alone larger than `max_entry_bytes` (or the whole bound)
//! is not written. All keys share one hash tag (`{<prefix>:cache}`), so the script's keys
//! sit in one slot of a Redis cluster; with [`RedisTier::cluster`] the tier talks to a
//! cluster through the crate's cluster connection (`src/redis_conn.rs`), which sends the
//! `GET` and the script (its first declared key is the entry) to the primary owning that
//! slot. The script deletes evicted entries by name (`ARGV[5]` + member): keys it did not
//! declare, which a cluster accepts because they carry the same tag, hence the same slot.
//!
//! # Failures
//!
//! The tier is an optimisation: every call is bounded by a short time-out, and any failure
//! (no server, time-out, a reply that does not parse) is a miss for a read and nothing for a
//! write, counted in `image_router_cache_second_tier_failures_total`, and logged once at
//! `warn` (afterwards at `debug`), never an error of the request. A broken connection is
//! dropped and made again on the next call.
//!
//! # Why not `RedisConfig`
//!
//! The shared store's [`RedisConfig`](crate::store) lives in the router, which sits above
//! the cache in the module layers (the router calls the cache), so the cache cannot name it.
//! [`RedisTier`] takes the same kind of URL (a secret) and prefix, checks them the same way,
//! and the config file's `[cache.redis]` reads the URL from the same environment variable
//! as `[store]` unless it names its own.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::entry::Entry;
use super::key::CacheKey;
use crate::config_error::ConfigError;
use crate::redis_conn::{Client, Connection};
use crate::request::OutputFormat;
use crate::response::Image;

/// Default bound of the whole second tier: 1 GiB of stored entries.
pub const DEFAULT_SHARED_MAX_BYTES: u64 = 1 << 30;
/// Default largest entry written: 16 MiB (ten large PNGs).
pub const DEFAULT_MAX_ENTRY_BYTES: u64 = 16 << 20;
/// Default time to live of a shared entry: one day.
pub const DEFAULT_SHARED_TTL: Duration = Duration::from_secs(24 * 3600);
/// Default time-out of one call to the second tier.
pub const DEFAULT_SHARED_TIMEOUT: Duration = Duration::from_millis(250);
/// Default key prefix (the shared store's default too).
pub const DEFAULT_SHARED_PREFIX: &str = "image-router";

/// Settings of the Redis second tier (see the module docs).
///
/// ```
/// use image_router::cache::{CacheConfig, RedisTier};
/// let config = CacheConfig::new()
///     .redis(RedisTier::new("redis://127.0.0.1:6379/").max_bytes(512 << 20));
/// assert!(config.validate().is_ok());
/// assert!(!format!("{config:?}").contains("6379")); // the URL may hold a password
/// ```
#[derive(Clone)]
#[must_use]
pub struct RedisTier {
    url: SecretString,
    prefix: String,
    timeout: Duration,
    max_bytes: u64,
    max_entry_bytes: u64,
    ttl: Duration,
    cluster: bool,
}

impl fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTier")
            .field("url", &"[redacted]")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("max_bytes", &self.max_bytes)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .field("ttl", &self.ttl)
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl RedisTier {
    /// A tier on the server at `url` (`redis://`, `rediss://`, `redis+unix://`) with the
    /// defaults.
    pub fn new(url: impl Into<SecretString>) -> Self {
        Self {
            url: url.into(),
            prefix: DEFAULT_SHARED_PREFIX.to_string(),
            timeout: DEFAULT_SHARED_TIMEOUT,
            max_bytes: DEFAULT_SHARED_MAX_BYTES,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            ttl: DEFAULT_SHARED_TTL,
            cluster: false,
        }
    }

    /// Talks to a Redis Cluster (`true`) or a single server (`false`, the default): in
    /// cluster mode the URL holds one or several node URLs separated by commas, and every
    /// call goes to the node owning the `{prefix:cache}` slot.
    pub fn cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// Sets the key prefix (default [`DEFAULT_SHARED_PREFIX`]).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// Sets the time-out of one call (default [`DEFAULT_SHARED_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Sets the bound of all stored entries in bytes (default [`DEFAULT_SHARED_MAX_BYTES`]).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }
    /// Sets the largest entry written, in bytes (default [`DEFAULT_MAX_ENTRY_BYTES`]).
    pub fn max_entry_bytes(mut self, bytes: u64) -> Self {
        self.max_entry_bytes = bytes;
        self
    }
    /// Sets the time to live of an entry (default [`DEFAULT_SHARED_TTL`]).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Checks the settings; errors name the field under `cache.redis` and never show the
    /// URL.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::redis_conn::Client::check(self.url.expose_secret(), self.cluster)
            .map_err(|e| ConfigError::new("cache.redis.url", e.0))?;
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(ConfigError::new(
                "cache.redis.prefix",
                "must be non-empty and hold no '{' or '}' (they mark the key's hash slot)",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new(
                "cache.redis.timeout",
                "must be above zero",
            ));
        }
        if self.max_bytes == 0 {
            return Err(ConfigError::new(
                "cache.redis.max_bytes",
                "must be above zero",
            ));
        }
        if self.max_entry_bytes == 0 {
            return Err(ConfigError::new(
                "cache.redis.max_entry_bytes",
                "must be above zero",
            ));
        }
        if self.ttl < Duration::from_millis(1) || self.ttl > super::MAX_TTL {
            return Err(ConfigError::new(
                "cache.redis.ttl",
                "must be at least 1 ms and at most 365 days",
            ));
        }
        Ok(())
    }
}

/// Adds the entry, forgets expired index members, trims oldest-first to the bound. KEYS:
/// entry, index, sizes, total. ARGV: payload, ttl ms, max bytes, member, entry key prefix.
const PUT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - ttl)
for _, m in ipairs(expired) do
  local s = tonumber(redis.call('HGET', KEYS[3], m) or '0')
  redis.call('HDEL', KEYS[3], m)
  redis.call('ZREM', KEYS[2], m)
  redis.call('DECRBY', KEYS[4], s)
end
local prev = redis.call('HGET', KEYS[3], ARGV[4])
if prev then redis.call('DECRBY', KEYS[4], tonumber(prev)) end
local size = string.len(ARGV[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now, ARGV[4])
redis.call('HSET', KEYS[3], ARGV[4], size)
local total = redis.call('INCRBY', KEYS[4], size)
local max = tonumber(ARGV[3])
while total > max do
  local popped = redis.call('ZPOPMIN', KEYS[2])
  if #popped == 0 then break end
  local m = popped[1]
  local s = tonumber(redis.call('HGET', KEYS[3], m) or '0')
  redis.call('HDEL', KEYS[3], m)
  redis.call('DEL', ARGV[5] .. m)
  total = redis.call('DECRBY', KEYS[4], s)
end
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('PEXPIRE', KEYS[4], ttl)
return total
";

/// One entry as stored: images and their origin only.
#[derive(Serialize, Deserialize)]
struct Stored {
    provider: String,
    model: String,
    created: i64,
    images: Vec<StoredImage>,
}

#[derive(Serialize, Deserialize)]
struct StoredImage {
    format: OutputFormat,
    b64: String,
}

/// The running second tier.
pub(crate) struct SecondTier {
    client: Client,
    conn: tokio::sync::Mutex<Option<Connection>>,
    settings: RedisTier,
    script: redis::Script,
    warned: AtomicBool,
}

impl SecondTier {
    /// The tier for `settings` (checked; no connection is made yet).
    pub(crate) fn new(settings: RedisTier) -> Result<Arc<Self>, ConfigError> {
        settings.validate()?;
        let client = Client::open(
            settings.url.expose_secret(),
            settings.cluster,
            settings.timeout,
        )
        .map_err(|e| ConfigError::new("cache.redis.url", e.0))?;
        Ok(Arc::new(Self {
            client,
            conn: tokio::sync::Mutex::new(None),
            settings,
            script: redis::Script::new(PUT),
            warned: AtomicBool::new(false),
        }))
    }

    fn tag(&self) -> String {
        format!("{{{}:cache}}", self.settings.prefix)
    }

    fn entry_key(&self, key: &CacheKey) -> String {
        format!("{}:e:{}", self.tag(), key.hex())
    }

    /// The entry for `key`, stored at `now` in the local sense; `None` on a miss or any
    /// failure.
    pub(crate) async fn get(&self, key: &CacheKey, now: Duration) -> Option<Entry> {
        let name = self.entry_key(key);
        let reply: Option<Vec<u8>> = self
            .call("get", |mut c| async move {
                redis::cmd("GET").arg(&name).query_async(&mut c).await
            })
            .await?;
        let bytes = reply?;
        match decode(&bytes, now) {
            Some(e) => Some(e),
            None => {
                self.failed("get", "an entry that does not parse");
                None
            }
        }
    }

    /// Stores `entry` under `key` unless it is larger than the largest entry allowed.
    pub(crate) async fn put(&self, key: &CacheKey, entry: &Entry) {
        let payload = encode(entry);
        let size = payload.len() as u64;
        if size > self.settings.max_entry_bytes || size > self.settings.max_bytes {
            tracing::debug!(
                size,
                "response too large for the cache's second tier: not stored"
            );
            return;
        }
        let tag = self.tag();
        let keys = [
            self.entry_key(key),
            format!("{tag}:idx"),
            format!("{tag}:sizes"),
            format!("{tag}:total"),
        ];
        let ttl_ms = u64::try_from(self.settings.ttl.as_millis()).unwrap_or(u64::MAX);
        let entry_prefix = format!("{tag}:e:");
        let member = key.hex();
        let max = self.settings.max_bytes;
        let script = &self.script;
        let _: Option<i64> = self
            .call("put", |mut c| async move {
                script
                    .key(&keys[0])
                    .key(&keys[1])
                    .key(&keys[2])
                    .key(&keys[3])
                    .arg(payload)
                    .arg(ttl_ms)
                    .arg(max)
                    .arg(member)
                    .arg(entry_prefix)
                    .invoke_async(&mut c)
                    .await
            })
            .await;
    }

    /// Runs `op` on a connection within the time-out; `None` (counted, logged) on failure.
    async fn call<T, F, Fut>(&self, what: &'static str, op: F) -> Option<T>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let timeout = self.settings.timeout;
        let conn = {
            let mut slot = self.conn.lock().await;
            match slot.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let made = tokio::time::timeout(timeout, self.client.connect(timeout)).await;
                    match made {
                        Ok(Ok(c)) => {
                            *slot = Some(c.clone());
                            c
                        }
                        Ok(Err(e)) => {
                            self.failed("connect", &format!("{:?}", e.kind()));
                            return None;
                        }
                        Err(_) => {
                            self.failed("connect", "time-out");
                            return None;
                        }
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, op(conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                    *self.conn.lock().await = None;
                }
                self.failed(what, &format!("{:?}", e.kind()));
                None
            }
            Err(_) => {
                self.failed(what, "time-out");
                None
            }
        }
    }

    fn failed(&self, op: &'static str, why: &str) {
        crate::metrics::cache_second_tier_failure(op);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(op, why, "the response cache's Redis tier failed: skipped (logged once; see image_router_cache_second_tier_failures_total)");
        } else {
            tracing::debug!(op, why, "the response cache's Redis tier failed: skipped");
        }
    }
}

fn encode(entry: &Entry) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let stored = Stored {
        provider: entry.provider.clone(),
        model: entry.model.clone(),
        created: entry.created,
        images: entry
            .images
            .iter()
            .map(|i| StoredImage {
                format: i.format,
                b64: b64.encode(&i.bytes),
            })
            .collect(),
    };
    // Serializing plain strings and numbers cannot fail; an empty payload would only be a
    // miss later.
    serde_json::to_vec(&stored).unwrap_or_default()
}

fn decode(bytes: &[u8], now: Duration) -> Option<Entry> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let stored: Stored = serde_json::from_slice(bytes).ok()?;
    if stored.images.is_empty() {
        return None;
    }
    let images = stored
        .images
        .into_iter()
        .map(|i| {
            let data = b64.decode(i.b64.as_bytes()).ok()?;
            Some(Image::new(bytes::Bytes::from(data), i.format))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Entry {
        images,
        provider: stored.provider,
        model: stored.model,
        created: stored.created,
        stored_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_survives_the_round_trip_without_prompt_or_url() {
        let mut img = Image::new(
            bytes::Bytes::from_static(b"\x89PNG\r\n\x1a\nabc"),
            OutputFormat::Png,
        );
        img.revised_prompt = Some("a secret prompt".into());
        img.url = Some("https://example.invalid/x.png".into());
        let e = Entry {
            images: vec![img],
            provider: "p".into(),
            model: "gpt-image-1".into(),
            created: 5,
            stored_at: Duration::ZERO,
        };
        let payload = encode(&e);
        let text = String::from_utf8(payload.clone()).unwrap();
        assert!(!text.contains("secret") && !text.contains("example.invalid"));
        let back = decode(&payload, Duration::from_secs(9)).unwrap();
        assert_eq!(back.images[0].bytes, e.images[0].bytes);
        assert_eq!(back.images[0].format, OutputFormat::Png);
        assert_eq!((back.created, back.stored_at), (5, Duration::from_secs(9)));
        assert!(decode(b"{not json", Duration::ZERO).is_none());
    }

    #[test]
    fn settings_errors_name_the_field_and_hide_the_url() {
        let e = RedisTier::new("http://user:pw@host")
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "cache.redis.url");
        assert!(!e.to_string().contains("pw"));
        let e = RedisTier::new("redis://127.0.0.1/")
            .prefix("a{b")
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "cache.redis.prefix");
        let e = RedisTier::new("redis://127.0.0.1/")
            .max_bytes(0)
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "cache.redis.max_bytes");
        let e = RedisTier::new("redis://127.0.0.1/")
            .ttl(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "cache.redis.ttl");
    }
}
