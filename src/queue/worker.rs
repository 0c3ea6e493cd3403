//! The worker: claims jobs only when the router has room for them, sends them, writes the
//! images to the results store and records everything in the job.
//!
//! # One claim, step by step
//!
//! 1. **Room first.** The worker asks the backend which lanes (class and model) have due
//!    jobs, asks the router for each whether a request of that lane could be admitted now
//!    ([`Router::admission`], a read that reserves nothing), and claims only from lanes with
//!    room. With no room it sleeps until the router says room comes back (at most the poll
//!    interval), so a burst of submissions waits in the store, never as sleeping tasks here.
//!    At most `concurrency` jobs are in the worker at once.
//! 2. **The job's own check.** The claimed job's exact request is checked again; without room
//!    after all it is handed back unsent ([`QueueBackend::release`]); a request no provider
//!    can ever admit fails at once with the router's reason.
//! 3. **Sent is recorded before sending** ([`QueueBackend::mark_sent`], durable), while a
//!    heartbeat task extends the lease. If the router turns the request away before any
//!    provider call, the mark is withdrawn and the job handed back.
//! 4. **Outcome.** Images are written to the results store and the job completes. A refusal
//!    (invalid request, content policy) fails at once with the plain-words explanation. A
//!    failure after which every provider was tried is retried with exponential backoff up to
//!    the job's retry limit; an attempt that may have been billed (sent, no answer) is never
//!    re-sent unless the job allows it.
//!
//! # Shutdown
//!
//! [`Worker::run`] stops claiming when its shutdown future completes, waits up to the grace
//! period for the jobs in hand (they finish as usual), then stops the rest and ends each at
//! once, as the backend's record says, without waiting for its lease to run out: a job whose
//! request was not marked sent is handed back to the queue; one marked sent may have been
//! generated and billed, so it fails as possibly billed, or is queued again as a re-run when
//! the job allows it (what the lease running out would do, only sooner).
//!
//! Maintenance also runs here: every poll the worker ends what time ended
//! ([`QueueBackend::reclaim_expired`]), publishes the depth and oldest-age gauges, and a
//! separate task delivers due callbacks.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::backend::{Claim, QueueBackend, QueueError};
use super::callback::{CallbackConfig, CallbackSender};
use super::job::{split_lane, Job, JobAttempt, JobError, JobId, JobSuccess, ResultLocation};
use super::results::ResultsStore;
use crate::error::Error;
use crate::metrics as m;
use crate::quota::budget::WallClock;
use crate::request::{GenerateRequest, ImageRequest, RequestClass};
use crate::router::{Admission, Router};

/// Default jobs in hand at once.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Default lease length.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Default poll interval (idle claims, maintenance).
pub const DEFAULT_POLL: Duration = Duration::from_millis(250);
/// Default grace period on shutdown.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Default first retry backoff (doubled per retry).
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(2);
/// Default longest retry backoff.
pub const DEFAULT_MAX_RETRY_BACKOFF: Duration = Duration::from_secs(300);

/// Builds a [`Worker`].
#[derive(Debug, Default)]
pub struct WorkerBuilder {
    router: Option<Router>,
    backend: Option<Arc<dyn QueueBackend>>,
    results: Option<Arc<dyn ResultsStore>>,
    concurrency: Option<usize>,
    lease: Option<Duration>,
    heartbeat: Option<Duration>,
    poll: Option<Duration>,
    grace: Option<Duration>,
    id: Option<String>,
    retry_backoff: Option<Duration>,
    max_retry_backoff: Option<Duration>,
    callbacks: Option<CallbackConfig>,
    clock: Option<WallClock>,
}

impl WorkerBuilder {
    /// The router that sends the jobs (required).
    pub fn router(mut self, router: Router) -> Self {
        self.router = Some(router);
        self
    }
    /// The job store (required).
    pub fn backend(mut self, backend: Arc<dyn QueueBackend>) -> Self {
        self.backend = Some(backend);
        self
    }
    /// Where images go (required; e.g. [`FolderStore`](super::FolderStore)).
    pub fn results(mut self, results: Arc<dyn ResultsStore>) -> Self {
        self.results = Some(results);
        self
    }
    /// Jobs in hand at once (default [`DEFAULT_CONCURRENCY`]).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n);
        self
    }
    /// Lease length (default [`DEFAULT_LEASE`]).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }
    /// Heartbeat interval (default a third of the lease).
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = Some(every);
        self
    }
    /// Poll interval (default [`DEFAULT_POLL`]).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = Some(every);
        self
    }
    /// Grace period on shutdown (default [`DEFAULT_GRACE`]).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }
    /// The worker id, the lease owner (default `<host>-<pid>-<random>`).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
    /// First retry backoff and its cap (defaults [`DEFAULT_RETRY_BACKOFF`],
    /// [`DEFAULT_MAX_RETRY_BACKOFF`]).
    pub fn retry_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.retry_backoff = Some(first);
        self.max_retry_backoff = Some(max);
        self
    }
    /// Delivers job callbacks with these settings (default: callbacks delivered unsigned
    /// with [`CallbackConfig::default`]).
    pub fn callbacks(mut self, config: CallbackConfig) -> Self {
        self.callbacks = Some(config);
        self
    }
    /// The wall clock for retry times (default the system's).
    pub fn clock(mut self, clock: WallClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The worker; an error naming the missing or wrong setting.
    pub fn build(self) -> Result<Worker, QueueError> {
        let router = self
            .router
            .ok_or_else(|| QueueError::invalid("router", "is required"))?;
        let backend = self
            .backend
            .ok_or_else(|| QueueError::invalid("backend", "is required"))?;
        let results = self
            .results
            .ok_or_else(|| QueueError::invalid("results", "is required"))?;
        let concurrency = self.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if concurrency == 0 {
            return Err(QueueError::invalid("concurrency", "must be at least 1"));
        }
        let lease = self.lease.unwrap_or(DEFAULT_LEASE);
        if lease < Duration::from_secs(1) {
            return Err(QueueError::invalid("lease", "must be at least 1 s"));
        }
        let heartbeat = self.heartbeat.unwrap_or(lease / 3);
        if heartbeat.is_zero() || heartbeat >= lease {
            return Err(QueueError::invalid(
                "heartbeat",
                "must be more than zero and shorter than the lease",
            ));
        }
        let poll = self.poll.unwrap_or(DEFAULT_POLL);
        if poll.is_zero() {
            return Err(QueueError::invalid(
                "poll_interval",
                "must be more than zero",
            ));
        }
        let id = self.id.unwrap_or_else(default_id);
        if id.is_empty() {
            return Err(QueueError::invalid("id", "must not be empty"));
        }
        let callbacks = CallbackSender::new(self.callbacks.unwrap_or_default())?;
        Ok(Worker {
            inner: Arc::new(Inner {
                router,
                backend,
                results,
                concurrency,
                lease,
                heartbeat,
                poll,
                grace: self.grace.unwrap_or(DEFAULT_GRACE),
                id,
                retry_backoff: self.retry_backoff.unwrap_or(DEFAULT_RETRY_BACKOFF),
                max_retry_backoff: self.max_retry_backoff.unwrap_or(DEFAULT_MAX_RETRY_BACKOFF),
                callbacks,
                clock: self.clock.unwrap_or_else(WallClock::system),
                counts: Counts::default(),
                not_before: Mutex::new(None),
                lanes: Mutex::new(None),
            }),
        })
    }
}

fn default_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
    let r: u32 = rand::random();
    format!("{host}-{}-{r:08x}", std::process::id())
}

/// What a worker did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Jobs claimed.
    pub claimed: u64,
    /// Jobs it completed.
    pub succeeded: u64,
    /// Jobs it failed.
    pub failed: u64,
    /// Jobs it put back for a retry later.
    pub retried: u64,
    /// Jobs it handed back unsent (no room, shutdown).
    pub released: u64,
    /// Jobs whose lease it lost (cancelled, or reclaimed after a stall).
    pub lost: u64,
    /// Callbacks it delivered.
    pub callbacks_delivered: u64,
}

#[derive(Debug, Default)]
struct Counts {
    claimed: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    released: AtomicU64,
    lost: AtomicU64,
    callbacks: AtomicU64,
}

/// Drains a job queue through a router. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Worker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    router: Router,
    backend: Arc<dyn QueueBackend>,
    results: Arc<dyn ResultsStore>,
    concurrency: usize,
    lease: Duration,
    heartbeat: Duration,
    poll: Duration,
    grace: Duration,
    id: String,
    retry_backoff: Duration,
    max_retry_backoff: Duration,
    callbacks: CallbackSender,
    clock: WallClock,
    counts: Counts,
    /// Set when a claimed job found no room after all: no claim before this instant.
    not_before: Mutex<Option<tokio::time::Instant>>,
    /// The lanes with due work, as last read, and when: lanes change rarely, and reading
    /// them counts every due job, so they are read again only after a poll interval or when
    /// a claim found nothing.
    lanes: Mutex<Option<(tokio::time::Instant, Vec<String>)>>,
}

/// What the claim step found.
enum Next {
    Job(Box<Job>),
    Wait(Duration),
}

impl Worker {
    /// A builder.
    pub fn builder() -> WorkerBuilder {
        WorkerBuilder::default()
    }

    /// The worker id (the lease owner).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// What it did so far.
    pub fn report(&self) -> WorkerReport {
        let c = &self.inner.counts;
        WorkerReport {
            claimed: c.claimed.load(Ordering::Relaxed),
            succeeded: c.succeeded.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            released: c.released.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            callbacks_delivered: c.callbacks.load(Ordering::Relaxed),
        }
    }

    /// Runs until `shutdown` completes, then shuts down gracefully (see the module docs).
    /// Backend errors are logged and retried after the poll interval; the worker never ends
    /// by itself.
    pub async fn run<S>(&self, shutdown: S) -> WorkerReport
    where
        S: Future<Output = ()> + Send,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let maint = tokio::spawn(self.clone().maintenance(stop.clone()));
        let sem = Arc::new(Semaphore::new(self.inner.concurrency));
        let mut tasks: JoinSet<()> = JoinSet::new();
        // The jobs in hand, with whether each allows a re-run (for the end of the grace).
        let in_hand: Arc<Mutex<HashMap<JobId, bool>>> = Arc::default();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                biased;
                () = &mut shutdown => break,
                p = sem.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break, // the semaphore is never closed
                },
            };
            let next = match self.next().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(worker = %self.inner.id, error = %e, "claim failed");
                    Next::Wait(self.inner.poll)
                }
            };
            match next {
                Next::Job(job) => {
                    self.inner.counts.claimed.fetch_add(1, Ordering::Relaxed);
                    in_hand.lock().insert(job.id.clone(), job.spec.allow_rerun);
                    let me = self.clone();
                    let in_hand = in_hand.clone();
                    tasks.spawn(async move {
                        let id = job.id.clone();
                        me.run_job(*job).await;
                        in_hand.lock().remove(&id);
                        drop(permit);
                    });
                }
                Next::Wait(d) => {
                    drop(permit);
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(d) => {}
                    }
                }
            }
        }
        // Graceful shutdown: no more claims; finish within the grace period.
        let _ = tokio::time::timeout(self.inner.grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let left: Vec<(JobId, bool)> = in_hand
            .lock()
            .iter()
            .map(|(id, rerun)| (id.clone(), *rerun))
            .collect();
        for (id, allow_rerun) in left {
            self.stop_job(&id, allow_rerun).await;
        }
        stop.store(true, Ordering::SeqCst);
        let _ = maint.await;
        self.report()
    }

    /// Reclaims, gauges and callbacks, every poll interval until `stop`.
    async fn maintenance(self, stop: Arc<AtomicBool>) {
        let inner = &self.inner;
        while !stop.load(Ordering::SeqCst) {
            match inner.backend.reclaim_expired().await {
                Ok(r)
                    if !(r.requeued.is_empty() && r.failed.is_empty() && r.expired.is_empty()) =>
                {
                    tracing::info!(
                        requeued = r.requeued.len(),
                        failed = r.failed.len(),
                        expired = r.expired.len(),
                        "leases and deadlines ran out"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reclaim failed"),
            }
            if let Ok(st) = inner.backend.stats().await {
                publish_stats(&st, now_ms(&inner.clock));
            }
            match inner
                .callbacks
                .deliver_due(inner.backend.as_ref(), &inner.clock, 32)
                .await
            {
                Ok(n) => {
                    inner
                        .counts
                        .callbacks
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(error = %e, "callback delivery failed"),
            }
            tokio::time::sleep(inner.poll).await;
        }
    }

    /// Finds the next job to run, or how long to wait.
    async fn next(&self) -> Result<Next, QueueError> {
        let inner = &self.inner;
        if let Some(at) = *inner.not_before.lock() {
            let now = tokio::time::Instant::now();
            if at > now {
                return Ok(Next::Wait((at - now).min(inner.poll)));
            }
        }
        let cached = inner
            .lanes
            .lock()
            .as_ref()
            .filter(|(at, _)| at.elapsed() < inner.poll)
            .map(|(_, l)| l.clone());
        let lanes = match cached {
            Some(l) => l,
            None => {
                let l: Vec<String> = inner
                    .backend
                    .lanes()
                    .await?
                    .into_iter()
                    .map(|l| l.lane)
                    .collect();
                *inner.lanes.lock() = Some((tokio::time::Instant::now(), l.clone()));
                l
            }
        };
        if lanes.is_empty() {
            return Ok(Next::Wait(inner.poll));
        }
        let mut open = Vec::new();
        let mut soonest = inner.poll;
        for lane in &lanes {
            let (class, model) = split_lane(lane);
            let mut probe = GenerateRequest::new("admission probe");
            probe.model = model.map(str::to_string);
            let class = class.map(|c| RequestClass::new(c.to_string()));
            match inner
                .router
                .admission(&ImageRequest::Generate(probe), class.as_ref())
            {
                // A lane no request can ever be admitted to is claimed too: its jobs fail
                // with the reason instead of waiting forever.
                Admission::Now { .. } | Admission::Never(_) => open.push(lane.clone()),
                Admission::At(d) => soonest = soonest.min(d),
            }
        }
        if open.is_empty() {
            return Ok(Next::Wait(soonest.max(Duration::from_millis(2))));
        }
        let claim = Claim {
            worker: &inner.id,
            lease: inner.lease,
            lanes: Some(&open),
        };
        Ok(match inner.backend.claim(&claim).await? {
            Some(job) => Next::Job(Box::new(job)),
            None => {
                *inner.lanes.lock() = None;
                Next::Wait(Duration::from_millis(5))
            }
        })
    }

    fn now_ms(&self) -> u64 {
        now_ms(&self.inner.clock)
    }

    fn backoff(&self, retries: u32) -> Duration {
        let factor = 1u32.checked_shl(retries).unwrap_or(u32::MAX);
        self.inner
            .retry_backoff
            .saturating_mul(factor)
            .min(self.inner.max_retry_backoff)
    }

    /// Runs one claimed job to its end (or hands it back).
    async fn run_job(&self, job: Job) {
        let inner = &self.inner;
        let b = inner.backend.as_ref();
        let w = inner.id.as_str();
        let id = job.id.clone();
        let request = match job.spec.request.to_request() {
            Ok(r) => r,
            Err(e) => {
                let err = JobError::new(
                    "invalid",
                    e.to_string(),
                    "The stored request could not be read back, so it was not sent. Submit it again.",
                );
                self.end_failed(&id, err, Vec::new()).await;
                return;
            }
        };
        let class = job.spec.class.clone().map(RequestClass::new);
        match inner.router.admission(&request, class.as_ref()) {
            Admission::Now { .. } => {}
            Admission::At(d) => {
                *inner.not_before.lock() = Some(tokio::time::Instant::now() + d);
                self.hand_back(&id, None).await;
                return;
            }
            Admission::Never(reason) => {
                let err = JobError::new(
                    "not_admissible",
                    reason.clone(),
                    format!("No configured provider can ever take this request as it is ({reason}), so it was not sent. Change the request (model, size, n) or the providers."),
                );
                self.end_failed(&id, err, Vec::new()).await;
                return;
            }
        }

        // Heartbeat while the job is in hand.
        let lost = Arc::new(AtomicBool::new(false));
        let hb = {
            let backend = inner.backend.clone();
            let (id, w) = (id.clone(), w.to_string());
            let (every, lease, lost) = (inner.heartbeat, inner.lease, lost.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match backend.heartbeat(&id, &w, lease).await {
                        Ok(()) => {}
                        Err(QueueError::LeaseLost { .. }) => {
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(e) => tracing::warn!(job = %id, error = %e, "heartbeat failed"),
                    }
                }
            })
        };
        let _hb = AbortOnDrop(hb);

        // The non-idempotent rule: durably "sent" before sending.
        match b.mark_sent(&id, w).await {
            Ok(()) => {}
            Err(QueueError::LeaseLost { .. }) => {
                inner.counts.lost.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                // Unknown whether the mark was stored: leave the job to its lease (if the
                // mark was stored it ends as possibly billed, which is only conservative).
                tracing::warn!(job = %id, error = %e, "could not mark sent; not sending");
                return;
            }
        }
        let run = job.run();
        let result = inner.router.send_as(request, class.as_ref()).await;
        if lost.load(Ordering::SeqCst) {
            tracing::warn!(job = %id, "lease lost while the request was in flight");
        }
        match result {
            Ok(resp) => {
                let attempts: Vec<JobAttempt> = resp
                    .attempts
                    .iter()
                    .map(|a| JobAttempt::from_attempt(run, a))
                    .collect();
                let mut results: Vec<ResultLocation> = Vec::with_capacity(resp.images.len());
                for (i, img) in resp.images.iter().enumerate() {
                    match self.put_with_retries(&id, i, img).await {
                        Ok(loc) => results.push(loc),
                        Err(e) => {
                            let err = JobError::new(
                                "results_store",
                                format!("image {i} could not be written: {e}"),
                                "The provider generated (and billed) the images, but they could not be written to the results store. Check the store (disk space, permissions); the job is not re-sent automatically.",
                            );
                            self.end_failed(&id, err, attempts).await;
                            return;
                        }
                    }
                }
                let success = JobSuccess {
                    provider: resp.provider.clone(),
                    model: resp.model.clone(),
                    usage: resp.usage,
                    cost_usd: resp.cost_usd,
                    results,
                    attempts,
                };
                match b.complete(&id, w, success).await {
                    Ok(_) => {
                        inner.counts.succeeded.fetch_add(1, Ordering::Relaxed);
                        m_job("succeeded");
                    }
                    Err(e) => {
                        inner.counts.lost.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(job = %id, error = %e, "could not record success");
                    }
                }
            }
            Err(err) => self.on_error(&job, err, run).await,
        }
    }

    async fn on_error(&self, job: &Job, err: Error, run: u32) {
        let inner = &self.inner;
        let id = &job.id;
        let attempts: Vec<JobAttempt> = err
            .attempts()
            .iter()
            .map(|a| JobAttempt::from_attempt(run, a))
            .collect();
        if attempts.is_empty() && matches!(err, Error::Exhausted { .. }) {
            // Turned away before any provider call (no room after all): nothing was sent.
            match inner.backend.unmark_sent(id, &inner.id).await {
                Ok(()) => {
                    let wait = Duration::from_millis(50);
                    *inner.not_before.lock() = Some(tokio::time::Instant::now() + wait);
                    self.hand_back(id, None).await;
                }
                Err(e) => tracing::warn!(job = %id, error = %e, "could not withdraw the sent mark"),
            }
            return;
        }
        let jerr = JobError::from_router_error(&err);
        let billed = attempts.iter().any(|a| a.possibly_billed);
        let retryable = matches!(err, Error::Exhausted { .. });
        if billed && !job.spec.allow_rerun {
            let e = JobError::new(
                "possibly_billed",
                format!("a provider call got no answer after it was sent, so the image may have been generated and billed: {}", jerr.message),
                format!("{}\nThe job was not sent again, to avoid paying twice; submit it again (or set allow_rerun) to re-run it.", jerr.explanation),
            );
            self.end_failed(id, e, attempts).await;
        } else if retryable && job.retries < job.spec.max_retries {
            let at = self.now_ms().saturating_add(
                u64::try_from(self.backoff(job.retries).as_millis()).unwrap_or(u64::MAX),
            );
            match inner
                .backend
                .retry_later(id, &inner.id, at, jerr, attempts)
                .await
            {
                Ok(()) => {
                    inner.counts.retried.fetch_add(1, Ordering::Relaxed);
                    m_job("retried");
                }
                Err(e) => {
                    inner.counts.lost.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(job = %id, error = %e, "could not schedule the retry");
                }
            }
        } else {
            let mut e = jerr;
            if retryable {
                e.message = format!("{} (after {} retries)", e.message, job.retries);
            }
            self.end_failed(id, e, attempts).await;
        }
    }

    /// Ends a job still in hand when the grace period is over (its task was stopped). The
    /// backend's record decides, not what the stopped task got to: a job whose "sent" mark
    /// is not stored is handed back unsent ([`QueueBackend::release`]; a mark still being
    /// written then finds the lease gone and is refused, so nothing is sent). A job marked
    /// sent may have been generated and billed: it fails as possibly billed at once, or,
    /// when it allows a re-run, goes back to the queue as a re-run (as its lease running out
    /// would do, without waiting for that).
    async fn stop_job(&self, id: &JobId, allow_rerun: bool) {
        let inner = &self.inner;
        match inner.backend.release(id, &inner.id, None).await {
            Ok(()) => {
                inner.counts.released.fetch_add(1, Ordering::Relaxed);
                m_job("released");
                return;
            }
            Err(QueueError::WrongState { .. }) => {}
            Err(QueueError::LeaseLost { .. }) => return, // ended or reclaimed meanwhile
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "could not hand back on shutdown; its lease will run out");
                return;
            }
        }
        if !allow_rerun {
            let e = JobError::new(
                "possibly_billed",
                "the worker shut down after sending this job's request and the grace period ended before the answer; the image may have been generated and billed",
                "The request reached the provider, but the worker was shut down (its grace period ran out) before the answer arrived, so the provider may have generated and billed the image. The attempt's details were cut off with it. It was not sent again, to avoid paying twice. Submit it again (or set allow_rerun on the job) if you want it re-run.",
            );
            self.end_failed(id, e, Vec::new()).await;
            return;
        }
        let e = JobError::new(
            "shutdown",
            "the worker shut down after sending this job's request; re-run, as the job allows",
            "The worker was shut down before the provider answered. The job allows a re-run, so it is queued again (the first request may still have been generated and billed).",
        );
        match inner
            .backend
            .retry_later(id, &inner.id, self.now_ms(), e, Vec::new())
            .await
        {
            Ok(()) => {
                inner.counts.retried.fetch_add(1, Ordering::Relaxed);
                m_job("retried");
            }
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "could not re-queue on shutdown; its lease will run out")
            }
        }
    }

    async fn end_failed(&self, id: &JobId, err: JobError, attempts: Vec<JobAttempt>) {
        let inner = &self.inner;
        match inner.backend.fail(id, &inner.id, err, attempts).await {
            Ok(_) => {
                inner.counts.failed.fetch_add(1, Ordering::Relaxed);
                m_job("failed");
            }
            Err(e) => {
                inner.counts.lost.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(job = %id, error = %e, "could not record the failure");
            }
        }
    }

    async fn hand_back(&self, id: &JobId, not_before_ms: Option<u64>) {
        let inner = &self.inner;
        match inner.backend.release(id, &inner.id, not_before_ms).await {
            Ok(()) => {
                inner.counts.released.fetch_add(1, Ordering::Relaxed);
                m_job("released");
            }
            Err(e) => tracing::warn!(job = %id, error = %e, "could not hand the job back"),
        }
    }

    async fn put_with_retries(
        &self,
        id: &JobId,
        index: usize,
        img: &crate::response::Image,
    ) -> Result<ResultLocation, String> {
        let mut last = String::new();
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            match self.inner.results.put(id, index, img).await {
                Ok(loc) => return Ok(loc),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

fn m_job(outcome: &'static str) {
    metrics::counter!(m::QUEUE_JOBS_TOTAL, "outcome" => outcome).increment(1);
}

/// Sets the depth and oldest-age gauges from `stats` at `now_ms`.
pub(crate) fn publish_stats(stats: &super::QueueStats, now_ms: u64) {
    metrics::gauge!(m::QUEUE_DEPTH).set(stats.queued as f64);
    let age = stats
        .oldest_queued_ms
        .map(|t| now_ms.saturating_sub(t) as f64 / 1000.0)
        .unwrap_or(0.0);
    metrics::gauge!(m::QUEUE_OLDEST_AGE).set(age);
}

/// Unix ms now on `clock`.
pub(crate) fn now_ms(clock: &WallClock) -> u64 {
    clock
        .now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
