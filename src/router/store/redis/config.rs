//! Where the Redis server is and how the shared store talks to it.
//!
//! The URL may carry a password (`redis://:secret@host:6379/0`, `rediss://` for TLS), so it
//! is a [`SecretString`]: it never appears in `Debug`, an error or a log, and a config file
//! names the environment variable that holds it (`url_env`), never the URL itself.

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
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &"[redacted]")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("heartbeat", &self.heartbeat)
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
        }
    }

    /// The URL from the environment variable `var`; an unset or empty variable is a
    /// [`ConfigError`] on `store.url_env` naming the variable (never its value).
    pub fn from_env(var: &str) -> Result<Self, ConfigError> {
        match std::env::var(var) {
            Ok(url) if !url.trim().is_empty() => {
                let c = Self::new(url.trim().to_string());
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
        let url = self.url.expose_secret();
        let scheme = url.split("://").next().unwrap_or_default();
        if !url.contains("://") || !matches!(scheme, "redis" | "rediss" | "redis+unix" | "unix") {
            return Err(ConfigError::new(
                "store.url",
                "must start with redis://, rediss:// (TLS) or redis+unix://",
            ));
        }
        if redis::Client::open(url).is_err() {
            return Err(ConfigError::new(
                "store.url",
                "is not a valid Redis URL (the value is not shown: it may hold a password)",
            ));
        }
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

    /// A client for the server (no connection is made yet).
    pub(crate) fn client(&self) -> Result<redis::Client, ConfigError> {
        self.validate()?;
        redis::Client::open(self.url.expose_secret()).map_err(|_| {
            ConfigError::new(
                "store.url",
                "is not a valid Redis URL (the value is not shown: it may hold a password)",
            )
        })
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
