//! The embedded durable backend: one SQLite file, zero set-up, several worker processes on
//! one machine.
//!
//! # How it keeps its promises
//!
//! * **Durable across `kill -9`**: the database runs in WAL mode; every backend call is one
//!   `BEGIN IMMEDIATE` … `COMMIT` transaction, so a process killed at any instant leaves either
//!   the whole step or none of it. With `synchronous = NORMAL` (the default here) a committed
//!   step survives the process dying; `synchronous = FULL` ([`SqliteOptions::full_sync`]) also
//!   survives losing power, at one fsync per step.
//! * **Several processes**: SQLite's own file locks serialize writers; `BEGIN IMMEDIATE` takes
//!   the write lock before reading, so a claim's read and update are one step and two workers
//!   never take one job. A busy database is waited for up to [`SqliteOptions::busy_timeout`],
//!   then the call fails (every await is bounded).
//! * **Claims without loading jobs**: indexed columns mirror what claims, leases and counts
//!   need (state, lane, priority, submission time, retry time, deadline, lease, callback due
//!   time); the full record is one JSON column read only for the job a step touches.
//!
//! `rusqlite` is blocking: each call runs on tokio's blocking pool (`spawn_blocking`) with the
//! backend's one connection behind a mutex (SQLite serializes writers anyway).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::backend::{
    Claim, LaneDepth, QueueBackend, QueueError, QueueStats, Reclaimed, Submitted,
};
use super::job::{
    CallbackState, Job, JobAttempt, JobError, JobId, JobState, JobSuccess, Lease, NewJob,
};
use crate::quota::budget::WallClock;

/// Settings of the SQLite backend.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// How long a call waits for another process's write lock before failing.
    pub busy_timeout: Duration,
    /// `synchronous = FULL` (survives power loss) instead of `NORMAL` (survives a crash).
    pub full_sync: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(10),
            full_sync: false,
        }
    }
}

/// The SQLite job store. Cheap to clone (shares the connection).
#[derive(Clone)]
pub struct SqliteBackend {
    conn: Arc<Mutex<Connection>>,
    clock: WallClock,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.path)
            .finish()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id            TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    lane          TEXT NOT NULL,
    priority      INTEGER NOT NULL,
    enqueued_ms   INTEGER NOT NULL,
    not_before_ms INTEGER NOT NULL DEFAULT 0,
    deadline_ms   INTEGER,
    idem_key      TEXT UNIQUE,
    lease_owner   TEXT,
    lease_expires INTEGER,
    cb_due        INTEGER,
    record        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_claim ON jobs (state, lane, priority DESC, enqueued_ms, id);
CREATE INDEX IF NOT EXISTS jobs_order ON jobs (state, priority DESC, enqueued_ms, id);
CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (state, lease_expires);
CREATE INDEX IF NOT EXISTS jobs_cb ON jobs (cb_due) WHERE cb_due IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_list ON jobs (enqueued_ms, id);
";

/// How long one busy wait sleeps. SQLite's own busy time-out sleeps 1, 2, 5, 10 … up to
/// 100 ms per retry; with several worker processes taking turns on the write lock for
/// sub-millisecond transactions, those long sleeps (not the work) bound the throughput, so
/// the backend retries every half millisecond instead.
const BUSY_SLEEP: Duration = Duration::from_micros(500);

/// Retries of [`busy_wait`] before a call fails: the largest busy time-out any backend of
/// the process was opened with, in [`BUSY_SLEEP`]s (a process-wide value because SQLite's
/// busy handler is a plain function).
static BUSY_RETRIES: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

fn set_busy_limit(timeout: Duration) {
    let n = i64::try_from(timeout.as_micros() / BUSY_SLEEP.as_micros()).unwrap_or(i64::MAX);
    BUSY_RETRIES.fetch_max(n.max(1), std::sync::atomic::Ordering::Relaxed);
}

fn busy_wait(retries: i32) -> bool {
    if i64::from(retries) >= BUSY_RETRIES.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    std::thread::sleep(BUSY_SLEEP);
    true
}

fn db_err(e: rusqlite::Error) -> QueueError {
    QueueError::backend(format!("sqlite: {e}"))
}

fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn i64_ms(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl SqliteBackend {
    /// Opens (creating if needed) the queue database at `path`, on the system clock.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, QueueError> {
        Self::open_with(path, WallClock::system(), SqliteOptions::default())
    }

    /// Opens the queue database at `path` with `clock` and `options`.
    pub fn open_with(
        path: impl AsRef<Path>,
        clock: WallClock,
        options: SqliteOptions,
    ) -> Result<Self, QueueError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                QueueError::invalid("path", format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let conn = Connection::open(&path).map_err(|e| {
            QueueError::invalid("path", format!("cannot open {}: {e}", path.display()))
        })?;
        set_busy_limit(options.busy_timeout);
        conn.busy_handler(Some(busy_wait)).map_err(db_err)?;
        // WAL: readers do not block the writer and a crash leaves whole transactions.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db_err)?;
        if !mode.eq_ignore_ascii_case("wal") && path.as_os_str() != ":memory:" {
            return Err(QueueError::backend(format!(
                "sqlite: {} does not support WAL mode (got {mode})",
                path.display()
            )));
        }
        let sync = if options.full_sync { "FULL" } else { "NORMAL" };
        conn.execute_batch(&format!("PRAGMA synchronous = {sync};"))
            .map_err(db_err)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            clock,
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn now_ms(&self) -> u64 {
        let t = self.clock.now();
        t.duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_millis()).ok())
            .unwrap_or(0)
    }

    /// Runs `f` in one immediate transaction on the blocking pool.
    async fn tx<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, u64) -> Result<T, QueueError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let now = self.now_ms();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock();
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let out = f(&tx, now)?;
            tx.commit().map_err(db_err)?;
            Ok(out)
        })
        .await
        .map_err(|e| QueueError::backend(format!("sqlite task: {e}")))?
    }
}

/// The wall time `SystemTime` of a Unix-ms value (for callers that print times).
pub fn system_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn load(tx: &Transaction<'_>, id: &JobId) -> Result<Option<Job>, QueueError> {
    let text: Option<String> = tx
        .query_row(
            "SELECT record FROM jobs WHERE id = ?1",
            params![id.as_str()],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?;
    text.map(|t| decode(id.as_str(), &t)).transpose()
}

fn decode(id: &str, text: &str) -> Result<Job, QueueError> {
    serde_json::from_str(text)
        .map_err(|e| QueueError::backend(format!("sqlite: job {id}: unreadable record: {e}")))
}

/// Writes the record and its mirrored columns.
fn store(tx: &Transaction<'_>, job: &Job) -> Result<(), QueueError> {
    let record = serde_json::to_string(job)
        .map_err(|e| QueueError::backend(format!("job {}: cannot encode: {e}", job.id)))?;
    let cb_due = match &job.callback {
        CallbackState::Pending { next_at_ms, .. } => Some(ms_i64(*next_at_ms)),
        _ => None,
    };
    tx.execute(
        "UPDATE jobs SET state = ?2, priority = ?3, not_before_ms = ?4, lease_owner = ?5,
                lease_expires = ?6, cb_due = ?7, record = ?8 WHERE id = ?1",
        params![
            job.id.as_str(),
            job.state.as_str(),
            job.priority,
            ms_i64(job.not_before_ms.unwrap_or(0)),
            job.lease.as_ref().map(|l| l.owner.as_str()),
            job.lease.as_ref().map(|l| ms_i64(l.expires_ms)),
            cb_due,
            record,
        ],
    )
    .map_err(db_err)?;
    Ok(())
}

/// The job if it is running and leased to `worker` (lease not run out), else `LeaseLost`.
fn leased(tx: &Transaction<'_>, id: &JobId, worker: &str, now: u64) -> Result<Job, QueueError> {
    let lost = || QueueError::LeaseLost {
        id: id.clone(),
        worker: worker.to_string(),
    };
    let job = load(tx, id)?.ok_or_else(lost)?;
    match &job.lease {
        Some(l) if job.state == JobState::Running && l.owner == worker && l.expires_ms >= now => {
            Ok(job)
        }
        _ => Err(lost()),
    }
}

fn end(job: &mut Job, state: JobState, now: u64) {
    job.state = state;
    job.ended_ms = Some(now);
    job.lease = None;
    job.not_before_ms = None;
    job.callback = job.callback_on_end(now);
}

fn due_filter(lanes: Option<usize>) -> String {
    let mut sql = String::from(
        "state = 'queued' AND not_before_ms <= ?1 AND (deadline_ms IS NULL OR deadline_ms > ?1)",
    );
    if let Some(n) = lanes {
        sql.push_str(" AND lane IN (");
        for i in 0..n {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("?{}", i + 2));
        }
        sql.push(')');
    }
    sql
}

#[async_trait]
impl QueueBackend for SqliteBackend {
    async fn submit(&self, job: NewJob) -> Result<Submitted, QueueError> {
        job.validate()?;
        self.tx(move |tx, now| {
            if let Some(key) = &job.idempotency_key {
                let existing: Option<String> = tx
                    .query_row(
                        "SELECT id FROM jobs WHERE idem_key = ?1",
                        params![key],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err)?;
                if let Some(id) = existing {
                    return Ok(Submitted {
                        id: JobId(id),
                        created: false,
                    });
                }
            }
            let id = JobId::generate(now);
            let record = Job::queued(id.clone(), job, now);
            let text = serde_json::to_string(&record)
                .map_err(|e| QueueError::backend(format!("cannot encode job: {e}")))?;
            tx.execute(
                "INSERT INTO jobs (id, state, lane, priority, enqueued_ms, not_before_ms,
                                   deadline_ms, idem_key, record)
                 VALUES (?1, 'queued', ?2, ?3, ?4, 0, ?5, ?6, ?7)",
                params![
                    id.as_str(),
                    record.lane,
                    record.priority,
                    ms_i64(now),
                    record.spec.deadline_ms.map(ms_i64),
                    record.spec.idempotency_key,
                    text,
                ],
            )
            .map_err(db_err)?;
            Ok(Submitted { id, created: true })
        })
        .await
    }

    async fn lanes(&self) -> Result<Vec<LaneDepth>, QueueError> {
        self.tx(|tx, now| {
            let sql = format!(
                "SELECT lane, COUNT(*), MAX(priority) FROM jobs WHERE {} GROUP BY lane
                 ORDER BY MAX(priority) DESC, lane",
                due_filter(None)
            );
            let mut st = tx.prepare_cached(&sql).map_err(db_err)?;
            let rows = st
                .query_map(params![ms_i64(now)], |r| {
                    Ok(LaneDepth {
                        lane: r.get(0)?,
                        due: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                        top_priority: r.get(2)?,
                    })
                })
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }

    async fn claim(&self, claim: &Claim<'_>) -> Result<Option<Job>, QueueError> {
        let worker = claim.worker.to_string();
        let lease = claim.lease;
        let lanes: Option<Vec<String>> = claim.lanes.map(<[String]>::to_vec);
        if lanes.as_ref().is_some_and(Vec::is_empty) {
            return Ok(None);
        }
        self.tx(move |tx, now| {
            let sql = format!(
                "SELECT id, record FROM jobs WHERE {} ORDER BY priority DESC, enqueued_ms, id LIMIT 1",
                due_filter(lanes.as_ref().map(Vec::len))
            );
            let mut st = tx.prepare_cached(&sql).map_err(db_err)?;
            let mut args: Vec<rusqlite::types::Value> = vec![ms_i64(now).into()];
            for l in lanes.iter().flatten() {
                args.push(l.clone().into());
            }
            let row: Option<(String, String)> = st
                .query_row(rusqlite::params_from_iter(args), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(db_err)?;
            drop(st);
            let Some((id, text)) = row else {
                return Ok(None);
            };
            let mut job = decode(&id, &text)?;
            job.state = JobState::Running;
            job.sent = false;
            job.not_before_ms = None;
            job.started_ms.get_or_insert(now);
            job.lease = Some(Lease {
                owner: worker,
                expires_ms: now.saturating_add(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX)),
            });
            store(tx, &job)?;
            Ok(Some(job))
        })
        .await
    }

    async fn heartbeat(&self, id: &JobId, worker: &str, lease: Duration) -> Result<(), QueueError> {
        let (id, worker) = (id.clone(), worker.to_string());
        self.tx(move |tx, now| {
            let mut job = leased(tx, &id, &worker, now)?;
            if let Some(l) = job.lease.as_mut() {
                l.expires_ms =
                    now.saturating_add(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX));
            }
            store(tx, &job)
        })
        .await
    }

    async fn mark_sent(&self, id: &JobId, worker: &str) -> Result<(), QueueError> {
        let (id, worker) = (id.clone(), worker.to_string());
        self.tx(move |tx, now| {
            let mut job = leased(tx, &id, &worker, now)?;
            job.sent = true;
            store(tx, &job)
        })
        .await
    }

    async fn unmark_sent(&self, id: &JobId, worker: &str) -> Result<(), QueueError> {
        let (id, worker) = (id.clone(), worker.to_string());
        self.tx(move |tx, now| {
            let mut job = leased(tx, &id, &worker, now)?;
            job.sent = false;
            store(tx, &job)
        })
        .await
    }

    async fn complete(
        &self,
        id: &JobId,
        worker: &str,
        success: JobSuccess,
    ) -> Result<Job, QueueError> {
        let (id, worker) = (id.clone(), worker.to_string());
        self.tx(move |tx, now| {
            let mut job = leased(tx, &id, &worker, now)?;
            job.provider = Some(success.provider);
            job.model = Some(success.model);
            job.usage = success.usage;
            job.cost_usd = success.cost_usd;
            job.results = success.results;
            job.attempts.extend(success.attempts);
            job.error = None;
            end(&mut job, JobState::Succeeded, now);
            store(tx, &job)?;
            Ok(job)
        })
        .await
    }

    async fn fail(
        &self,
        id: &JobId,
        worker: &str,
        error: JobError,
        attempts: Vec<JobAttempt>,
    ) -> Result<Job, QueueError> {
        let (id, worker) = (id.clone(), worker.to_string());
        self.tx(move |tx, now| {
            let mut job = leased(tx, &id, &worker, now)?;
            job.attempts.extend(attempts);
            job.error = Some(error);
            end(&mut job, JobState::Failed, now);
            store(tx, &job)?;
            Ok(job)
        })
        .await
    }

    async fn retry_later(
        &self,
        id: &JobId,
        worker: &str,
        at_ms: u64,
        error: JobError,
        attempts: Vec<JobAttempt>,
    ) -> Result<(), QueueError> {
        let (id, worker) = (id.clone(), worker.to_string());
        self.tx(move |tx, now| {
            let mut job = leased(tx, &id, &worker, now)?;
            job.attempts.extend(attempts);
            job.error = Some(error);
            job.retries = job.retries.saturating_add(1);
            job.state = JobState::Queued;
            job.sent = false;
            job.lease = None;
            job.not_before_ms = Some(at_ms);
            store(tx, &job)
        })
        .await
    }

    async fn release(
        &self,
        id: &JobId,
        worker: &str,
        not_before_ms: Option<u64>,
    ) -> Result<(), QueueError> {
        let (id, worker) = (id.clone(), worker.to_string());
        self.tx(move |tx, now| {
            let mut job = leased(tx, &id, &worker, now)?;
            if job.sent {
                return Err(QueueError::WrongState {
                    id,
                    state: job.state,
                    message: "its request was already sent; end it instead of handing it back"
                        .into(),
                });
            }
            job.state = JobState::Queued;
            job.lease = None;
            job.not_before_ms = not_before_ms;
            store(tx, &job)
        })
        .await
    }

    async fn cancel(&self, id: &JobId) -> Result<Job, QueueError> {
        let id = id.clone();
        self.tx(move |tx, now| {
            let mut job = load(tx, &id)?.ok_or_else(|| QueueError::NotFound(id.clone()))?;
            let refuse = |job: &Job, message: &str| QueueError::WrongState {
                id: id.clone(),
                state: job.state,
                message: message.to_string(),
            };
            match job.state {
                JobState::Queued => {}
                JobState::Running if !job.sent => {}
                JobState::Running => {
                    return Err(refuse(
                        &job,
                        "its request was already sent to a provider and cannot be called back",
                    ))
                }
                _ => return Err(refuse(&job, "it has already ended")),
            }
            end(&mut job, JobState::Cancelled, now);
            store(tx, &job)?;
            Ok(job)
        })
        .await
    }

    async fn status(&self, id: &JobId) -> Result<Option<Job>, QueueError> {
        let id = id.clone();
        self.tx(move |tx, _| load(tx, &id)).await
    }

    async fn list(&self, state: Option<JobState>, limit: usize) -> Result<Vec<Job>, QueueError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.tx(move |tx, _| {
            let mut out = Vec::new();
            let mut push = |row: &rusqlite::Row<'_>| -> rusqlite::Result<()> {
                let id: String = row.get(0)?;
                let text: String = row.get(1)?;
                out.push((id, text));
                Ok(())
            };
            match state {
                Some(s) => {
                    let mut st = tx
                        .prepare_cached(
                            "SELECT id, record FROM jobs WHERE state = ?1
                             ORDER BY enqueued_ms, id LIMIT ?2",
                        )
                        .map_err(db_err)?;
                    let mut rows = st.query(params![s.as_str(), limit]).map_err(db_err)?;
                    while let Some(r) = rows.next().map_err(db_err)? {
                        push(r).map_err(db_err)?;
                    }
                }
                None => {
                    let mut st = tx
                        .prepare_cached(
                            "SELECT id, record FROM jobs ORDER BY enqueued_ms, id LIMIT ?1",
                        )
                        .map_err(db_err)?;
                    let mut rows = st.query(params![limit]).map_err(db_err)?;
                    while let Some(r) = rows.next().map_err(db_err)? {
                        push(r).map_err(db_err)?;
                    }
                }
            }
            out.iter().map(|(id, t)| decode(id, t)).collect()
        })
        .await
    }

    async fn reclaim_expired(&self) -> Result<Reclaimed, QueueError> {
        self.tx(|tx, now| {
            let mut out = Reclaimed::default();
            let rows: Vec<(String, String)> = {
                let mut st = tx
                    .prepare_cached(
                        "SELECT id, record FROM jobs WHERE state = 'running' AND lease_expires < ?1",
                    )
                    .map_err(db_err)?;
                let rows = st
                    .query_map(params![ms_i64(now)], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(db_err)?;
                rows.collect::<Result<_, _>>().map_err(db_err)?
            };
            for (id, text) in rows {
                let mut job = decode(&id, &text)?;
                if job.sent && !job.spec.allow_rerun {
                    job.error = Some(JobError::possibly_billed());
                    end(&mut job, JobState::Failed, now);
                    out.failed.push(job.id.clone());
                } else {
                    if job.sent {
                        job.retries = job.retries.saturating_add(1);
                    }
                    job.state = JobState::Queued;
                    job.sent = false;
                    job.lease = None;
                    out.requeued.push(job.id.clone());
                }
                store(tx, &job)?;
            }
            let expired: Vec<(String, String)> = {
                let mut st = tx
                    .prepare_cached(
                        "SELECT id, record FROM jobs WHERE state = 'queued'
                         AND deadline_ms IS NOT NULL AND deadline_ms <= ?1",
                    )
                    .map_err(db_err)?;
                let rows = st
                    .query_map(params![ms_i64(now)], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(db_err)?;
                rows.collect::<Result<_, _>>().map_err(db_err)?
            };
            for (id, text) in expired {
                let mut job = decode(&id, &text)?;
                job.error = Some(JobError::new(
                    "expired",
                    "the job's deadline passed before it could be sent",
                    "The job waited in the queue past its deadline, so it was not sent (nothing was billed). Submit it again with a later deadline, or add capacity.",
                ));
                end(&mut job, JobState::Expired, now);
                out.expired.push(job.id.clone());
                store(tx, &job)?;
            }
            Ok(out)
        })
        .await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.tx(|tx, _| {
            let (queued, oldest): (i64, Option<i64>) = tx
                .query_row(
                    "SELECT COUNT(*), MIN(enqueued_ms) FROM jobs WHERE state = 'queued'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(db_err)?;
            let running: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM jobs WHERE state = 'running'",
                    [],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            Ok(QueueStats {
                queued: u64::try_from(queued).unwrap_or(0),
                running: u64::try_from(running).unwrap_or(0),
                oldest_queued_ms: oldest.map(i64_ms),
            })
        })
        .await
    }

    async fn set_callback_state(&self, id: &JobId, state: CallbackState) -> Result<(), QueueError> {
        let id = id.clone();
        self.tx(move |tx, _| {
            let mut job = load(tx, &id)?.ok_or_else(|| QueueError::NotFound(id.clone()))?;
            job.callback = state;
            store(tx, &job)
        })
        .await
    }

    async fn due_callbacks(&self, hold: Duration, limit: usize) -> Result<Vec<Job>, QueueError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.tx(move |tx, now| {
            let rows: Vec<(String, String)> = {
                let mut st = tx
                    .prepare_cached(
                        "SELECT id, record FROM jobs WHERE cb_due IS NOT NULL AND cb_due <= ?1
                         ORDER BY cb_due LIMIT ?2",
                    )
                    .map_err(db_err)?;
                let rows = st
                    .query_map(params![ms_i64(now), limit], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(db_err)?;
                rows.collect::<Result<_, _>>().map_err(db_err)?
            };
            let until = now.saturating_add(u64::try_from(hold.as_millis()).unwrap_or(u64::MAX));
            let mut out = Vec::with_capacity(rows.len());
            for (id, text) in rows {
                let job = decode(&id, &text)?;
                let mut held = job.clone();
                if let CallbackState::Pending { next_at_ms, .. } = &mut held.callback {
                    *next_at_ms = until;
                }
                store(tx, &held)?;
                out.push(job);
            }
            Ok(out)
        })
        .await
    }
}
