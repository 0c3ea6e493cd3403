//! One Redis connection type for a single server and for Redis Cluster (feature `redis`).
//!
//! The state store (scripts, heartbeats, degraded recovery), the cache's second tier and the
//! queue's Redis backend all send their commands through [`Connection`], so the same Lua
//! scripts and commands run unchanged on both:
//!
//! * **a single server** (or a proxy in front of one): the redis crate's reconnecting
//!   `redis::aio::ConnectionManager`;
//! * **Redis Cluster**: the redis crate's `redis::cluster_async::ClusterConnection` (feature
//!   `cluster-async`), made from a `redis::cluster::ClusterClient` seeded with one or several
//!   node URLs. It reads the slot map from the nodes, sends each command to the primary of
//!   the slot of its first key (for `EVAL`/`EVALSHA`, the first of the script's declared
//!   `KEYS`), follows `MOVED`/`ASK` redirections and refreshes the map when the cluster
//!   changes. `SCRIPT LOAD` (which `redis::Script` sends on a `NOSCRIPT` answer) goes to
//!   every primary, so a script is known on whichever node its keys live.
//!
//! Both implement `redis::aio::ConnectionLike`, so [`Connection`] does too by delegating;
//! nothing else in the crate knows which kind it talks to. Writing this by hand is a
//! two-arm `match`: the crate has no type that is either (its `ConnectionManager` has no
//! cluster mode, and its cluster client cannot talk to a server with cluster mode off).
//!
//! # Slots
//!
//! Redis Cluster runs a script only when every key it touches lives in one slot on the node
//! that runs it. Every key this crate writes starts with a hash tag (`{prefix:account}` for
//! the store, `{prefix:queue}` for the queue, `{prefix:cache}` for the cache, `{prefix:router}`
//! for the router-wide budgets), and each script or command is given keys of one tag only,
//! its first declared key among them, so the client routes it to the node that owns them.
//! Nothing sends `KEYS`, `SCAN`, or a multi-key command across tags.
//!
//! `INFO` is the one command without a key (the degraded mode reads the server's `run_id`
//! with it to learn whether the server restarted): on a cluster [`server_id`] sends it to the
//! primary owning the account's slot, the node whose restart would lose that account's keys.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// The schemes a Redis URL may use.
const SCHEMES: [&str; 4] = ["redis", "rediss", "redis+unix", "unix"];

/// Why a URL (list) was refused; the message never shows a URL (it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlError(pub(crate) &'static str);

/// A client for a single server or for a cluster; no connection is made until
/// [`connect`](Self::connect).
#[derive(Clone)]
pub(crate) enum Client {
    /// One server (cluster mode off). Both clients are boxed: they hold their settings
    /// inline (hundreds of bytes), and a client is made once per store, tier or backend.
    Single(Box<redis::Client>),
    /// A Redis Cluster, seeded with one or several of its nodes.
    Cluster(Box<ClusterClient>),
}

/// The URLs of `urls`: one, or with `cluster` several separated by commas.
fn split(urls: &str, cluster: bool) -> Result<Vec<&str>, UrlError> {
    let list: Vec<&str> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    if list.is_empty() {
        return Err(UrlError("is empty"));
    }
    if list.len() > 1 && !cluster {
        return Err(UrlError(
            "holds several comma-separated URLs, which only a cluster takes (set `cluster = true`)",
        ));
    }
    for u in &list {
        let scheme = u.split("://").next().unwrap_or_default();
        if !u.contains("://") || !SCHEMES.contains(&scheme) {
            return Err(UrlError(
                "must be redis://, rediss:// (TLS) or redis+unix:// URLs",
            ));
        }
        if cluster && scheme != "redis" && scheme != "rediss" {
            return Err(UrlError(
                "a cluster's nodes are reached over TCP: use redis:// or rediss:// URLs",
            ));
        }
        if redis::Client::open(*u).is_err() {
            return Err(UrlError(
                "is not a valid Redis URL (the value is not shown: it may hold a password)",
            ));
        }
    }
    Ok(list)
}

impl Client {
    /// A client for `urls`: one URL, or with `cluster` one or several node URLs separated by
    /// commas (every node must take the same credentials and TLS). `timeout` bounds a
    /// cluster's connection attempts and answers (a single server's are set by
    /// [`connect`](Self::connect)).
    pub(crate) fn open(urls: &str, cluster: bool, timeout: Duration) -> Result<Self, UrlError> {
        let list = split(urls, cluster)?;
        if !cluster {
            return redis::Client::open(list[0])
                .map(|c| Client::Single(Box::new(c)))
                .map_err(|_| {
                    UrlError(
                        "is not a valid Redis URL (the value is not shown: it may hold a password)",
                    )
                });
        }
        ClusterClient::builder(list)
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .build()
            .map(|c| Client::Cluster(Box::new(c)))
            .map_err(|_| {
                UrlError(
                    "does not make a cluster client: every node URL must use the same scheme, \
                     user and password (the values are not shown)",
                )
            })
    }

    /// Checks `urls` as [`open`](Self::open) does, without making a client.
    pub(crate) fn check(urls: &str, cluster: bool) -> Result<(), UrlError> {
        Self::open(urls, cluster, Duration::from_secs(1)).map(|_| ())
    }

    /// Whether this is a cluster client.
    #[cfg(test)]
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Client::Cluster(_))
    }

    /// Connects: a reconnecting connection manager (connection and answers bounded by
    /// `timeout`, one retry) for a single server, the cluster connection (which reads the
    /// slot map) for a cluster. The caller bounds the whole call by its own time-out too.
    pub(crate) async fn connect(&self, timeout: Duration) -> RedisResult<Connection> {
        match self {
            Client::Single(c) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(c.as_ref().clone(), config)
                    .await
                    .map(Connection::Single)
            }
            Client::Cluster(c) => c.get_async_connection().await.map(Connection::Cluster),
        }
    }
}

/// A connection to a single server or to a cluster (see the module docs); cheap to clone
/// (both kinds multiplex one connection per node).
#[derive(Clone)]
pub(crate) enum Connection {
    /// One server.
    Single(ConnectionManager),
    /// A cluster: commands are routed by their first key's slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// The `run_id` of the server that holds `key` (random per server start, so it changes when
/// that server restarted and, without persistence, forgot its keys): `INFO server` on the
/// single server, or on a cluster on the primary owning `key`'s slot (only that node's
/// restart matters to the keys there, and a node that is down elsewhere does not make it
/// fail).
pub(crate) async fn server_id(conn: &mut Connection, key: &str) -> RedisResult<String> {
    let mut cmd = redis::cmd("INFO");
    cmd.arg("server");
    let v: Value = match conn {
        Connection::Single(c) => cmd.query_async(c).await?,
        Connection::Cluster(c) => {
            let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
            c.route_command(
                cmd,
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
            )
            .await?
        }
    };
    Ok(ids_of(&v))
}

/// `INFO server` of every server answering: one text for a single server, one per node of a
/// cluster (the client sends it to every node). `doctor` reads the version from it.
pub(crate) async fn info_server(conn: &mut Connection) -> RedisResult<Vec<String>> {
    let v: Value = redis::cmd("INFO").arg("server").query_async(conn).await?;
    let mut texts = Vec::new();
    collect_texts(&v, &mut texts);
    Ok(texts)
}

/// The sorted `run_id`s in an `INFO server` answer (one text, or one per node), joined.
fn ids_of(v: &Value) -> String {
    let mut texts = Vec::new();
    collect_texts(v, &mut texts);
    let mut ids: Vec<String> = texts
        .iter()
        .filter_map(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("run_id:"))
                .map(|s| s.trim().to_string())
        })
        .collect();
    ids.sort();
    ids.join(",")
}

/// The text answers in `v`: itself when it is text, the values of a map (a cluster's
/// answer per node) or the items of an array.
fn collect_texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => out.push(s.clone()),
        Value::Map(pairs) => pairs.iter().for_each(|(_, v)| collect_texts(v, out)),
        Value::Array(items) | Value::Set(items) => items.iter().for_each(|v| collect_texts(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_urls_need_cluster_mode() {
        let two = "redis://127.0.0.1:7001, redis://127.0.0.1:7002";
        assert!(split(two, false).unwrap_err().0.contains("cluster = true"));
        assert_eq!(split(two, true).unwrap().len(), 2);
        assert!(Client::open(two, true, Duration::from_secs(1))
            .unwrap()
            .is_cluster());
        assert!(
            !Client::open("redis://127.0.0.1:1", false, Duration::from_secs(1))
                .unwrap()
                .is_cluster()
        );
    }

    #[test]
    fn bad_lists_are_refused_without_showing_them() {
        for (urls, cluster) in [
            ("", true),
            (" , ", true),
            ("http://:hunter2@h:1", false),
            ("redis://:hunter2@h:1,http://:hunter2@h:2", true),
            ("redis+unix:///tmp/hunter2.sock", true),
        ] {
            let e = split(urls, cluster).unwrap_err();
            assert!(!e.0.contains("hunter2"), "{urls}: {e:?}");
        }
        // Nodes with different passwords do not make one cluster client.
        let e = Client::open(
            "redis://:hunter2@h:1,redis://:other@h:2",
            true,
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert!(!e.0.contains("hunter2"));
    }

    #[test]
    fn server_ids_reads_one_text_or_one_per_node() {
        let text = |id: &str| Value::BulkString(format!("# Server\r\nrun_id:{id}\r\n").into());
        assert_eq!(ids_of(&text("a")), "a");
        let map = Value::Map(vec![
            (Value::SimpleString("n2".into()), text("b")),
            (Value::SimpleString("n1".into()), text("a")),
        ]);
        assert_eq!(ids_of(&map), "a,b");
    }
}
