//! The backend trait: the few atomic steps a durable job store must offer, so the worker,
//! the handle and the command line work the same on SQLite (one machine) and Redis (many).
//!
//! # Contract (what the conformance suite in `tests/it/queue/conformance.rs` checks)
//!
//! * **Every call is one atomic step** on the engine (an SQLite transaction, a Redis script):
//!   two workers never claim the same job, and an idempotency key never makes two jobs, also
//!   across processes and hosts.
//! * **Claiming is rate-aware without loading jobs.** Jobs are grouped in *lanes* (their
//!   request class and model, [`lane_of`](super::lane_of)); a worker asks [`QueueBackend::lanes`]
//!   which lanes have due work, asks the router which of those have room now, and claims only
//!   from those ([`Claim::lanes`]). Within the allowed lanes a claim takes the highest priority,
//!   then the oldest submission. Jobs therefore wait in the store, not in worker memory.
//! * **Leases.** A claim sets `running` with a lease (owner, expiry). [`heartbeat`] extends
//!   it. Every call that changes a running job names the worker and fails with
//!   [`QueueError::LeaseLost`] when the job is no longer leased to it (the lease ran out and
//!   the job was reclaimed, or it was cancelled): a worker that lost its lease must drop the
//!   job without writing anything.
//! * **The non-idempotent rule.** Before a worker sends a job's request it calls
//!   [`mark_sent`] and waits for it to be durable. [`reclaim_expired`] puts a job whose lease
//!   ran out back in the queue only if it was never sent (or it allows a re-run); a sent job
//!   ends `failed` with [`JobError::possibly_billed`](super::JobError::possibly_billed).
//! * **Time** is wall-clock Unix ms from the backend's injected
//!   [`WallClock`](crate::budget::WallClock), so tests move it by hand.
//!
//! [`heartbeat`]: QueueBackend::heartbeat
//! [`mark_sent`]: QueueBackend::mark_sent
//! [`reclaim_expired`]: QueueBackend::reclaim_expired

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use super::job::{CallbackState, Job, JobAttempt, JobError, JobId, JobState, JobSuccess, NewJob};

/// A backend call that failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The engine failed (I/O, SQL, network, a corrupt record).
    #[error("job queue backend: {0}")]
    Backend(String),
    /// No job with this id.
    #[error("no job with id {0}")]
    NotFound(JobId),
    /// The job is not (any more) leased to this worker: drop it.
    #[error("job {id} is no longer leased to worker {worker}")]
    LeaseLost {
        /// The job.
        id: JobId,
        /// The worker that asked.
        worker: String,
    },
    /// A submitted job or a setting is wrong.
    #[error("job queue: `{field}` {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The operation does not apply to the job's current state (e.g. cancelling a job whose
    /// request was already sent).
    #[error("job {id} is {state}: {message}")]
    WrongState {
        /// The job.
        id: JobId,
        /// Its state.
        state: JobState,
        /// Why the operation does not apply.
        message: String,
    },
}

impl QueueError {
    /// An [`QueueError::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        QueueError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A [`QueueError::Backend`].
    pub fn backend(message: impl fmt::Display) -> Self {
        QueueError::Backend(message.to_string())
    }
}

/// What [`QueueBackend::submit`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// The job's id.
    pub id: JobId,
    /// `false` when the idempotency key named an existing job (returned instead).
    pub created: bool,
}

/// A claim request.
#[derive(Clone, Debug)]
pub struct Claim<'a> {
    /// The worker's id (lease owner).
    pub worker: &'a str,
    /// Lease length.
    pub lease: Duration,
    /// Lanes the worker may take from now (those the router has room for); `None`: any.
    pub lanes: Option<&'a [String]>,
}

/// A lane with due work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaneDepth {
    /// The lane key.
    pub lane: String,
    /// Queued jobs due now in it.
    pub due: u64,
    /// The highest priority among them.
    pub top_priority: i32,
}

/// Counts for metrics and status pages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Queued jobs (due or waiting for their retry time).
    pub queued: u64,
    /// Running jobs.
    pub running: u64,
    /// Submission time of the oldest queued job (Unix ms).
    pub oldest_queued_ms: Option<u64>,
}

/// What [`QueueBackend::reclaim_expired`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Jobs whose lease ran out, never sent (or allowing a re-run): queued again.
    pub requeued: Vec<JobId>,
    /// Jobs whose lease ran out after their request was sent: failed, possibly billed.
    pub failed: Vec<JobId>,
    /// Queued jobs past their deadline: expired.
    pub expired: Vec<JobId>,
}

/// A durable job store. Object safe: used as `Arc<dyn QueueBackend>`.
#[async_trait]
pub trait QueueBackend: Send + Sync + fmt::Debug {
    /// Stores a new queued job, or returns the job its idempotency key already names
    /// (atomically: one key, one job). Validates the job first ([`NewJob::validate`]).
    async fn submit(&self, job: NewJob) -> Result<Submitted, QueueError>;

    /// Lanes with queued jobs due now (their retry time passed), highest priority first.
    async fn lanes(&self) -> Result<Vec<LaneDepth>, QueueError>;

    /// Takes the due queued job of highest priority, then oldest, among `claim.lanes`: sets it
    /// `running`, leased to `claim.worker` until now + `claim.lease`, `sent = false`, and its
    /// start time if it had none. `None` when there is none. A queued job past its deadline
    /// is never claimed (it ends `expired`).
    async fn claim(&self, claim: &Claim<'_>) -> Result<Option<Job>, QueueError>;

    /// Extends the lease to now + `lease`. [`QueueError::LeaseLost`] when it is not held.
    async fn heartbeat(&self, id: &JobId, worker: &str, lease: Duration) -> Result<(), QueueError>;

    /// Records durably that the job's request is about to be sent (the non-idempotent rule).
    /// [`QueueError::LeaseLost`] when the lease is not held (e.g. cancelled): do not send.
    async fn mark_sent(&self, id: &JobId, worker: &str) -> Result<(), QueueError>;

    /// Withdraws [`mark_sent`](QueueBackend::mark_sent) when the router turned the request
    /// away before any provider call (no room after all: nothing was sent, the error lists
    /// no attempt), so the job may be handed back with [`release`](QueueBackend::release).
    /// [`QueueError::LeaseLost`] when the lease is not held.
    async fn unmark_sent(&self, id: &JobId, worker: &str) -> Result<(), QueueError>;

    /// Ends the job `succeeded` with its result; its callback becomes pending if it has a URL.
    async fn complete(
        &self,
        id: &JobId,
        worker: &str,
        success: JobSuccess,
    ) -> Result<Job, QueueError>;

    /// Ends the job `failed` with `error` (this run's `attempts` appended).
    async fn fail(
        &self,
        id: &JobId,
        worker: &str,
        error: JobError,
        attempts: Vec<JobAttempt>,
    ) -> Result<Job, QueueError>;

    /// Puts the job back in the queue after a retryable failure, not to be claimed before
    /// `at_ms`: `retries + 1`, `sent = false`, lease cleared, `error` kept as the last error.
    async fn retry_later(
        &self,
        id: &JobId,
        worker: &str,
        at_ms: u64,
        error: JobError,
        attempts: Vec<JobAttempt>,
    ) -> Result<(), QueueError>;

    /// Hands a claimed job back unsent (no room after all, or a graceful shutdown): queued
    /// again, not before `not_before_ms`, retry count unchanged. [`QueueError::WrongState`]
    /// when it was already marked sent (the caller must end it instead).
    async fn release(
        &self,
        id: &JobId,
        worker: &str,
        not_before_ms: Option<u64>,
    ) -> Result<(), QueueError>;

    /// Cancels a queued job, or a running one whose request was not sent yet (its worker
    /// then finds its lease lost). A job already sent or ended is not changed:
    /// [`QueueError::WrongState`]. Returns the cancelled record.
    async fn cancel(&self, id: &JobId) -> Result<Job, QueueError>;

    /// The job's record, `None` when there is no such job.
    async fn status(&self, id: &JobId) -> Result<Option<Job>, QueueError>;

    /// Jobs in `state` (any when `None`), oldest submission first, at most `limit`.
    async fn list(&self, state: Option<JobState>, limit: usize) -> Result<Vec<Job>, QueueError>;

    /// Ends what time ended: running jobs whose lease ran out (never sent or allowing a
    /// re-run → queued, `retries + 1` for a re-run; sent → failed, possibly billed) and queued
    /// jobs past their deadline (→ expired).
    async fn reclaim_expired(&self) -> Result<Reclaimed, QueueError>;

    /// Depth and age figures.
    async fn stats(&self) -> Result<QueueStats, QueueError>;

    /// Sets the job's callback delivery state.
    async fn set_callback_state(&self, id: &JobId, state: CallbackState) -> Result<(), QueueError>;

    /// Ended jobs whose callback is pending and due now, at most `limit`; each one's next try
    /// is pushed `hold` into the future in the same step, so two workers do not deliver the
    /// same callback at once (a worker that dies mid-delivery leaves it due again later).
    async fn due_callbacks(&self, hold: Duration, limit: usize) -> Result<Vec<Job>, QueueError>;
}
