//! `image-router jobs …` (submit, status, list, cancel) and `image-router worker`: the
//! durable job queue of the config's `[queue]` table (SQLite by default,
//! `image-router-jobs.db` next to the config file).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use image_router::config::{process_env, RouterConfig};
use image_router::queue::{
    FolderStore, Job, JobId, JobQueue, JobState, NewJob, QueueError, DEFAULT_MAX_RETRIES,
};
use image_router::RequestClass;
use serde_json::json;

use super::output::print_json;
use super::{Common, RequestOpts, EXIT_CONFIG, EXIT_FAILED};

pub const JOBS_HELP: &str = "\
Examples:
  image-router jobs submit -c router.toml --prompt \"a watercolor fox\"
  image-router jobs submit -c router.toml --prompts prompts.txt --class batch
  image-router jobs status -c router.toml j0193abc --wait --json
  image-router jobs list -c router.toml --state queued
  image-router jobs cancel -c router.toml j0193abc
The queue is the config's [queue] table (default: SQLite in image-router-jobs.db next to
the config file). Run `image-router worker` to drain it.";

pub const WORKER_HELP: &str = "\
Examples:
  image-router worker -c router.toml            # a progress line on stderr
  image-router worker -c router.toml --json     # one JSON line per report on stdout
Runs until interrupted (Ctrl-C / SIGTERM): then it stops claiming and finishes or hands back
the jobs in hand within the [queue] grace period.";

const SUBMIT_HELP: &str = "\
Examples:
  image-router jobs submit -c router.toml --prompt \"a watercolor fox\"
  image-router jobs submit -c router.toml --prompts prompts.txt --class batch";
const STATUS_HELP: &str = "\
Examples:
  image-router jobs status -c router.toml j0193abc
  image-router jobs status -c router.toml j0193abc --wait --json";
const LIST_HELP: &str = "\
Examples:
  image-router jobs list -c router.toml --state queued";
const CANCEL_HELP: &str = "\
Examples:
  image-router jobs cancel -c router.toml j0193abc";

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Submit one prompt or a prompts file; prints one job id per line.
    #[command(after_help = SUBMIT_HELP)]
    Submit(SubmitArgs),
    /// A job's status: state, times, attempts, provider, cost, result files or the error.
    #[command(after_help = STATUS_HELP)]
    Status(StatusArgs),
    /// Jobs, oldest first, optionally in one state.
    #[command(after_help = LIST_HELP)]
    List(ListArgs),
    /// Cancel a job whose request was not sent yet.
    #[command(after_help = CANCEL_HELP)]
    Cancel(CancelArgs),
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub common: Common,
    /// The prompt.
    #[arg(
        long,
        short = 'p',
        conflicts_with = "prompts",
        required_unless_present = "prompts"
    )]
    pub prompt: Option<String>,
    /// A prompts file (one prompt a line, as for `batch`); one job per line.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    #[command(flatten)]
    pub request: RequestOpts,
    /// Priority (higher first; default from the class: interactive 100, batch -100, else 0).
    #[arg(long, allow_hyphen_values = true)]
    pub priority: Option<i32>,
    /// Idempotency key: submitting it again returns the same job (with --prompts, the key
    /// gets `-<line>` appended per line).
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Where to POST the job's status when it ends.
    #[arg(long)]
    pub callback_url: Option<String>,
    /// Re-run the job if its worker dies after sending (it may be billed twice).
    #[arg(long)]
    pub allow_rerun: bool,
    /// Retries of retryable failures (default: the [queue] max_retries, else 5).
    #[arg(long)]
    pub max_retries: Option<u32>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: Common,
    /// The job id.
    pub id: String,
    /// Wait until the job has ended.
    #[arg(long)]
    pub wait: bool,
    /// Longest wait with --wait, seconds.
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: Common,
    /// Only jobs in this state: queued, running, succeeded, failed, cancelled, expired.
    #[arg(long, value_parser = parse_state)]
    pub state: Option<JobState>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    #[command(flatten)]
    pub common: Common,
    /// The job id.
    pub id: String,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub common: Common,
    /// The worker id (lease owner; default host-pid-random).
    #[arg(long)]
    pub id: Option<String>,
}

fn parse_state(s: &str) -> Result<JobState, String> {
    s.parse()
}

struct Opened {
    cfg: RouterConfig,
    queue: JobQueue,
}

fn open(common: &Common) -> Result<Opened, ExitCode> {
    let cfg = super::load_config(common)?;
    let settings = cfg.queue.clone().unwrap_or_default();
    let backend = settings
        .open(cfg.base_dir.as_deref())
        .map_err(|e| super::config_failure(&e, common.json))?;
    Ok(Opened {
        cfg,
        queue: JobQueue::new(backend),
    })
}

fn queue_failure(e: &QueueError, json: bool) -> ExitCode {
    let code = match e {
        QueueError::Invalid { .. } | QueueError::NotFound(_) | QueueError::WrongState { .. } => {
            EXIT_CONFIG
        }
        _ => EXIT_FAILED,
    };
    let msg = super::redact::text(&e.to_string());
    if json {
        print_json(&json!({"error": {"kind": "queue", "message": msg}}));
    } else {
        eprintln!("error: {msg}");
    }
    ExitCode::from(code)
}

pub async fn run(cmd: JobsCommand) -> ExitCode {
    match cmd {
        JobsCommand::Submit(a) => submit(a).await,
        JobsCommand::Status(a) => status(a).await,
        JobsCommand::List(a) => list(a).await,
        JobsCommand::Cancel(a) => cancel(a).await,
    }
}

async fn submit(a: SubmitArgs) -> ExitCode {
    let json = a.common.json;
    let o = match open(&a.common) {
        Ok(o) => o,
        Err(c) => return c,
    };
    let max_retries = a
        .max_retries
        .or(o.cfg.queue.as_ref().and_then(|q| q.max_retries))
        .unwrap_or(DEFAULT_MAX_RETRIES);
    let make =
        |request: image_router::GenerateRequest, class: Option<String>, key: Option<String>| {
            let mut j = NewJob::new(request)
                .max_retries(max_retries)
                .allow_rerun(a.allow_rerun);
            if let Some(c) = class.or_else(|| a.request.class.clone()) {
                j = j.class(RequestClass::new(c));
            }
            if let Some(p) = a.priority {
                j = j.priority(p);
            }
            if let Some(k) = key {
                j = j.idempotency_key(k);
            }
            if let Some(u) = &a.callback_url {
                j = j.callback_url(u.clone());
            }
            j
        };
    let mut jobs = Vec::new();
    let mut bad = 0usize;
    if let Some(p) = &a.prompt {
        let prompt = match super::read_prompt(p, json) {
            Ok(p) => p,
            Err(c) => return c,
        };
        let req = super::generate::request(&prompt, &a.request);
        jobs.push((None, make(req, None, a.idempotency_key.clone())));
    } else if let Some(path) = &a.prompts {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                return super::usage_error(json, &format!("cannot read {}: {e}", path.display()))
            }
        };
        for line in super::batch::prompts::parse_prompts(&bytes, &a.request) {
            match line {
                Ok(job) if job.edit.is_none() => {
                    let key = a
                        .idempotency_key
                        .as_ref()
                        .map(|k| format!("{k}-{}", job.line));
                    jobs.push((Some(job.line), make(job.request, job.class, key)));
                }
                Ok(job) => {
                    bad += 1;
                    eprintln!(
                        "line {}: edit lines are not submitted as jobs from a prompts file yet; skipped",
                        job.line
                    );
                }
                Err(b) => {
                    bad += 1;
                    eprintln!("line {}: {}", b.line, b.message);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (line, job) in jobs {
        match o.queue.submit(job).await {
            Ok(s) => {
                if json {
                    out.push(json!({"id": s.id, "created": s.created, "line": line}));
                } else {
                    println!("{}", s.id);
                }
            }
            Err(e) => return queue_failure(&e, json),
        }
    }
    if json {
        print_json(&json!({"submitted": out, "skipped_lines": bad}));
    }
    if bad > 0 {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_job(j: &Job, json: bool) {
    if json {
        print_json(&j.status_json());
        return;
    }
    println!("{}  {}", j.id, j.state);
    println!("  prompt: {}", j.spec.request.prompt());
    let t = |ms: Option<u64>| {
        ms.map(|m| httpdate::fmt_http_date(image_router::queue::system_time(m)))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "  enqueued {}  started {}  ended {}",
        t(Some(j.enqueued_ms)),
        t(j.started_ms),
        t(j.ended_ms)
    );
    if let (Some(p), Some(m)) = (&j.provider, &j.model) {
        println!("  served by {p} ({m})");
    }
    if let Some(c) = j.cost_usd {
        println!("  cost ${c:.4}");
    }
    for r in &j.results {
        println!("  image: {}", r.location);
    }
    for a in &j.attempts {
        println!(
            "  attempt (run {}): {} {} {}{}",
            a.run,
            a.provider,
            a.outcome,
            a.status.map(|s| s.to_string()).unwrap_or_default(),
            a.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    if let Some(e) = &j.error {
        println!("  error ({}): {}", e.kind, e.message);
        println!("  {}", e.explanation.replace('\n', "\n  "));
    }
}

async fn status(a: StatusArgs) -> ExitCode {
    let json = a.common.json;
    let o = match open(&a.common) {
        Ok(o) => o,
        Err(c) => return c,
    };
    let id = JobId(a.id.clone());
    let job = if a.wait {
        o.queue.wait(&id, Duration::from_secs(a.timeout)).await
    } else {
        o.queue.status(&id).await
    };
    match job {
        Ok(j) => {
            print_job(&j, json);
            match j.state {
                JobState::Failed | JobState::Cancelled | JobState::Expired => {
                    ExitCode::from(EXIT_FAILED)
                }
                JobState::Queued | JobState::Running if a.wait => ExitCode::from(EXIT_FAILED),
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => queue_failure(&e, json),
    }
}

async fn list(a: ListArgs) -> ExitCode {
    let json = a.common.json;
    let o = match open(&a.common) {
        Ok(o) => o,
        Err(c) => return c,
    };
    match o.queue.list(a.state, a.limit).await {
        Ok(jobs) => {
            if json {
                print_json(&json!(jobs
                    .iter()
                    .map(Job::status_json)
                    .collect::<Vec<_>>()));
            } else {
                for j in &jobs {
                    let prompt: String = j.spec.request.prompt().chars().take(60).collect();
                    println!("{}  {:9}  {}", j.id, j.state.as_str(), prompt);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => queue_failure(&e, json),
    }
}

async fn cancel(a: CancelArgs) -> ExitCode {
    let json = a.common.json;
    let o = match open(&a.common) {
        Ok(o) => o,
        Err(c) => return c,
    };
    match o.queue.cancel(&JobId(a.id.clone())).await {
        Ok(j) => {
            print_job(&j, json);
            ExitCode::SUCCESS
        }
        Err(e) => queue_failure(&e, json),
    }
}

pub async fn worker(a: WorkerArgs) -> ExitCode {
    let json = a.common.json;
    let o = match open(&a.common) {
        Ok(o) => o,
        Err(c) => return c,
    };
    let router = match o.cfg.build() {
        Ok(r) => r,
        Err(e) => return super::config_failure(&e, json),
    };
    let settings = o.cfg.queue.clone().unwrap_or_default();
    let results = settings.results_path(o.cfg.base_dir.as_deref());
    let mut b = match settings.worker_builder(&process_env) {
        Ok(b) => b,
        Err(e) => return super::config_failure(&e, json),
    };
    b = b
        .router(router)
        .backend(o.queue.backend().clone())
        .results(Arc::new(FolderStore::new(results)));
    if let Some(id) = &a.id {
        b = b.id(id.clone());
    }
    let w = match b.build() {
        Ok(w) => w,
        Err(e) => return queue_failure(&e, json),
    };
    // Progress: one line every 2 s (text on stderr, or JSON on stdout).
    let progress = {
        let (w, q) = (w.clone(), o.queue.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let r = w.report();
                let st = q.stats().await.ok();
                let (queued, running) = st.map(|s| (s.queued, s.running)).unwrap_or((0, 0));
                if json {
                    print_json(&json!({
                        "worker": w.id(), "claimed": r.claimed, "succeeded": r.succeeded,
                        "failed": r.failed, "retried": r.retried, "released": r.released,
                        "callbacks": r.callbacks_delivered, "queued": queued, "running": running,
                    }));
                } else if !super::quiet() {
                    eprint!(
                        "\r{}: {} done, {} failed, {} retried | queue: {queued} queued, {running} running   ",
                        w.id(), r.succeeded, r.failed, r.retried
                    );
                }
            }
        })
    };
    let report = w.run(shutdown_signal()).await;
    progress.abort();
    if json {
        print_json(&json!({
            "worker": w.id(), "stopped": true, "claimed": report.claimed,
            "succeeded": report.succeeded, "failed": report.failed, "retried": report.retried,
            "released": report.released,
        }));
    } else if !super::quiet() {
        eprintln!(
            "\nworker {} stopped: {} succeeded, {} failed, {} retried, {} handed back",
            w.id(),
            report.succeeded,
            report.failed,
            report.retried,
            report.released
        );
    }
    ExitCode::SUCCESS
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
