//! The `[store]` table: where each provider's rate-limit windows, budgets and denials live —
//! in this process (the default) or in Redis, shared by every router instance that names the
//! same server and prefix (feature `redis`).
//!
//! ```toml
//! [store]
//! kind = "redis"            # or "in-process" (the default)
//! url_env = "REDIS_URL"     # the variable holding redis://… or rediss://… (TLS)
//! prefix = "image-router"   # every key starts with {prefix:account}
//! timeout = "50ms"          # one store call; past it the router serves from local state
//! heartbeat = "2s"          # how often an instance announces itself
//! cluster = false           # true: Redis Cluster; url_env then holds one or several
//!                           # comma-separated node URLs (redis://h1:6379,redis://h2:6379)
//! ```
//!
//! Why `url_env` and never `url`: a Redis URL carries its password
//! (`redis://:secret@host:6379/0`), and this file is shown by `status`, copied into tickets
//! and committed. The same rule as `api_key_env`: the file names a variable, the value is
//! read when the router is built. A `url` key is refused with a message that says so (and
//! never echoes the value).
//!
//! Parsing checks what the file can get wrong (the kind, a missing `url_env`, keys that only
//! mean something for Redis, the durations and the prefix, with the rules of
//! [`RedisConfig::validate`](crate::store::redis::RedisConfig::validate)); building reads the
//! variable and makes the store factory. A binary built without the `redis` feature refuses
//! `kind = "redis"` with an error naming the feature, rather than silently keeping state per
//! process (which would multiply every limit by the number of instances).
//!
//! Changing `[store]` needs a restart: the stores of the providers that stay are kept on a
//! reload (their windows and reservations are live state), so
//! [`RouterConfig::reload`](super::RouterConfig::reload) keeps the running store and reports
//! the change.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::env::env_name;
use super::locate::Locator;
use super::router::{duration, non_empty, S};
use crate::config_error::ConfigError;
use crate::router::store::StoreFactory;

/// Which store keeps the providers' shared state (`[store] kind`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum StoreKind {
    /// Each router instance keeps its own state (the default).
    #[default]
    InProcess,
    /// State shared through a Redis server (feature `redis`).
    Redis,
}

impl StoreKind {
    /// The name the file uses: `"in-process"` or `"redis"`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::InProcess => "in-process",
            StoreKind::Redis => "redis",
        }
    }
}

/// The `[store]` table, checked (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StoreSettings {
    /// In process or Redis.
    pub kind: StoreKind,
    /// The environment variable holding the Redis URL (required for Redis).
    pub url_env: Option<String>,
    /// Key prefix (default `image-router`).
    pub prefix: Option<String>,
    /// Time-out of one store call (default 50 ms).
    #[serde(serialize_with = "ser_opt_dur")]
    pub timeout: Option<Duration>,
    /// Heartbeat interval (default 2 s).
    #[serde(serialize_with = "ser_opt_dur")]
    pub heartbeat: Option<Duration>,
    /// Redis Cluster (`true`) or a single server (default): in cluster mode the variable
    /// holds one or several comma-separated node URLs.
    pub cluster: Option<bool>,
    /// Line of the `[store]` header (or of its first key), for build-time errors.
    #[serde(skip)]
    pub line: Option<usize>,
}

fn ser_opt_dur<Se: serde::Serializer>(d: &Option<Duration>, s: Se) -> Result<Se::Ok, Se::Error> {
    match d {
        Some(d) => s.serialize_str(&crate::quota::headers::format_go_duration(*d)),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    kind: S<String>,
    url_env: S<String>,
    /// Refused with a clear message (credentials never live in the file).
    url: S<toml::Value>,
    prefix: S<String>,
    timeout: S<String>,
    heartbeat: S<String>,
    cluster: S<bool>,
}

impl RawStore {
    /// The line of the table's first key, for errors about a key that is missing.
    fn first_line(&self, cx: &Locator<'_>) -> Option<usize> {
        [
            self.kind.as_ref().map(|v| cx.line_of(v)),
            self.url_env.as_ref().map(|v| cx.line_of(v)),
            self.url.as_ref().map(|v| cx.line_of(v)),
            self.prefix.as_ref().map(|v| cx.line_of(v)),
            self.timeout.as_ref().map(|v| cx.line_of(v)),
            self.heartbeat.as_ref().map(|v| cx.line_of(v)),
            self.cluster.as_ref().map(|v| cx.line_of(v)),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Parses and checks the `[store]` table.
pub(super) fn parse(cx: &Locator<'_>, r: &RawStore) -> Result<StoreSettings, ConfigError> {
    let line = r.first_line(cx);
    if let Some(u) = &r.url {
        return Err(cx.err(
            "store.url".to_string(),
            u,
            "the Redis URL is never written in the file (it may hold a password): put it in \
             an environment variable and name that variable with `url_env = \"REDIS_URL\"`",
        ));
    }
    let kind = match &r.kind {
        None => StoreKind::InProcess,
        Some(k) => match k.get_ref().as_str() {
            "in-process" => StoreKind::InProcess,
            "redis" => StoreKind::Redis,
            other => {
                return Err(cx.err(
                    "store.kind".to_string(),
                    k,
                    format!("unknown kind {other:?}; expected \"in-process\" or \"redis\""),
                ))
            }
        },
    };
    #[cfg(not(feature = "redis"))]
    if let (StoreKind::Redis, Some(k)) = (kind, &r.kind) {
        return Err(cx.err(
            "store.kind".to_string(),
            k,
            "kind \"redis\" needs the crate feature `redis`, and this build of image-router \
             was made without it (enable the feature, or use kind = \"in-process\")",
        ));
    }
    let s = StoreSettings {
        kind,
        url_env: env_name(cx, "store.url_env".to_string(), &r.url_env)?,
        prefix: non_empty(cx, "store.prefix".to_string(), &r.prefix)?,
        timeout: duration(cx, "store.timeout", &r.timeout, false)?,
        heartbeat: duration(cx, "store.heartbeat", &r.heartbeat, false)?,
        cluster: r.cluster.as_ref().map(|c| *c.get_ref()),
        line,
    };
    if kind == StoreKind::InProcess {
        for (k, present) in [
            ("url_env", &r.url_env),
            ("prefix", &r.prefix),
            ("timeout", &r.timeout),
            ("heartbeat", &r.heartbeat),
        ]
        .map(|(k, v)| (k, v.as_ref().map(|v| cx.line_of(v))))
        .into_iter()
        .chain([("cluster", r.cluster.as_ref().map(|v| cx.line_of(v)))])
        {
            if let Some(l) = present {
                return Err(ConfigError::new(
                    format!("store.{k}"),
                    format!("`{k}` applies to kind \"redis\" only (the store is in-process)"),
                )
                .at_line(l));
            }
        }
        return Ok(s);
    }
    if s.url_env.is_none() {
        let mut e = ConfigError::new(
            "store.url_env",
            "missing: kind \"redis\" needs `url_env`, the name of the environment variable \
             holding the redis:// or rediss:// URL",
        );
        e.line = line;
        return Err(e);
    }
    #[cfg(feature = "redis")]
    {
        // The prefix and durations by the store's own rules, on a placeholder URL.
        let at = |v: &S<String>| v.as_ref().map(|v| cx.line_of(v)).or(line);
        s.redis_config("redis://127.0.0.1/".to_string())
            .validate()
            .map_err(|mut e| {
                e.line = match e.field.as_str() {
                    "store.prefix" => at(&r.prefix),
                    "store.timeout" => at(&r.timeout),
                    "store.heartbeat" => at(&r.heartbeat),
                    _ => line,
                };
                e
            })?;
    }
    Ok(s)
}

impl StoreSettings {
    /// The Redis connection settings with `url` and this table's prefix and durations.
    #[cfg(feature = "redis")]
    pub fn redis_config(&self, url: String) -> crate::store::redis::RedisConfig {
        let mut c = crate::store::redis::RedisConfig::new(url);
        if let Some(p) = &self.prefix {
            c = c.prefix(p.clone());
        }
        if let Some(d) = self.timeout {
            c = c.timeout(d);
        }
        if let Some(d) = self.heartbeat {
            c = c.heartbeat(d);
        }
        c.cluster(self.cluster.unwrap_or(false))
    }

    /// The Redis settings with the URL read through `env` from `url_env`; `None` for the
    /// in-process store. An unset variable or a bad URL is an error on `store.url_env` that
    /// names the variable, never its value.
    #[cfg(feature = "redis")]
    pub fn redis_config_from(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<crate::store::redis::RedisConfig>, ConfigError> {
        if self.kind != StoreKind::Redis {
            return Ok(None);
        }
        let at = |mut e: ConfigError| {
            e.line = self.line;
            e
        };
        let var = self.url_env.as_deref().ok_or_else(|| {
            at(ConfigError::new(
                "store.url_env",
                "missing: kind \"redis\" needs `url_env`",
            ))
        })?;
        let url = env(var)
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                at(ConfigError::new(
                    "store.url_env",
                    format!(
                        "environment variable {var} is not set (it must hold the redis:// or \
                         rediss:// URL, or with `cluster = true` the node URLs)"
                    ),
                ))
            })?;
        let c = self.redis_config(url);
        c.validate().map_err(|e| {
            at(ConfigError::new(
                "store.url_env",
                format!("{var}: {}", e.message),
            ))
        })?;
        Ok(Some(c))
    }

    /// The store factory this table asks for: `None` for the in-process store (the
    /// builder's default), the Redis store's factory for `kind = "redis"` (the URL read
    /// through `env`).
    pub fn factory(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Arc<dyn StoreFactory>>, ConfigError> {
        match self.kind {
            StoreKind::InProcess => {
                let _ = env;
                Ok(None)
            }
            #[cfg(feature = "redis")]
            StoreKind::Redis => {
                let Some(c) = self.redis_config_from(env)? else {
                    return Ok(None);
                };
                let f = crate::store::redis::RedisStoreFactory::new(c).map_err(|mut e| {
                    e.line = e.line.or(self.line);
                    e
                })?;
                Ok(Some(Arc::new(f)))
            }
            #[cfg(not(feature = "redis"))]
            StoreKind::Redis => Err(ConfigError::new(
                "store.kind",
                "kind \"redis\" needs the crate feature `redis`",
            )),
        }
    }
}
