//! Where the Redis server is and how the shared store talks to it.
//!
//! The URL may carry a password (`redis://:secret@host:6379/0`, `rediss://` for TLS), so it
//! is a [`SecretString`]: it never appears in `Debug`, an error or a log, and a config file
//! names the environment variable that holds it (`url_env`), never the URL itself.
//!
//! With [`RedisConfig::cluster`] the URL is one or several node URLs of a Redis Cluster,
//! separated by commas (`redis://:pw@10.0.0.1:6379,redis://:pw@10.0.0.2:6379`): the client
//! reads the slot map from whichever answers and routes each script to the node owning its
//! keys' slot (see `src/redis_conn.rs`). Without it, a comma-separated list is refused.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::config_error::ConfigError;

/// Default key prefix: every key the store writes starts with `{image-router:`.
pub const DEFAULT_PREFIX: &str = "image-router";
/// Default time-out of one store call: short, since a request must never wait on the
/// store for long (past it the store serves from local state, see the module docs).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
/// Default interval at which an instance announces itself (its heartbeat key expires after
/// three intervals).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(2);

/// Where the Redis server is and how the shared store talks to it.
#[derive(Clone)]
#[must_use]
pub struct RedisConfig {
    url: SecretString,
    prefix: String,
    timeout: Duration,
    heartbeat: Duration,
    cluster: bool,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &"[redacted]")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("heartbeat", &self.heartbeat)
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl RedisConfig {
    /// A server at `url` (`redis://`, `rediss://` for TLS, `redis+unix://`), with the
    /// default prefix, time-out and heartbeat. The URL is checked by
    /// [`validate`](Self::validate) (and by the store's factory).
    pub fn new(url: impl Into<SecretString>) -> Self {
        Self {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_string(),
            timeout: DEFAULT_TIMEOUT,
            heartbeat: DEFAULT_HEARTBEAT,
            cluster: false,
        }
    }

    /// The URL from the environment variable `var`; an unset or empty variable is a
    /// [`ConfigError`] on `store.url_env` naming the variable (never its value).
    pub fn from_env(var: &str) -> Result<Self, ConfigError> {
        Self::env_url(var, false)
    }

    /// A Redis Cluster whose node URLs (one or several, comma-separated) are in the
    /// environment variable `var`: [`from_env`](Self::from_env) in [`cluster`](Self::cluster)
    /// mode.
    pub fn cluster_from_env(var: &str) -> Result<Self, ConfigError> {
        Self::env_url(var, true)
    }

    fn env_url(var: &str, cluster: bool) -> Result<Self, ConfigError> {
        match std::env::var(var) {
            Ok(url) if !url.trim().is_empty() => {
                let c = Self::new(url.trim().to_string()).cluster(cluster);
                c.validate()
                    .map_err(|e| ConfigError::new("store.url_env", format!("{var}: {}", e.message)))?;
                Ok(c)
            }
            _ => Err(ConfigError::new(
                "store.url_env",
                format!("environment variable {var} is not set (it must hold the redis:// or rediss:// URL)"),
            )),
        }
    }

    /// Sets the key prefix (default [`DEFAULT_PREFIX`]).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the time-out of one store call (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the heartbeat interval (default [`DEFAULT_HEARTBEAT`]).
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// Talks to a Redis Cluster (`true`) or a single server (`false`, the default). In
    /// cluster mode the URL holds one or several node URLs separated by commas (`redis://` or
    /// `rediss://`, every node with the same credentials); the slot map is read from them.
    pub fn cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// Whether the URL names a Redis Cluster's nodes.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The key prefix.
    pub fn prefix_str(&self) -> &str {
        &self.prefix
    }

    /// The time-out of one store call.
    pub fn timeout_duration(&self) -> Duration {
        self.timeout
    }

    /// The heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat
    }

    /// Checks the settings; errors name the field (`store.url`, `store.prefix`,
    /// `store.timeout`, `store.heartbeat`) and never show the URL's credentials.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::redis_conn::Client::check(self.url.expose_secret(), self.cluster)
            .map_err(|e| ConfigError::new("store.url", e.0))?;
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(ConfigError::new(
                "store.prefix",
                "must be non-empty and hold no '{' or '}' (they mark the key's hash slot)",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new("store.timeout", "must be above zero"));
        }
        if self.heartbeat.is_zero() {
            return Err(ConfigError::new("store.heartbeat", "must be above zero"));
        }
        Ok(())
    }

    /// A client for the server or cluster (no connection is made yet); a cluster's
    /// connection attempts and answers are bounded by `timeout`.
    pub(crate) fn client_with(
        &self,
        timeout: Duration,
    ) -> Result<crate::redis_conn::Client, ConfigError> {
        self.validate()?;
        crate::redis_conn::Client::open(self.url.expose_secret(), self.cluster, timeout)
            .map_err(|e| ConfigError::new("store.url", e.0))
    }

    /// A client bounded by this config's time-out (see [`client_with`](Self::client_with)).
    pub(crate) fn client(&self) -> Result<crate::redis_conn::Client, ConfigError> {
        self.client_with(self.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_errors_never_show_the_url() {
        let c = RedisConfig::new("redis://:hunter2secret@127.0.0.1:1/0".to_string());
        assert!(!format!("{c:?}").contains("hunter2secret"));
        assert!(c.validate().is_ok());
        let bad = RedisConfig::new("http://:hunter2secret@127.0.0.1:1".to_string());
        let e = bad.validate().unwrap_err();
        assert_eq!(e.field, "store.url");
        assert!(!e.to_string().contains("hunter2secret"));
    }

    #[test]
    fn several_node_urls_need_cluster_mode() {
        let urls = "redis://:hunter2secret@127.0.0.1:7001,redis://:hunter2secret@127.0.0.1:7002";
        let single = RedisConfig::new(urls.to_string());
        let e = single.validate().unwrap_err();
        assert_eq!(e.field, "store.url");
        assert!(e.message.contains("cluster"), "{e}");
        assert!(!e.to_string().contains("hunter2secret"));
        let cluster = single.cluster(true);
        assert!(cluster.validate().is_ok());
        assert!(cluster.client().unwrap().is_cluster());
        assert!(format!("{cluster:?}").contains("cluster: true"));
        assert!(!format!("{cluster:?}").contains("hunter2secret"));
    }

    #[test]
    fn bad_settings_name_their_field() {
        let c = || RedisConfig::new("redis://127.0.0.1:1".to_string());
        assert_eq!(c().prefix("").validate().unwrap_err().field, "store.prefix");
        assert_eq!(
            c().prefix("a{b").validate().unwrap_err().field,
            "store.prefix"
        );
        assert_eq!(
            c().timeout(Duration::ZERO).validate().unwrap_err().field,
            "store.timeout"
        );
        assert_eq!(
            c().heartbeat(Duration::ZERO).validate().unwrap_err().field,
            "store.heartbeat"
        );
    }
}
