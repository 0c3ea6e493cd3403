//! [`JobQueue`]: the application's handle on a job store — submit, status, list, cancel, wait
//! — independent of the backend.

use std::sync::Arc;
use std::time::Duration;

use super::backend::{QueueBackend, QueueError, QueueStats, Submitted};
use super::job::{Job, JobId, JobState, NewJob};
use crate::quota::budget::WallClock;

/// First wait between status reads in [`JobQueue::wait`] (doubled up to [`WAIT_POLL_MAX`]).
pub const WAIT_POLL_MIN: Duration = Duration::from_millis(20);
/// Longest wait between status reads in [`JobQueue::wait`].
pub const WAIT_POLL_MAX: Duration = Duration::from_millis(500);

/// A handle on a job store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct JobQueue {
    backend: Arc<dyn QueueBackend>,
    clock: WallClock,
}

impl JobQueue {
    /// A handle on `backend`, on the system clock.
    pub fn new(backend: Arc<dyn QueueBackend>) -> Self {
        Self::with_clock(backend, WallClock::system())
    }

    /// A handle on `backend` reading ages on `clock`.
    pub fn with_clock(backend: Arc<dyn QueueBackend>, clock: WallClock) -> Self {
        Self { backend, clock }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn QueueBackend> {
        &self.backend
    }

    /// Submits a job (see [`QueueBackend::submit`]: an idempotency key gives one job).
    pub async fn submit(&self, job: NewJob) -> Result<Submitted, QueueError> {
        self.backend.submit(job).await
    }

    /// The job's record; [`QueueError::NotFound`] when there is none.
    pub async fn status(&self, id: &JobId) -> Result<Job, QueueError> {
        self.backend
            .status(id)
            .await?
            .ok_or_else(|| QueueError::NotFound(id.clone()))
    }

    /// Jobs in `state` (any when `None`), oldest first, at most `limit`.
    pub async fn list(
        &self,
        state: Option<JobState>,
        limit: usize,
    ) -> Result<Vec<Job>, QueueError> {
        self.backend.list(state, limit).await
    }

    /// Cancels a job that was not sent yet (see [`QueueBackend::cancel`]).
    pub async fn cancel(&self, id: &JobId) -> Result<Job, QueueError> {
        self.backend.cancel(id).await
    }

    /// Waits until the job has ended or `timeout` passed, and returns its record then (check
    /// [`JobState::is_final`]: after a time-out the job may still be queued or running).
    pub async fn wait(&self, id: &JobId, timeout: Duration) -> Result<Job, QueueError> {
        let end = tokio::time::Instant::now() + timeout;
        let mut pause = WAIT_POLL_MIN;
        loop {
            let job = self.status(id).await?;
            let now = tokio::time::Instant::now();
            if job.state.is_final() || now >= end {
                return Ok(job);
            }
            tokio::time::sleep(pause.min(end - now)).await;
            pause = (pause * 2).min(WAIT_POLL_MAX);
        }
    }

    /// Depth and age figures; also sets the `image_router_queue_depth` and
    /// `image_router_queue_oldest_age_seconds` gauges.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let st = self.backend.stats().await?;
        super::worker::publish_stats(&st, super::worker::now_ms(&self.clock));
        Ok(st)
    }
}
