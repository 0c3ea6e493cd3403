//! The one connection every store of a factory shares (to a single server or a cluster,
//! see `src/redis_conn.rs`), made on first use within the time-out, and the bounded queue
//! of background jobs (releases, holds, refreshes).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, OnceCell};

use super::RedisConfig;
use crate::redis_conn::{Client, Connection};
use crate::router::store::StoreError;

/// How many releases, holds and cache refreshes may wait for the background task. Past it
/// a release or hold is not queued (a warning is logged): its reservation then ends by its
/// time-to-live, as held (the conservative end), and a refresh is simply skipped.
pub const QUEUE_BOUND: usize = 4096;
/// How often the background task refreshes the cache of every store (real time).
pub(super) const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// A store whose cache the background task refreshes periodically.
pub(super) trait Refresh: Send + Sync {
    /// Queues a refresh of (some of) the store's cached windows; never waits.
    fn refresh(self: Arc<Self>);
}

type Registry = Arc<Mutex<Vec<Weak<dyn Refresh>>>>;

pub(super) type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The connection and queue every store of one factory shares.
pub(crate) struct Link {
    pub(super) config: RedisConfig,
    client: Client,
    conn: OnceCell<Connection>,
    queue: OnceLock<mpsc::Sender<Job>>,
    stores: Registry,
}

impl Link {
    pub(super) fn timeout(&self) -> Duration {
        self.config.timeout_duration()
    }

    /// The connection, made on first use within the time-out (a failed attempt is retried
    /// by the next call).
    pub(super) async fn connection(&self) -> Result<Connection, StoreError> {
        let timeout = self.timeout();
        let make = || self.client.connect(timeout);
        match tokio::time::timeout(timeout, self.conn.get_or_try_init(make)).await {
            Ok(Ok(c)) => Ok(c.clone()),
            Ok(Err(e)) => Err(StoreError::new(format!(
                "redis: cannot connect: {}",
                crate::redact::text(&e.to_string())
            ))),
            Err(_) => Err(StoreError::new(format!(
                "redis: no connection within {} ms",
                timeout.as_millis()
            ))),
        }
    }

    /// Registers a store for the periodic refresh (the registry holds it weakly).
    pub(super) fn register(&self, store: Weak<dyn Refresh>) {
        self.stores.lock().push(store);
    }

    /// Starts the background task (on the current tokio runtime) if it is not running: it
    /// runs queued jobs one after the other and, every [`REFRESH_EVERY`], asks each live
    /// store to refresh its cache. It ends when the link (every store and the factory) is
    /// dropped.
    pub(super) fn start_queue(&self) {
        self.queue.get_or_init(|| {
            let (tx, mut rx) = mpsc::channel::<Job>(QUEUE_BOUND);
            let stores = Arc::clone(&self.stores);
            tokio::spawn(async move {
                let first = tokio::time::Instant::now() + REFRESH_EVERY;
                let mut tick = tokio::time::interval_at(first, REFRESH_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        job = rx.recv() => match job {
                            Some(job) => job.await,
                            None => break,
                        },
                        _ = tick.tick() => {
                            let live: Vec<Arc<dyn Refresh>> = {
                                let mut s = stores.lock();
                                s.retain(|w| w.strong_count() > 0);
                                s.iter().filter_map(Weak::upgrade).collect()
                            };
                            for store in live {
                                store.refresh();
                            }
                        }
                    }
                }
            });
            tx
        });
    }

    /// Queues `job`; `false` when the queue is full or was never started.
    pub(super) fn enqueue(&self, job: Job) -> bool {
        match self.queue.get() {
            Some(tx) => tx.try_send(job).is_ok(),
            None => match tokio::runtime::Handle::try_current() {
                Ok(_) => {
                    self.start_queue();
                    self.queue.get().is_some_and(|tx| tx.try_send(job).is_ok())
                }
                Err(_) => false,
            },
        }
    }
}

impl Link {
    pub(super) fn new(config: RedisConfig, client: Client) -> Self {
        Self {
            config,
            client,
            conn: OnceCell::new(),
            queue: OnceLock::new(),
            stores: Arc::new(Mutex::new(Vec::new())),
        }
    }
}
