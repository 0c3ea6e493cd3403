//! Durable image jobs: accept any number of requests, drain them at the rate the accounts
//! allow (feature `queue`, on with `cli`).
//!
//! An application [`submit`](QueueBackend::submit)s a [`NewJob`] (a generation or an edit,
//! its input images stored with it) and gets a [`JobId`]; workers claim jobs only when the
//! router has room for them, send them, write the images to a results store and record what
//! happened; the application asks for the job's [`status`](QueueBackend::status), lists,
//! cancels or waits. Backends: SQLite (one file, one machine, zero set-up) and Redis (many
//! machines sharing one queue and one account's limits).
//!
//! # Why not apalis
//!
//! apalis 1.0 (with `apalis-sqlite` and `apalis-redis`) was the first candidate. It does not
//! fit three requirements of this queue, so the backends are written on the engines' own
//! primitives (SQLite transactions through `rusqlite`; Redis scripts) instead:
//!
//! * **Rate-aware claiming.** An apalis worker polls its storage and buffers fetched tasks
//!   before its service (and any rate-limit layer) sees them; there is no way to say "only
//!   take a job of this class and model, and only if the router has room now". Here a claim
//!   names the lanes with room ([`Claim::lanes`]), so jobs wait in the store, not as sleeping
//!   tasks in worker memory.
//! * **The non-idempotent rule.** An image request that was sent may have been billed; apalis
//!   re-enqueues orphaned tasks whatever they did. Here a worker records "sent" durably before
//!   sending ([`QueueBackend::mark_sent`]) and an orphaned job that was sent ends failed,
//!   "may have been generated and billed", unless it allows a re-run.
//! * **Status queries** with the attempt trace, provider, cost and result locations, and an
//!   idempotency key that maps to one job atomically: apalis stores an opaque task payload
//!   and its own status columns, so all of this would live beside it anyway.
//!
//! apalis-sqlite also brings `sqlx` (a second SQLite stack and its macros) where the queue
//! needs a dozen statements.
//!
//! # Files
//!
//! * `job.rs` — the record ([`Job`], [`NewJob`], [`JobState`]);
//! * `backend.rs` — the trait every backend implements ([`QueueBackend`]) and its contract;
//! * `sqlite.rs` — the embedded backend ([`SqliteBackend`]);
//! * `redis/` — the backend shared by hosts (`RedisBackend`, feature `redis`);
//! * `worker.rs` — [`Worker`]: rate-aware claims, leases, the non-idempotent rule, retries,
//!   graceful shutdown;
//! * `results.rs` — where images go ([`ResultsStore`], [`FolderStore`]);
//! * `callback.rs` — signed completion callbacks;
//! * `handle.rs` — [`JobQueue`], the application's handle.

mod backend;
pub mod callback;
mod handle;
mod job;
#[cfg(feature = "redis")]
mod redis;
mod results;
mod sqlite;
mod worker;

#[cfg(feature = "redis")]
pub use self::redis::{
    RedisBackend, RedisQueueOptions, DEFAULT_RECLAIM_BATCH, DEFAULT_REDIS_TIMEOUT,
};
pub use backend::{Claim, LaneDepth, QueueBackend, QueueError, QueueStats, Reclaimed, Submitted};
pub use callback::{CallbackConfig, CallbackSender, SIGNATURE_HEADER};
pub use handle::{JobQueue, WAIT_POLL_MAX, WAIT_POLL_MIN};
pub use job::{
    default_priority, lane_of, split_lane, CallbackState, Job, JobAttempt, JobDecodeError,
    JobError, JobId, JobRequest, JobState, JobSuccess, Lease, NewJob, ResultLocation, StoredEdit,
    StoredImage, DEFAULT_MAX_RETRIES, MAX_CALLBACK_URL_BYTES, MAX_IDEMPOTENCY_KEY_BYTES,
};
pub use results::{FolderStore, ResultsStore};
pub use sqlite::{system_time, SqliteBackend, SqliteOptions};
pub use worker::{
    Worker, WorkerBuilder, WorkerReport, DEFAULT_CONCURRENCY, DEFAULT_GRACE, DEFAULT_LEASE,
    DEFAULT_MAX_RETRY_BACKOFF, DEFAULT_POLL, DEFAULT_RETRY_BACKOFF,
};
