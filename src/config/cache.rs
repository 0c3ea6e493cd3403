//! The `[cache]` table (the response cache, see [`crate::cache`]) and its sub-table
//! `[cache.redis]` (the second tier shared by instances, feature `redis`): parsing into
//! [`CacheSettings`] and the settings turned into a [`CacheConfig`] at build time.
//!
//! ```toml
//! [cache]
//! max_bytes = 268435456   # memory tier bound, bytes of image data (default 256 MiB)
//! ttl = "1h"              # time to live in memory (default 1h)
//!
//! [cache.redis]           # feature `redis`
//! enabled = true          # default true when the table is present
//! url_env = "REDIS_URL"   # the variable holding the redis:// URL (never the URL itself)
//! prefix = "image-router"
//! timeout = "250ms"
//! max_bytes = 1073741824  # bound of all shared entries (default 1 GiB)
//! max_entry_bytes = 16777216
//! ttl = "24h"
//! cluster = false         # true: Redis Cluster; url_env then holds comma-separated nodes
//! ```
//!
//! The URL is read from the environment when the router is built, like provider keys, so a
//! file never holds a password. The values' rules are [`CacheConfig::validate`]'s, shared with
//! the builder. (Once the shared store's `[store]` table lands, `url_env` may default to its
//! `url_env`; on this branch `url_env` is required.)

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::locate::Locator;
use super::router::{duration, ser_opt_dur, S};
use crate::cache::CacheConfig;
use crate::config_error::ConfigError;

/// The `[cache]` table, parsed and checked.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CacheSettings {
    /// The memory tier's bound in bytes (`None`: the default).
    pub max_bytes: Option<u64>,
    /// The memory tier's time to live (`None`: the default).
    #[serde(serialize_with = "ser_opt_dur")]
    pub ttl: Option<Duration>,
    /// `[cache.redis]`, when present and enabled.
    pub redis: Option<CacheRedisSettings>,
}

/// The `[cache.redis]` table, parsed and checked.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CacheRedisSettings {
    /// The environment variable holding the Redis URL.
    pub url_env: String,
    /// Key prefix.
    pub prefix: Option<String>,
    /// Time-out of one call.
    #[serde(serialize_with = "ser_opt_dur")]
    pub timeout: Option<Duration>,
    /// Bound of all shared entries in bytes.
    pub max_bytes: Option<u64>,
    /// Largest entry written, in bytes.
    pub max_entry_bytes: Option<u64>,
    /// Time to live of a shared entry.
    #[serde(serialize_with = "ser_opt_dur")]
    pub ttl: Option<Duration>,
    /// Redis Cluster (`true`) or a single server (default): in cluster mode the variable
    /// holds one or several comma-separated node URLs.
    pub cluster: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    max_bytes: S<i64>,
    ttl: S<String>,
    redis: Option<RawCacheRedis>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCacheRedis {
    enabled: S<bool>,
    url_env: S<String>,
    prefix: S<String>,
    timeout: S<String>,
    max_bytes: S<i64>,
    max_entry_bytes: S<i64>,
    ttl: S<String>,
    cluster: S<bool>,
}

fn bytes(cx: &Locator<'_>, field: &str, v: &S<i64>) -> Result<Option<u64>, ConfigError> {
    match v {
        None => Ok(None),
        Some(n) => match u64::try_from(*n.get_ref()) {
            Ok(b) if b > 0 => Ok(Some(b)),
            _ => Err(cx.err(
                field.to_string(),
                n,
                format!("must be a number of bytes above zero, got {}", n.get_ref()),
            )),
        },
    }
}

/// Parses and checks `[cache]` (`line` is the table's header line, for errors without a
/// value to point at).
pub(super) fn parse(cx: &Locator<'_>, raw: &RawCache) -> Result<CacheSettings, ConfigError> {
    let settings = CacheSettings {
        max_bytes: bytes(cx, "cache.max_bytes", &raw.max_bytes)?,
        ttl: duration(cx, "cache.ttl", &raw.ttl, false)?,
        redis: match &raw.redis {
            None => None,
            Some(r) if r.enabled.as_ref().is_some_and(|e| !*e.get_ref()) => None,
            Some(r) => Some(parse_redis(cx, r)?),
        },
    };
    // The value rules, with the line of the key that breaks them.
    if let Err(e) = settings.config_without_url().validate() {
        let line = match e.field.as_str() {
            "cache.ttl" => raw.ttl.as_ref().map(|v| cx.line_of(v)),
            "cache.max_bytes" => raw.max_bytes.as_ref().map(|v| cx.line_of(v)),
            _ => None,
        };
        return Err(match line {
            Some(l) => e.at_line(l),
            None => e,
        });
    }
    Ok(settings)
}

fn parse_redis(cx: &Locator<'_>, r: &RawCacheRedis) -> Result<CacheRedisSettings, ConfigError> {
    let Some(url_env) = &r.url_env else {
        return Err(ConfigError::new(
            "cache.redis.url_env",
            "missing: name the environment variable that holds the redis:// URL",
        ));
    };
    if url_env.get_ref().trim().is_empty() {
        return Err(cx.err("cache.redis.url_env".into(), url_env, "must not be empty"));
    }
    Ok(CacheRedisSettings {
        url_env: url_env.get_ref().trim().to_string(),
        prefix: r.prefix.as_ref().map(|p| p.get_ref().clone()),
        timeout: duration(cx, "cache.redis.timeout", &r.timeout, false)?,
        max_bytes: bytes(cx, "cache.redis.max_bytes", &r.max_bytes)?,
        max_entry_bytes: bytes(cx, "cache.redis.max_entry_bytes", &r.max_entry_bytes)?,
        ttl: duration(cx, "cache.redis.ttl", &r.ttl, false)?,
        cluster: r.cluster.as_ref().map(|c| *c.get_ref()),
    })
}

impl CacheSettings {
    /// The memory tier's settings (no second tier).
    fn config_without_url(&self) -> CacheConfig {
        let mut c = CacheConfig::new();
        if let Some(b) = self.max_bytes {
            c = c.max_bytes(b);
        }
        if let Some(t) = self.ttl {
            c = c.ttl(t);
        }
        c
    }

    /// The cache's settings, reading the Redis URL (if any) through `env`. Without the
    /// `redis` feature a `[cache.redis]` table is an error naming it.
    pub fn config(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<CacheConfig, ConfigError> {
        let c = self.config_without_url();
        let Some(r) = &self.redis else {
            return Ok(c);
        };
        #[cfg(feature = "redis")]
        {
            let url = env(&r.url_env).filter(|u| !u.trim().is_empty()).ok_or_else(|| {
                ConfigError::new(
                    "cache.redis.url_env",
                    format!(
                        "environment variable {} is not set (it must hold the redis:// or rediss:// URL)",
                        r.url_env
                    ),
                )
            })?;
            let mut tier = crate::cache::RedisTier::new(url.trim().to_string())
                .cluster(r.cluster.unwrap_or(false));
            if let Some(p) = &r.prefix {
                tier = tier.prefix(p.clone());
            }
            if let Some(t) = r.timeout {
                tier = tier.timeout(t);
            }
            if let Some(b) = r.max_bytes {
                tier = tier.max_bytes(b);
            }
            if let Some(b) = r.max_entry_bytes {
                tier = tier.max_entry_bytes(b);
            }
            if let Some(t) = r.ttl {
                tier = tier.ttl(t);
            }
            let c = c.redis(tier);
            c.validate()?;
            Ok(c)
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = (env, r);
            Err(ConfigError::new(
                "cache.redis",
                "the Redis tier needs the crate feature `redis`",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::RouterConfig;

    const PROVIDER: &str =
        "[[provider]]\nname = \"openai\"\nkind = \"openai\"\napi_key_env = \"K\"\n";

    #[test]
    fn the_table_parses_and_errors_name_key_and_line() {
        let cfg: RouterConfig = format!("[cache]\nmax_bytes = 1000\nttl = \"10m\"\n{PROVIDER}")
            .parse()
            .unwrap();
        let c = cfg.cache.unwrap();
        assert_eq!(c.max_bytes, Some(1000));
        assert_eq!(c.ttl, Some(std::time::Duration::from_secs(600)));
        assert!(c.redis.is_none());

        let e = format!("[cache]\nmax_bytes = 0\n{PROVIDER}")
            .parse::<RouterConfig>()
            .unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("cache.max_bytes", Some(2)));
        let e = format!("[cache]\nttl = \"400000h\"\n{PROVIDER}")
            .parse::<RouterConfig>()
            .unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("cache.ttl", Some(2)));
        let e = format!("[cache]\nttl_x = 1\n{PROVIDER}")
            .parse::<RouterConfig>()
            .unwrap_err();
        assert!(e.message.contains("ttl_x"));
        let e = format!("[cache.redis]\nprefix = \"p\"\n{PROVIDER}")
            .parse::<RouterConfig>()
            .unwrap_err();
        assert_eq!(e.field, "cache.redis.url_env");
        // Disabled: no second tier, no URL needed.
        let cfg: RouterConfig = format!("[cache.redis]\nenabled = false\n{PROVIDER}")
            .parse()
            .unwrap();
        assert!(cfg.cache.unwrap().redis.is_none());
    }

    #[cfg(feature = "redis")]
    #[test]
    fn the_redis_url_comes_from_the_environment_at_build_time() {
        let cfg: RouterConfig = format!(
            "[cache]\n[cache.redis]\nurl_env = \"CACHE_URL\"\nmax_bytes = 5000\nttl = \"1h\"\n{PROVIDER}"
        )
        .parse()
        .unwrap();
        let settings = cfg.cache.clone().unwrap();
        let e = settings.config(&|_| None).unwrap_err();
        assert_eq!(e.field, "cache.redis.url_env");
        assert!(e.message.contains("CACHE_URL"));
        let with_pw =
            |v: &str| (v == "CACHE_URL").then(|| "redis://:pw@127.0.0.1:6390/".to_string());
        let c = settings.config(&with_pw).unwrap();
        assert!(!format!("{c:?}").contains("pw"));
        let env = |v: &str| match v {
            "K" => Some("sk-test".to_string()),
            _ => with_pw(v),
        };
        assert!(cfg.build_with(&env, crate::config::build_provider).is_ok());
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_cluster_tier_takes_several_node_urls() {
        let text = |cluster: &str| {
            format!("[cache]\n[cache.redis]\nurl_env = \"CACHE_URL\"\n{cluster}{PROVIDER}")
        };
        let nodes =
            |v: &str| (v == "CACHE_URL").then(|| "redis://127.0.0.1:1,redis://127.0.0.1:2".into());
        let cfg: RouterConfig = text("cluster = true\n").parse().unwrap();
        let settings = cfg.cache.clone().unwrap();
        assert_eq!(settings.redis.as_ref().unwrap().cluster, Some(true));
        let c = settings.config(&nodes).unwrap();
        assert!(format!("{c:?}").contains("cluster: true"), "{c:?}");
        let single: RouterConfig = text("").parse().unwrap();
        let e = single.cache.unwrap().config(&nodes).unwrap_err();
        assert_eq!(e.field, "cache.redis.url");
        assert!(e.message.contains("cluster = true"), "{e}");
    }
}
