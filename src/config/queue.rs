//! The `[queue]` table: the durable job queue the `jobs` and `worker` commands use (feature
//! `queue`), and its workers' settings.
//!
//! ```toml
//! [queue]
//! kind = "sqlite"                 # or "redis" (several machines)
//! path = "jobs.db"                # sqlite: the file, relative to this config file
//! # url_env = "REDIS_URL"         # redis: the variable holding redis://… (never the URL)
//! # prefix = "image-router-jobs"  # redis: key prefix
//! # cluster = true                # redis: a Redis Cluster (url_env: comma-separated nodes)
//! results_dir = "results"         # where workers write images (relative to this file)
//! concurrency = 4                 # jobs a worker has in hand at once
//! lease = "60s"                   # a claimed job's lease; heartbeats extend it
//! heartbeat = "20s"
//! poll = "250ms"
//! grace = "30s"                   # on shutdown: finish or hand back within this
//! max_retries = 5                 # retryable failures before a job fails
//! retry_backoff = "2s"            # doubled per retry, at most 5 minutes
//! callback_secret_env = "IMAGE_ROUTER_CALLBACK_SECRET"  # HMAC key of job callbacks
//! ```
//!
//! As for `[store]`, secrets never live in the file: the Redis URL and the callback secret are
//! named by environment variable. Parsing checks every key (kind, the keys that apply to
//! each kind, durations, counts, variable names); opening the backend is
//! [`QueueSettings::open`] (feature `queue`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::env::env_name;
use super::locate::Locator;
use super::router::{count, duration, non_empty, ser_opt_dur, S};
use crate::config_error::ConfigError;

/// Which backend keeps the jobs (`[queue] kind`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum QueueKind {
    /// One SQLite file (the default).
    #[default]
    Sqlite,
    /// A Redis server shared by workers on several machines.
    Redis,
}

/// The `[queue]` table, checked (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct QueueSettings {
    /// SQLite or Redis.
    pub kind: QueueKind,
    /// SQLite file (default `image-router-jobs.db`), as written in the file.
    pub path: Option<String>,
    /// Variable holding the Redis URL.
    pub url_env: Option<String>,
    /// Redis key prefix.
    pub prefix: Option<String>,
    /// Redis Cluster (`true`) or a single server (default).
    pub cluster: Option<bool>,
    /// Results folder (default `image-router-results`), as written in the file.
    pub results_dir: Option<String>,
    /// Jobs a worker has in hand.
    pub concurrency: Option<u32>,
    /// Lease length.
    #[serde(serialize_with = "ser_opt_dur")]
    pub lease: Option<Duration>,
    /// Heartbeat interval.
    #[serde(serialize_with = "ser_opt_dur")]
    pub heartbeat: Option<Duration>,
    /// Poll interval.
    #[serde(serialize_with = "ser_opt_dur")]
    pub poll: Option<Duration>,
    /// Grace period on shutdown.
    #[serde(serialize_with = "ser_opt_dur")]
    pub grace: Option<Duration>,
    /// Retry limit of submitted jobs.
    pub max_retries: Option<u32>,
    /// First retry backoff.
    #[serde(serialize_with = "ser_opt_dur")]
    pub retry_backoff: Option<Duration>,
    /// Variable holding the callback signing secret.
    pub callback_secret_env: Option<String>,
    /// Line of the table's first key, for build-time errors.
    #[serde(skip)]
    pub line: Option<usize>,
}

/// Default SQLite file name.
pub const DEFAULT_QUEUE_PATH: &str = "image-router-jobs.db";
/// Default results folder.
pub const DEFAULT_RESULTS_DIR: &str = "image-router-results";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    kind: S<String>,
    path: S<String>,
    url_env: S<String>,
    /// Refused: credentials never live in the file.
    url: S<toml::Value>,
    prefix: S<String>,
    cluster: S<bool>,
    results_dir: S<String>,
    concurrency: S<i64>,
    lease: S<String>,
    heartbeat: S<String>,
    poll: S<String>,
    grace: S<String>,
    max_retries: S<i64>,
    retry_backoff: S<String>,
    callback_secret_env: S<String>,
}

/// Parses and checks the `[queue]` table.
pub(super) fn parse(cx: &Locator<'_>, r: &RawQueue) -> Result<QueueSettings, ConfigError> {
    let lines = [
        r.kind.as_ref().map(|v| cx.line_of(v)),
        r.path.as_ref().map(|v| cx.line_of(v)),
        r.url_env.as_ref().map(|v| cx.line_of(v)),
        r.prefix.as_ref().map(|v| cx.line_of(v)),
        r.results_dir.as_ref().map(|v| cx.line_of(v)),
        r.concurrency.as_ref().map(|v| cx.line_of(v)),
        r.lease.as_ref().map(|v| cx.line_of(v)),
    ];
    let line = lines.into_iter().flatten().min();
    if let Some(u) = &r.url {
        return Err(cx.err(
            "queue.url".to_string(),
            u,
            "the Redis URL is never written in the file (it may hold a password): put it in \
             an environment variable and name that variable with `url_env = \"REDIS_URL\"`",
        ));
    }
    let kind = match &r.kind {
        None => QueueKind::Sqlite,
        Some(k) => match k.get_ref().as_str() {
            "sqlite" => QueueKind::Sqlite,
            "redis" => QueueKind::Redis,
            other => {
                return Err(cx.err(
                    "queue.kind".to_string(),
                    k,
                    format!("unknown kind {other:?}; expected \"sqlite\" or \"redis\""),
                ))
            }
        },
    };
    let s = QueueSettings {
        kind,
        path: non_empty(cx, "queue.path".into(), &r.path)?,
        url_env: env_name(cx, "queue.url_env".into(), &r.url_env)?,
        prefix: non_empty(cx, "queue.prefix".into(), &r.prefix)?,
        cluster: r.cluster.as_ref().map(|c| *c.get_ref()),
        results_dir: non_empty(cx, "queue.results_dir".into(), &r.results_dir)?,
        concurrency: count(cx, "queue.concurrency".into(), &r.concurrency, 1, 4096)?,
        lease: duration(cx, "queue.lease", &r.lease, false)?,
        heartbeat: duration(cx, "queue.heartbeat", &r.heartbeat, false)?,
        poll: duration(cx, "queue.poll", &r.poll, false)?,
        grace: duration(cx, "queue.grace", &r.grace, true)?,
        max_retries: count(cx, "queue.max_retries".into(), &r.max_retries, 0, 100)?,
        retry_backoff: duration(cx, "queue.retry_backoff", &r.retry_backoff, false)?,
        callback_secret_env: env_name(
            cx,
            "queue.callback_secret_env".into(),
            &r.callback_secret_env,
        )?,
        line,
    };
    let only = |k: &str, v: Option<usize>, for_kind: &str| -> Result<(), ConfigError> {
        match v {
            Some(l) => Err(ConfigError::new(
                format!("queue.{k}"),
                format!("`{k}` applies to kind \"{for_kind}\" only"),
            )
            .at_line(l)),
            None => Ok(()),
        }
    };
    match kind {
        QueueKind::Sqlite => {
            only(
                "url_env",
                r.url_env.as_ref().map(|v| cx.line_of(v)),
                "redis",
            )?;
            only("prefix", r.prefix.as_ref().map(|v| cx.line_of(v)), "redis")?;
            only(
                "cluster",
                r.cluster.as_ref().map(|v| cx.line_of(v)),
                "redis",
            )?;
        }
        QueueKind::Redis => {
            only("path", r.path.as_ref().map(|v| cx.line_of(v)), "sqlite")?;
            if s.url_env.is_none() {
                let mut e = ConfigError::new(
                    "queue.url_env",
                    "missing: kind \"redis\" needs `url_env`, the name of the environment \
                     variable holding the redis:// or rediss:// URL",
                );
                e.line = line;
                return Err(e);
            }
        }
    }
    if let (Some(l), Some(h)) = (s.lease, s.heartbeat) {
        if h >= l {
            let mut e = ConfigError::new("queue.heartbeat", "must be shorter than `lease`");
            e.line = r.heartbeat.as_ref().map(|v| cx.line_of(v));
            return Err(e);
        }
    }
    Ok(s)
}

fn resolve(base: Option<&Path>, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p,
    }
}

impl QueueSettings {
    /// The SQLite file, relative paths against `base` (the config file's folder).
    pub fn sqlite_path(&self, base: Option<&Path>) -> PathBuf {
        resolve(base, self.path.as_deref().unwrap_or(DEFAULT_QUEUE_PATH))
    }

    /// The results folder, relative paths against `base`.
    pub fn results_path(&self, base: Option<&Path>) -> PathBuf {
        resolve(
            base,
            self.results_dir.as_deref().unwrap_or(DEFAULT_RESULTS_DIR),
        )
    }

    /// Opens the backend. SQLite: the file (created when missing). Redis (feature `redis`):
    /// the server the variable `url_env` names (without the feature: an error naming
    /// `queue.kind`).
    #[cfg(feature = "queue")]
    pub fn open(
        &self,
        base: Option<&Path>,
    ) -> Result<std::sync::Arc<dyn crate::queue::QueueBackend>, ConfigError> {
        match self.kind {
            QueueKind::Sqlite => {
                let path = self.sqlite_path(base);
                let b = crate::queue::SqliteBackend::open(&path).map_err(|e| {
                    let mut c = ConfigError::new("queue.path", e.to_string());
                    c.line = self.line;
                    c
                })?;
                Ok(std::sync::Arc::new(b))
            }
            #[cfg(feature = "redis")]
            QueueKind::Redis => self.open_redis(),
            #[cfg(not(feature = "redis"))]
            QueueKind::Redis => {
                let mut e = ConfigError::new(
                    "queue.kind",
                    "kind \"redis\" needs image-router built with the `redis` feature; use \
                     kind = \"sqlite\"",
                );
                e.line = self.line;
                Err(e)
            }
        }
    }

    /// The Redis backend: the URL from the variable `url_env` names, keys under `prefix`
    /// (default `image-router`: keys `{image-router:queue}:…`). No connection is made yet.
    #[cfg(all(feature = "queue", feature = "redis"))]
    fn open_redis(&self) -> Result<std::sync::Arc<dyn crate::queue::QueueBackend>, ConfigError> {
        use crate::router::store::redis::RedisConfig;
        let at = |field: &str, message: String| {
            let mut e = ConfigError::new(field, message);
            e.line = self.line;
            e
        };
        let var = self.url_env.as_deref().unwrap_or_default();
        let url = std::env::var(var)
            .ok()
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| {
                at(
                    "queue.url_env",
                    format!("environment variable {var} is not set (it must hold the redis:// or rediss:// URL)"),
                )
            })?;
        let mut config =
            RedisConfig::new(url.trim().to_string()).cluster(self.cluster.unwrap_or(false));
        if let Some(p) = &self.prefix {
            config = config.prefix(p.clone());
        }
        let b = crate::queue::RedisBackend::new(config).map_err(|e| match e {
            crate::queue::QueueError::Invalid { field, message } => at(&field, message),
            other => at("queue.url_env", other.to_string()),
        })?;
        Ok(std::sync::Arc::new(b))
    }

    /// A worker builder with this table's settings (router, backend and results still to set
    /// by the caller, as `image-router worker` does).
    #[cfg(feature = "queue")]
    pub fn worker_builder(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<crate::queue::WorkerBuilder, ConfigError> {
        let mut b = crate::queue::Worker::builder();
        if let Some(n) = self.concurrency {
            b = b.concurrency(n as usize);
        }
        if let Some(d) = self.lease {
            b = b.lease(d);
        }
        if let Some(d) = self.heartbeat {
            b = b.heartbeat(d);
        }
        if let Some(d) = self.poll {
            b = b.poll_interval(d);
        }
        if let Some(d) = self.grace {
            b = b.grace(d);
        }
        if let Some(d) = self.retry_backoff {
            b = b.retry_backoff(d, crate::queue::DEFAULT_MAX_RETRY_BACKOFF.max(d));
        }
        if let Some(var) = &self.callback_secret_env {
            let secret = env(var).filter(|s| !s.is_empty()).ok_or_else(|| {
                let mut e = ConfigError::new(
                    "queue.callback_secret_env",
                    format!("environment variable {var} is not set (it holds the callback signing secret)"),
                );
                e.line = self.line;
                e
            })?;
            b = b.callbacks(crate::queue::CallbackConfig {
                secret: Some(secrecy::SecretString::from(secret)),
                ..crate::queue::CallbackConfig::default()
            });
        }
        Ok(b)
    }
}
