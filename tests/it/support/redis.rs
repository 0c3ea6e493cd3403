//! The Redis server the shared-store tests use.
//!
//! `.ci/run` starts a throwaway `redis-server` on a free loopback port and exports its URL
//! as `IMAGE_ROUTER_TEST_REDIS_URL`. Without it a test cannot run: in CI (`CI` set) that is
//! a failure with a clear message, since a skipped shared-store test would hide a broken
//! store; on a developer's machine the test says loudly that it was skipped and returns.
//! Each test writes under its own key prefix ([`unique_prefix`]), so tests share one
//! server without seeing each other's keys.
//!
//! `.ci/run` also starts a three-master Redis Cluster (`.ci/redis-cluster`) and exports its
//! node URLs as `IMAGE_ROUTER_TEST_REDIS_CLUSTER_URLS` ([`cluster_urls`], the same rule: a
//! failure in CI, a loud skip elsewhere). A test body that takes a [`Server`] runs on both
//! through [`on_each_server!`](crate::on_each_server), as `name::single` and `name::cluster`.

use std::sync::atomic::{AtomicU64, Ordering};

/// The variable holding the test server's URL.
pub const URL_VAR: &str = "IMAGE_ROUTER_TEST_REDIS_URL";

/// The test server's URL; `None` (after a loud note on stderr) when there is none outside
/// CI; a panic naming the variable when there is none in CI.
pub fn url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(u) if !u.trim().is_empty() => Some(u.trim().to_string()),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{test}: {URL_VAR} is not set: CI must run the Redis tests (.ci/run starts redis-server and exports it)"
        ),
        _ => {
            eprintln!(
                "\n*** SKIPPED {test}: no Redis server ({URL_VAR} is not set; `bash .ci/run` starts one) ***\n"
            );
            None
        }
    }
}

/// A key prefix no other test (or earlier run) uses.
pub fn unique_prefix(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("test-{tag}-{}-{nanos}-{n}", std::process::id())
}

/// The variable holding the test cluster's node URLs (comma-separated): `.ci/run` starts a
/// three-master Redis Cluster on free loopback ports (`.ci/redis-cluster`) and exports it.
pub const CLUSTER_VAR: &str = "IMAGE_ROUTER_TEST_REDIS_CLUSTER_URLS";

/// The test cluster's node URLs; `None` (after a loud note) outside CI without them, a panic
/// naming the variable in CI.
pub fn cluster_urls(test: &str) -> Option<String> {
    match std::env::var(CLUSTER_VAR) {
        Ok(u) if !u.trim().is_empty() => Some(u.trim().to_string()),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{test}: {CLUSTER_VAR} is not set: CI must run the Redis Cluster tests (.ci/run starts a cluster with .ci/redis-cluster and exports it)"
        ),
        _ => {
            eprintln!(
                "\n*** SKIPPED {test}: no Redis Cluster ({CLUSTER_VAR} is not set; `bash .ci/run` starts one) ***\n"
            );
            None
        }
    }
}

/// Which kind of server a test body runs on: the same body runs on both (see
/// [`on_each_server`](crate::on_each_server)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// The single server (`IMAGE_ROUTER_TEST_REDIS_URL`).
    Single,
    /// The three-master cluster (`IMAGE_ROUTER_TEST_REDIS_CLUSTER_URLS`).
    Cluster,
}

impl Server {
    /// The server's URL (the cluster's node URLs, comma-separated); `None` as [`url`] and
    /// [`cluster_urls`] say.
    pub fn url(self, test: &str) -> Option<String> {
        match self {
            Server::Single => url(test),
            Server::Cluster => cluster_urls(test),
        }
    }

    /// Whether this is the cluster.
    pub fn is_cluster(self) -> bool {
        self == Server::Cluster
    }

    /// The library's settings for `url` on this kind of server.
    pub fn config(self, url: &str) -> image_router::store::redis::RedisConfig {
        image_router::store::redis::RedisConfig::new(url.to_string()).cluster(self.is_cluster())
    }

    /// A plain connection for looking at keys: `KEYS` on it asks every primary of a cluster.
    pub async fn plain(self, url: &str) -> Plain {
        match self {
            Server::Single => Plain::Single(
                redis::Client::open(url)
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap(),
            ),
            Server::Cluster => Plain::Cluster(
                redis::cluster::ClusterClient::new(url.split(',').map(str::trim))
                    .unwrap()
                    .get_async_connection()
                    .await
                    .unwrap(),
            ),
        }
    }
}

/// A test's own connection to the single server or the cluster (commands routed by key on
/// the cluster, `KEYS` sent to every primary and the answers combined).
#[derive(Clone)]
pub enum Plain {
    /// One server.
    Single(redis::aio::MultiplexedConnection),
    /// The cluster.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Plain {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Plain::Single(c) => c.req_packed_command(cmd),
            Plain::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Plain::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Plain::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Plain::Single(c) => c.get_db(),
            Plain::Cluster(c) => c.get_db(),
        }
    }
}

/// Runs each named test body (`async fn name(server: Server)`) on the single server and on
/// the cluster, as the tests `name::single` and `name::cluster`. An optional
/// `#[tokio::test(...)]` argument list comes first: `on_each_server!((flavor = "multi_thread"); a, b)`.
#[macro_export]
macro_rules! on_each_server {
    ($attrs:tt; $($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test $attrs]
            async fn single() {
                super::$name($crate::support::redis::Server::Single).await
            }
            #[tokio::test $attrs]
            async fn cluster() {
                super::$name($crate::support::redis::Server::Cluster).await
            }
        }
    )+};
    ($($name:ident),+ $(,)?) => {
        $crate::on_each_server!((); $($name),+);
    };
}
