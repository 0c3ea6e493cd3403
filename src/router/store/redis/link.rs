//! The one connection every store of a factory shares, made on first use within the
//! time-out, and the bounded queue of background jobs (releases, holds, refreshes).

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, OnceCell};

use super::RedisConfig;
use crate::router::store::StoreError;

/// How many releases, holds and cache refreshes may wait for the background task. Past it
/// a release or hold is not queued (a warning is logged): its reservation then ends by its
/// time-to-live, as held (the conservative end), and a refresh is simply skipped.
pub const QUEUE_BOUND: usize = 4096;
pub(super) type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The connection and queue every store of one factory shares.
pub(crate) struct Link {
    pub(super) config: RedisConfig,
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    queue: OnceLock<mpsc::Sender<Job>>,
}

impl Link {
    pub(super) fn timeout(&self) -> Duration {
        self.config.timeout_duration()
    }

    /// The connection, made on first use within the time-out (a failed attempt is retried
    /// by the next call).
    pub(super) async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let timeout = self.timeout();
        let make = || async {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1);
            ConnectionManager::new_with_config(self.client.clone(), config).await
        };
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

    /// Starts the background task (on the current tokio runtime) if it is not running.
    pub(super) fn start_queue(&self) {
        self.queue.get_or_init(|| {
            let (tx, mut rx) = mpsc::channel::<Job>(QUEUE_BOUND);
            tokio::spawn(async move {
                while let Some(job) = rx.recv().await {
                    job.await;
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
    pub(super) fn new(config: RedisConfig, client: redis::Client) -> Self {
        Self {
            config,
            client,
            conn: OnceCell::new(),
            queue: OnceLock::new(),
        }
    }
}
