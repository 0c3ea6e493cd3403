//! The Redis backend (features `queue` and `redis`): one queue shared by workers on several
//! hosts, on the same server as the router's shared limits.
//!
//! ```no_run
//! use std::sync::Arc;
//! use image_router::queue::{NewJob, QueueBackend, RedisBackend};
//! use image_router::store::redis::RedisConfig;
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let q: Arc<dyn QueueBackend> = Arc::new(RedisBackend::new(RedisConfig::from_env("REDIS_URL")?)?);
//! let job = q.submit(NewJob::new(image_router::GenerateRequest::new("a red fox"))).await?;
//! println!("{}", job.id);
//! # Ok(()) }
//! ```
//!
//! # Why scripts over hashes and sorted sets, not streams
//!
//! Redis streams with a consumer group deliver entries in arrival order to whoever reads
//! next, and reclaim pending entries by idle time (`XAUTOCLAIM`). The queue's contract needs
//! more than that: a claim takes the highest *priority* first, and only from the lanes the
//! router has room for now ([`Claim::lanes`](super::Claim)); a job waits for a retry time;
//! a reclaimed job's fate depends on whether its request was sent; status, list and cancel
//! address any job by id. A stream would need a side index for each of these, kept in step
//! by the same scripts, so the scripts work on the primitives directly:
//!
//! * each job is a **hash** (`job:<id>`) holding its record as fields;
//! * each lane has a **sorted set of claimable jobs** (`ready:<lane>`). All members score 0
//!   and the member is `ord`: 8 hex digits of `i32::MAX − priority`, 16 of the submission
//!   time, then the id, so `ZRANGEBYLEX … LIMIT 0 1` is the lane's next job, exactly in the
//!   order the SQLite backend uses (priority, then age, then id). A score could not hold it:
//!   priority (32 bits) and a millisecond time (41 bits) do not fit a double's 53;
//! * `delayed` (retry times), `deadlines`/`overdue`, `leases` (by expiry), `cb` (callbacks
//!   due) are sorted sets scored by time, `st:<state>` and `all` sorted sets by submission
//!   time serve `list` and the figures, and `idem:<key>` strings (`SET NX`) map an
//!   idempotency key to its job;
//! * every [`QueueBackend`] call is **one Lua script** (`*.lua` beside this file, each
//!   prefixed with `common.lua`, run with `EVALSHA` through `redis::Script`), so the check
//!   and the change are one atomic step on the server: two workers on two hosts never claim
//!   one job, fifty concurrent submissions with one key make one job, a lease check and the
//!   write it guards cannot interleave with a reclaim or a cancel. `status` is a single
//!   `HGETALL`.
//!
//! What only Rust reads (the submitted job, attempts, usage, cost, results, error) is JSON
//! text in the hash, written by `serde_json` and never parsed by a script; the fields the
//! scripts decide on (state, lane, priority, times, lease, sent, callback state) are plain.
//!
//! Before writing this, apalis-redis was checked (see the [queue module](super) for why
//! apalis does not fit), and the crate's own store scripts (`src/router/store/redis/`)
//! were the model for the layout.
//!
//! # Keys
//!
//! Every key starts with the hash tag `{prefix:queue}` (prefix: [`RedisConfig::prefix`],
//! default `image-router`), so all of them live in one hash slot: the scripts receive the
//! tag as their one declared key and build the others from it, which Redis Cluster and
//! Valkey accept because they hash to the same slot. One queue is therefore served by one
//! node of a cluster (as a queue must be, to be atomic). The connection is the crate's
//! single-server or cluster connection (`src/redis_conn.rs`, chosen by
//! [`RedisConfig::cluster`]): on a cluster every script and the `HGETALL` of `status` go to
//! the primary owning the queue's slot, since the first (and only declared) key of each is
//! the tag or a key under it. The scripts' other keys are built from the tag inside the
//! script: Redis Cluster accepts keys a script did not declare as long as they hash to the
//! slot of the declared ones on the node that runs it, which the shared tag guarantees
//! (the tests run the contract suite on a three-node cluster).
//!
//! Housekeeping runs inside the claim and lanes scripts: jobs whose retry time came are moved
//! to their ready set, and queued jobs whose deadline passed out of it, at most 1,000 of each
//! per call (bounding a script's run time; the next call moves the rest). A claim also checks
//! the deadline of the job it is about to take, so a past-deadline job is never claimed even
//! behind a larger backlog; `lanes` may count such a job as due until a call has moved it.
//!
//! # Time
//!
//! Times are wall-clock Unix ms from the backend's injected [`WallClock`], passed to every
//! script, as the SQLite backend does (tests move a `ManualClock`). Workers on several hosts
//! decide lease expiry with their own clocks: keep them synchronised (NTP) well within the
//! lease length. A job's retry time and deadline are decided the same way.
//!
//! # Time-outs
//!
//! No connection is made by [`RedisBackend::new`]; the first call connects. Every call is
//! bounded by [`RedisQueueOptions::timeout`] (default [`DEFAULT_REDIS_TIMEOUT`], longer than the
//! store's 50 ms because a submission may carry input images; the [`RedisConfig`]'s own
//! time-out is meant for the router's hot path and is not used here). A call that times out
//! may still have run on the server; every step is safe to see twice where it matters: a
//! submission repeated with its idempotency key returns the same job, a claim whose answer
//! was lost leaves a job leased to nobody who knows it, so its lease runs out and (never
//! sent) it is queued again.
//!
//! # What is written
//!
//! Jobs hold their prompts and edit input images (the issue asks for them to be stored with
//! the job), attempts, errors and result locations. No API key: a job carries no
//! credentials, the router adds them when it sends. The server URL (it may hold a password)
//! is a secret: it never appears in `Debug`, errors or logs, and errors from the client are
//! passed through the crate's redaction.

mod record;
mod scripts;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use redis::{ScriptInvocation, Value};
use tokio::sync::OnceCell;

use super::backend::{
    Claim, LaneDepth, QueueBackend, QueueError, QueueStats, Reclaimed, Submitted,
};
use super::job::{CallbackState, Job, JobAttempt, JobError, JobId, JobState, JobSuccess, NewJob};
use crate::quota::budget::WallClock;
use crate::redis_conn::{Client, Connection};
use crate::router::store::redis::RedisConfig;
use record::{callback_args, int, items, job, ord, ord_priority, text, ORD_PREFIX};
use scripts::{CALLBACK, CANCEL, CLAIM, LANES, LEASE, READ, RECLAIM, SUBMIT};

/// Default bound of one backend call (connection included).
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of jobs one reclaim script handles of each kind before the next script.
pub const DEFAULT_RECLAIM_BATCH: usize = 500;

const OK: i64 = 0;
const LOST: i64 = 1;
const MISSING: i64 = 2;
const WRONG: i64 = 3;

/// Settings of the Redis backend.
#[derive(Clone, Debug)]
pub struct RedisQueueOptions {
    /// Bound of one call (connecting, sending the script, the answer).
    pub timeout: Duration,
    /// Jobs one reclaim script handles of each kind (bounds a script's run time on the
    /// server; [`QueueBackend::reclaim_expired`] repeats until all are handled).
    pub reclaim_batch: usize,
}

impl Default for RedisQueueOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_REDIS_TIMEOUT,
            reclaim_batch: DEFAULT_RECLAIM_BATCH,
        }
    }
}

/// The Redis job store. Cheap to clone (shares one multiplexed connection).
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    conn: OnceCell<Connection>,
    tag: String,
    clock: WallClock,
    options: RedisQueueOptions,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &"[redacted]")
            .field("tag", &self.inner.tag)
            .field("options", &self.inner.options)
            .finish()
    }
}

fn config_error(e: crate::ConfigError) -> QueueError {
    let field = match e.field.strip_prefix("store.") {
        Some(rest) => format!("queue.{rest}"),
        None => e.field,
    };
    QueueError::invalid(field, e.message)
}

fn redis_error(e: &redis::RedisError) -> QueueError {
    QueueError::backend(format!("redis: {}", crate::redact::text(&e.to_string())))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn json<T: serde::Serialize>(what: &str, v: &T) -> Result<String, QueueError> {
    serde_json::to_string(v)
        .map_err(|e| QueueError::backend(format!("cannot encode the job's {what}: {e}")))
}

fn malformed(what: &str) -> QueueError {
    QueueError::backend(format!("redis queue: malformed answer to {what}"))
}

impl RedisBackend {
    /// A backend on the server of `config`, under its prefix, on the system clock with the
    /// default options. No connection is made yet. A bad setting is
    /// [`QueueError::Invalid`] naming it (`queue.url`, `queue.prefix`, …).
    pub fn new(config: RedisConfig) -> Result<Self, QueueError> {
        Self::with(config, WallClock::system(), RedisQueueOptions::default())
    }

    /// A backend with `clock` and `options`.
    pub fn with(
        config: RedisConfig,
        clock: WallClock,
        options: RedisQueueOptions,
    ) -> Result<Self, QueueError> {
        if options.timeout.is_zero() {
            return Err(QueueError::invalid("queue.timeout", "must be above zero"));
        }
        if options.reclaim_batch == 0 {
            return Err(QueueError::invalid(
                "queue.reclaim_batch",
                "must be above zero",
            ));
        }
        let client = config.client_with(options.timeout).map_err(config_error)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                conn: OnceCell::new(),
                tag: format!("{{{}:queue}}", config.prefix_str()),
                clock,
                options,
            }),
        })
    }

    /// The hash tag every key of this queue starts with (`{prefix:queue}`).
    pub fn key_tag(&self) -> &str {
        &self.inner.tag
    }

    fn now_ms(&self) -> u64 {
        self.inner
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_millis()).ok())
            .unwrap_or(0)
    }

    async fn connection(&self) -> Result<Connection, QueueError> {
        let timeout = self.inner.options.timeout;
        let make = || self.inner.client.connect(timeout);
        match tokio::time::timeout(timeout, self.inner.conn.get_or_try_init(make)).await {
            Ok(Ok(c)) => Ok(c.clone()),
            Ok(Err(e)) => Err(QueueError::backend(format!(
                "redis: cannot connect: {}",
                crate::redact::text(&e.to_string())
            ))),
            Err(_) => Err(QueueError::backend(format!(
                "redis: no connection within {} ms",
                timeout.as_millis()
            ))),
        }
    }

    /// Runs a script (its one key: the queue's tag) within the time-out.
    async fn run(&self, mut inv: ScriptInvocation<'_>) -> Result<Value, QueueError> {
        inv.key(&self.inner.tag);
        let mut conn = self.connection().await?;
        let timeout = self.inner.options.timeout;
        match tokio::time::timeout(timeout, inv.invoke_async::<Value>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(redis_error(&e)),
            Err(_) => Err(QueueError::backend(format!(
                "redis: no answer within {} ms",
                timeout.as_millis()
            ))),
        }
    }

    /// A step under a lease (`lease.lua`): its answer's code mapped to the trait's errors.
    async fn lease_op(
        &self,
        op: &str,
        id: &JobId,
        worker: &str,
        args: &[&str],
    ) -> Result<Vec<Value>, QueueError> {
        let mut inv = LEASE.prepare_invoke();
        inv.arg(op).arg(self.now_ms()).arg(id.as_str()).arg(worker);
        for a in args {
            inv.arg(*a);
        }
        let answer = self.run(inv).await?;
        let a = items(&answer)?.to_vec();
        match a.first().map(int).transpose()? {
            Some(OK) => Ok(a),
            Some(LOST) => Err(QueueError::LeaseLost {
                id: id.clone(),
                worker: worker.to_string(),
            }),
            Some(WRONG) => Err(QueueError::WrongState {
                id: id.clone(),
                state: JobState::Running,
                message: "its request was already sent; end it instead of handing it back".into(),
            }),
            _ => Err(malformed(op)),
        }
    }

    /// The job record in a `{code, fields}` answer.
    fn job_of(a: &[Value], what: &str) -> Result<Job, QueueError> {
        a.get(1)
            .map(job)
            .transpose()?
            .ok_or_else(|| malformed(what))
    }

    fn jobs(v: &Value) -> Result<Vec<Job>, QueueError> {
        items(v)?.iter().map(job).collect()
    }

    fn ids(v: Option<&Value>) -> Result<Vec<JobId>, QueueError> {
        let v = v.ok_or_else(|| malformed("reclaim"))?;
        items(v)?
            .iter()
            .map(|i| text(i).map(JobId).ok_or_else(|| malformed("reclaim")))
            .collect()
    }
}

#[async_trait]
impl QueueBackend for RedisBackend {
    async fn submit(&self, job: NewJob) -> Result<Submitted, QueueError> {
        job.validate()?;
        let now = self.now_ms();
        let id = JobId::generate(now);
        let priority = job.effective_priority();
        let spec = json("submission", &job)?;
        let mut inv = SUBMIT.prepare_invoke();
        inv.arg(now)
            .arg(id.as_str())
            .arg(job.idempotency_key.as_deref().unwrap_or(""))
            .arg(spec)
            .arg(job.lane())
            .arg(ord(priority, now, &id))
            .arg(priority)
            .arg(job.deadline_ms.map(|d| d.to_string()).unwrap_or_default())
            .arg(u8::from(job.callback_url.is_some()))
            .arg(u8::from(job.allow_rerun));
        let answer = self.run(inv).await?;
        match items(&answer)? {
            [got, created] => Ok(Submitted {
                id: JobId(text(got).ok_or_else(|| malformed("submit"))?),
                created: int(created)? == 1,
            }),
            _ => Err(malformed("submit")),
        }
    }

    async fn lanes(&self) -> Result<Vec<LaneDepth>, QueueError> {
        let mut inv = LANES.prepare_invoke();
        inv.arg(self.now_ms());
        let answer = self.run(inv).await?;
        let mut out = Vec::new();
        for t in items(&answer)?.chunks(3) {
            let [lane, due, top] = t else {
                return Err(malformed("lanes"));
            };
            out.push(LaneDepth {
                lane: text(lane).ok_or_else(|| malformed("lanes"))?,
                due: u64::try_from(int(due)?).unwrap_or(0),
                top_priority: ord_priority(&text(top).ok_or_else(|| malformed("lanes"))?)?,
            });
        }
        out.sort_by(|a, b| {
            b.top_priority
                .cmp(&a.top_priority)
                .then_with(|| a.lane.cmp(&b.lane))
        });
        Ok(out)
    }

    async fn claim(&self, claim: &Claim<'_>) -> Result<Option<Job>, QueueError> {
        if claim.lanes.is_some_and(<[String]>::is_empty) {
            return Ok(None);
        }
        let mut inv = CLAIM.prepare_invoke();
        inv.arg(self.now_ms())
            .arg(claim.worker)
            .arg(ms(claim.lease))
            .arg(ORD_PREFIX);
        for lane in claim.lanes.into_iter().flatten() {
            inv.arg(lane.as_str());
        }
        let answer = self.run(inv).await?;
        if items(&answer)?.is_empty() {
            return Ok(None);
        }
        job(&answer).map(Some)
    }

    async fn heartbeat(&self, id: &JobId, worker: &str, lease: Duration) -> Result<(), QueueError> {
        let lease = ms(lease).to_string();
        self.lease_op("heartbeat", id, worker, &[&lease]).await?;
        Ok(())
    }

    async fn mark_sent(&self, id: &JobId, worker: &str) -> Result<(), QueueError> {
        self.lease_op("sent", id, worker, &[]).await?;
        Ok(())
    }

    async fn unmark_sent(&self, id: &JobId, worker: &str) -> Result<(), QueueError> {
        self.lease_op("unsent", id, worker, &[]).await?;
        Ok(())
    }

    async fn complete(
        &self,
        id: &JobId,
        worker: &str,
        success: JobSuccess,
    ) -> Result<Job, QueueError> {
        let usage = success
            .usage
            .as_ref()
            .map(|u| json("usage", u))
            .transpose()?
            .unwrap_or_default();
        let cost = success
            .cost_usd
            .map(|c| json("cost", &c))
            .transpose()?
            .unwrap_or_default();
        let results = json("results", &success.results)?;
        let attempts = json("attempts", &success.attempts)?;
        let a = self
            .lease_op(
                "complete",
                id,
                worker,
                &[
                    &success.provider,
                    &success.model,
                    &usage,
                    &cost,
                    &results,
                    &attempts,
                ],
            )
            .await?;
        Self::job_of(&a, "complete")
    }

    async fn fail(
        &self,
        id: &JobId,
        worker: &str,
        error: JobError,
        attempts: Vec<JobAttempt>,
    ) -> Result<Job, QueueError> {
        let error = json("error", &error)?;
        let attempts = json("attempts", &attempts)?;
        let a = self
            .lease_op("fail", id, worker, &[&error, &attempts])
            .await?;
        Self::job_of(&a, "fail")
    }

    async fn retry_later(
        &self,
        id: &JobId,
        worker: &str,
        at_ms: u64,
        error: JobError,
        attempts: Vec<JobAttempt>,
    ) -> Result<(), QueueError> {
        let at = at_ms.to_string();
        let error = json("error", &error)?;
        let attempts = json("attempts", &attempts)?;
        self.lease_op("retry", id, worker, &[&at, &error, &attempts])
            .await?;
        Ok(())
    }

    async fn release(
        &self,
        id: &JobId,
        worker: &str,
        not_before_ms: Option<u64>,
    ) -> Result<(), QueueError> {
        let nb = not_before_ms.map(|t| t.to_string()).unwrap_or_default();
        self.lease_op("release", id, worker, &[&nb]).await?;
        Ok(())
    }

    async fn cancel(&self, id: &JobId) -> Result<Job, QueueError> {
        let mut inv = CANCEL.prepare_invoke();
        inv.arg(self.now_ms()).arg(id.as_str());
        let answer = self.run(inv).await?;
        let a = items(&answer)?;
        match a.first().map(int).transpose()? {
            Some(OK) => Self::job_of(a, "cancel"),
            Some(MISSING) => Err(QueueError::NotFound(id.clone())),
            Some(WRONG) => {
                let state = a
                    .get(1)
                    .and_then(text)
                    .and_then(|s| s.parse::<JobState>().ok())
                    .ok_or_else(|| malformed("cancel"))?;
                let message = if a.get(2).and_then(text).as_deref() == Some("sent") {
                    "its request was already sent to a provider and cannot be called back"
                } else {
                    "it has already ended"
                };
                Err(QueueError::WrongState {
                    id: id.clone(),
                    state,
                    message: message.to_string(),
                })
            }
            _ => Err(malformed("cancel")),
        }
    }

    async fn status(&self, id: &JobId) -> Result<Option<Job>, QueueError> {
        let mut conn = self.connection().await?;
        let key = format!("{}:job:{}", self.inner.tag, id.as_str());
        let timeout = self.inner.options.timeout;
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(&key);
        let v: Value = match tokio::time::timeout(timeout, cmd.query_async(&mut conn)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(redis_error(&e)),
            Err(_) => {
                return Err(QueueError::backend(format!(
                    "redis: no answer within {} ms",
                    timeout.as_millis()
                )))
            }
        };
        let f = record::fields(&v)?;
        if f.is_empty() {
            return Ok(None);
        }
        record::decode(&f).map(Some)
    }

    async fn list(&self, state: Option<JobState>, limit: usize) -> Result<Vec<Job>, QueueError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut inv = READ.prepare_invoke();
        inv.arg("list")
            .arg(state.map(JobState::as_str).unwrap_or(""))
            .arg(i64::try_from(limit).unwrap_or(i64::MAX));
        Self::jobs(&self.run(inv).await?)
    }

    async fn reclaim_expired(&self) -> Result<Reclaimed, QueueError> {
        let batch = self.inner.options.reclaim_batch;
        let billed = json("error", &JobError::possibly_billed())?;
        let expired = json("error", &expired_error())?;
        let mut out = Reclaimed::default();
        loop {
            let mut inv = RECLAIM.prepare_invoke();
            inv.arg(self.now_ms()).arg(batch).arg(&billed).arg(&expired);
            let answer = self.run(inv).await?;
            let a = items(&answer)?;
            let (r, f, e) = (
                Self::ids(a.first())?,
                Self::ids(a.get(1))?,
                Self::ids(a.get(2))?,
            );
            let more = r.len() >= batch || f.len() >= batch || e.len() >= batch;
            out.requeued.extend(r);
            out.failed.extend(f);
            out.expired.extend(e);
            if !more {
                return Ok(out);
            }
        }
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut inv = READ.prepare_invoke();
        inv.arg("stats");
        let answer = self.run(inv).await?;
        match items(&answer)? {
            [q, r, oldest] => Ok(QueueStats {
                queued: u64::try_from(int(q)?).unwrap_or(0),
                running: u64::try_from(int(r)?).unwrap_or(0),
                oldest_queued_ms: text(oldest)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<f64>().map_err(|_| malformed("stats")))
                    .transpose()?
                    // A score is a double; submission times (ms) are exact in it.
                    .map(|f| f as u64),
            }),
            _ => Err(malformed("stats")),
        }
    }

    async fn set_callback_state(&self, id: &JobId, state: CallbackState) -> Result<(), QueueError> {
        let mut inv = CALLBACK.prepare_invoke();
        inv.arg("set").arg(self.now_ms()).arg(id.as_str());
        for a in callback_args(&state) {
            inv.arg(a);
        }
        let answer = self.run(inv).await?;
        match items(&answer)?.first().map(int).transpose()? {
            Some(OK) => Ok(()),
            Some(MISSING) => Err(QueueError::NotFound(id.clone())),
            _ => Err(malformed("set_callback_state")),
        }
    }

    async fn due_callbacks(&self, hold: Duration, limit: usize) -> Result<Vec<Job>, QueueError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = self.now_ms();
        let mut inv = CALLBACK.prepare_invoke();
        inv.arg("due")
            .arg(now)
            .arg(now.saturating_add(ms(hold)))
            .arg(i64::try_from(limit).unwrap_or(i64::MAX));
        Self::jobs(&self.run(inv).await?)
    }
}

/// The error of a queued job whose deadline passed (the SQLite backend's words).
fn expired_error() -> JobError {
    JobError::new(
        "expired",
        "the job's deadline passed before it could be sent",
        "The job waited in the queue past its deadline, so it was not sent (nothing was billed). Submit it again with a later deadline, or add capacity.",
    )
}
