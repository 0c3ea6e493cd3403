//! `image-router batch`: one image set per prompt, resumable, with a per-provider summary.
//!
//! Nothing is lost: every prompt ends as files on disk or as a listed error (text on stderr,
//! or a JSON line). Each prompt whose images are saved is recorded in the output folder's
//! manifest ([`manifest`]); a re-run skips the recorded prompts whose files are still there,
//! so re-running the same command resumes an interrupted batch without paying twice. Files
//! are written atomically (temporary name, then rename), so a half-written image never
//! counts as done. Every check that can fail a prompt (its line, its output name, the
//! request itself) runs before anything is sent.

mod manifest;
pub(super) mod prompts;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use futures_util::stream::{self, StreamExt};
use image_router::catalog::Catalog;
use image_router::{ImageRequest, ImageResponse, Router};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;

use self::manifest::{Entry, Manifest};
use self::prompts::{parse_prompts, BadLine, Job};
use super::edit::{check_input, edit_from, read_inputs};
use super::generate::{request, write_images};
use super::output::{self, print_json};
use super::{usage_error, Common, RequestOpts, EXIT_FAILED};

pub const AFTER_HELP: &str = "\
The prompts file has one prompt per line, or one JSON object per line with per-prompt
options (any request field, plus \"name\" for the output file's stem and \"class\"):
  a watercolor fox
  {\"prompt\": \"a lighthouse at dusk\", \"size\": \"1536x1024\", \"quality\": \"high\", \"name\": \"lighthouse\"}
A JSON line with \"images\" is an edit of those files (relative to the prompts file's folder),
with an optional \"mask\" and \"input_fidelity\":
  {\"prompt\": \"give the cat a red hat\", \"images\": [\"cat.png\"], \"mask\": \"hat-mask.png\", \"name\": \"cat-hat\"}
Empty lines and lines starting with # are ignored. Outputs are OUT_DIR/0001.png, 0002.png, ...
(numbered by prompt; NAME-1.png, NAME-2.png when several images come back; the extension is
the format that came back). A line that cannot run (bad JSON, not UTF-8, empty prompt, a name
used twice or colliding with another's numbered files such as cat-1 next to cat, a name no
file can have, a request the model refuses) is reported as a failed prompt before anything is
sent; the others still run. Options from flags that make an invalid request are a usage
error (exit 2), as a bad flag is.

Resumable: each prompt whose images are saved is recorded in OUT_DIR/.image-router-batch.jsonl
(name, prompt, files, provider, cost); a re-run skips recorded prompts whose files exist.
A progress bar is shown on a terminal (not when piped or with --json).
With --json, stdout has one JSON line per prompt and a final {\"summary\": ...} line.
Exit code 1 when any prompt failed.

Examples:
  image-router batch --prompts prompts.txt --out-dir out          # providers from OPENAI_API_KEY
  image-router batch -c router.toml --prompts prompts.txt --out-dir out
  cat prompts.txt | image-router batch -c router.toml --prompts - --out-dir out --quiet
  image-router batch -c router.toml --prompts prompts.jsonl --out-dir out --concurrency 8 --quality low --json";

#[derive(Debug, Args)]
pub struct BatchArgs {
    #[command(flatten)]
    pub common: Common,
    /// The prompts file (text or JSON lines); `-` reads the lines from standard input.
    #[arg(long, value_name = "FILE")]
    pub prompts: PathBuf,
    /// Folder for the images (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Prompts in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Defaults for every prompt (a JSON line's own fields win).
    #[command(flatten)]
    pub opts: RequestOpts,
}

#[derive(Debug, Default, Serialize)]
struct ProviderSummary {
    served: usize,
    images: usize,
    failed_attempts: usize,
    outcomes: BTreeMap<String, usize>,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    total: usize,
    generated: usize,
    skipped: usize,
    failed: usize,
    images: usize,
    cost_usd: f64,
    providers: BTreeMap<String, ProviderSummary>,
    failures: Vec<serde_json::Value>,
}

/// Everything checked and ready before the first request.
struct Prepared {
    router: Router,
    catalog: Arc<Catalog>,
    todo: Vec<Job>,
    done: Vec<(Job, Vec<PathBuf>)>,
    bad: Vec<BadLine>,
    manifest: Manifest,
}

pub async fn run(a: BatchArgs) -> ExitCode {
    let json = a.common.json;
    let p = match prepare(&a).await {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut summary = Summary {
        total: p.todo.len() + p.done.len() + p.bad.len(),
        ..Summary::default()
    };
    let dir = Arc::new(a.out_dir.clone());
    report_done_and_bad(json, &a.prompts, &p.done, &p.bad, &mut summary);
    let pb = progress(json, p.todo.len());
    if !json && !p.done.is_empty() {
        pb.println(format!(
            "{} prompt(s) already done in {}: skipped",
            p.done.len(),
            dir.display()
        ));
    }
    let mut manifest = p.manifest;
    let results = stream::iter(p.todo.into_iter().map(|job| {
        let router = p.router.clone();
        let dir = dir.clone();
        async move {
            let class = job.class.clone().map(image_router::RequestClass::from);
            let req = match image_request(&job) {
                Ok(r) => r,
                Err(msg) => return (job, Sent::Unreadable(msg)),
            };
            let res = router.send_as(req.clone(), class.as_ref()).await;
            let written = match &res {
                Ok(r) => Some(write_images(&job_base(&dir, &job), &r.images)),
                Err(_) => None,
            };
            (job, Sent::Done(Box::new((req, res, written))))
        }
    }))
    .buffer_unordered(usize::from(a.concurrency));
    futures_util::pin_mut!(results);
    let mut out = Outcomes {
        json,
        pb: &pb,
        summary: &mut summary,
        manifest: &mut manifest,
        catalog: &p.catalog,
    };
    while let Some((job, sent)) = results.next().await {
        out.pb.inc(1);
        match sent {
            Sent::Done(done) => {
                let (req, res, written) = *done;
                out.finish(job, &req, res, written);
            }
            Sent::Unreadable(msg) => out.unreadable(&job, &msg),
        }
    }
    pb.finish_and_clear();
    if super::quiet() {
        // Only the paths (printed as each prompt finished) and the failures.
    } else if json {
        print_json(&json!({ "summary": summary }));
    } else {
        print_summary(&summary, &dir);
    }
    if summary.failed > 0 {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// Loads the configuration, parses and checks every prompt, builds the router and opens the
/// output folder's manifest. Problems of the command line, the configuration or the output
/// folder end the command (exit 2); problems of single prompts become bad lines.
async fn prepare(a: &BatchArgs) -> Result<Prepared, ExitCode> {
    let json = a.common.json;
    let cfg = super::load_config(&a.common)?;
    let catalog = cfg.catalog().map_err(|e| super::config_failure(&e, json))?;
    let default_model = cfg
        .router
        .default_model
        .clone()
        .unwrap_or_else(|| catalog.default_model().to_string());
    // The flags alone must make a valid request: every prompt would fail otherwise.
    let mut flags = request("flags", &a.opts);
    flags.model = flags.model.or(Some(default_model.clone()));
    if let Err(e) = check_request(&catalog, &flags) {
        return Err(usage_error(
            json,
            &format!("the options make an invalid request: {e}"),
        ));
    }
    let bytes = read_prompts_file(&a.prompts)
        .map_err(|e| usage_error(json, &format!("cannot read {}: {e}", a.prompts.display())))?;
    // Input images of edit lines are relative to the prompts file (stdin: the working folder).
    let base = match a.prompts.parent() {
        Some(p) if a.prompts.as_os_str() != "-" => p.to_path_buf(),
        _ => PathBuf::new(),
    };
    let mut jobs = Vec::new();
    let mut bad = Vec::new();
    for r in parse_prompts(&bytes, &a.opts) {
        match r.and_then(|mut j| {
            j.request.model = j.request.model.or(Some(default_model.clone()));
            let bad = |message: String| BadLine {
                index: j.index,
                line: j.line,
                text: j.request.prompt.clone(),
                message: format!("line {}: {message}", j.line),
            };
            if let Some(e) = &mut j.edit {
                for p in e.images.iter_mut().chain(e.mask.iter_mut()) {
                    if p.is_relative() {
                        *p = base.join(&*p);
                    }
                    check_input(p).map_err(&bad)?;
                }
            }
            match check_request(&catalog, &j.request) {
                Ok(()) => Ok(j),
                Err(e) => Err(BadLine {
                    index: j.index,
                    line: j.line,
                    text: j.request.prompt.clone(),
                    message: format!("line {}: invalid request: {e}", j.line),
                }),
            }
        }) {
            Ok(j) => jobs.push(j),
            Err(b) => bad.push(b),
        }
    }
    let router = cfg.build().map_err(|e| super::config_failure(&e, json))?;
    let manifest = std::fs::create_dir_all(&a.out_dir)
        .and_then(|()| Manifest::open(&a.out_dir))
        .map_err(|e| usage_error(json, &format!("cannot use {}: {e}", a.out_dir.display())))?;
    let (mut todo, mut done) = (Vec::new(), Vec::new());
    for j in jobs {
        match manifest.done(&j.stem, &j.request.prompt) {
            Some(files) => done.push((j, files)),
            None => todo.push(j),
        }
    }
    Ok(Prepared {
        router,
        catalog,
        todo,
        done,
        bad,
        manifest,
    })
}

/// `DIR/STEM.EXT` with the requested format's extension; the writer renames it after the
/// format that comes back and numbers several images.
fn job_base(dir: &Path, job: &Job) -> PathBuf {
    let ext = job
        .request
        .output_format
        .unwrap_or(image_router::OutputFormat::Png)
        .extension();
    dir.join(format!("{}.{ext}", job.stem))
}

/// The router's own pre-flight check of a request against its model's catalog entry.
fn check_request(catalog: &Catalog, req: &image_router::GenerateRequest) -> Result<(), String> {
    let model = req.model.clone().unwrap_or_default();
    let req = ImageRequest::from(req.clone());
    req.validate(catalog.model(&model).map(|s| &s.capabilities))
        .map_err(|e| e.to_string())
}

fn progress(json: bool, len: usize) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg} (eta {eta})",
    ) {
        pb.set_style(style);
    }
    pb
}

/// Lists the prompts already done (skipped) and the lines that cannot run (failed).
fn report_done_and_bad(
    json: bool,
    prompts: &Path,
    done: &[(Job, Vec<PathBuf>)],
    bad: &[BadLine],
    summary: &mut Summary,
) {
    for (j, files) in done {
        summary.skipped += 1;
        if json {
            print_json(&json!({
                "index": j.index, "line": j.line, "prompt": j.request.prompt,
                "status": "skipped", "images": files,
            }));
        }
    }
    let prompts_path = prompts.display().to_string();
    for b in bad {
        summary.failed += 1;
        let msg = format!("{prompts_path}: {}", b.message);
        let entry = json!({
            "index": b.index, "line": b.line, "prompt": b.text,
            "status": "failed",
            "error": {"kind": "invalid_prompt", "message": msg,
                      "explanation": {"cause": msg, "action": "Fix the line (plain text, or a JSON object with at least \"prompt\"), then re-run the same command: done prompts are skipped."}},
        });
        if json {
            print_json(&entry);
        } else {
            eprintln!("failed: prompt {} (line {}): {msg}", b.index, b.line);
        }
        summary.failures.push(entry);
    }
}

type Written = Option<std::io::Result<Vec<PathBuf>>>;

/// Where finished prompts go: the summary, the manifest, the output.
struct Outcomes<'a> {
    json: bool,
    pb: &'a ProgressBar,
    summary: &'a mut Summary,
    manifest: &'a mut Manifest,
    catalog: &'a Catalog,
}

impl Outcomes<'_> {
    fn finish(
        &mut self,
        job: Job,
        req: &ImageRequest,
        res: Result<ImageResponse, image_router::Error>,
        written: Written,
    ) {
        let attempts = match &res {
            Ok(r) => r.attempts.clone(),
            Err(e) => e.attempts().to_vec(),
        };
        for at in attempts.iter().filter(|at| at.error.is_some()) {
            let p = self
                .summary
                .providers
                .entry(at.provider.clone())
                .or_default();
            p.failed_attempts += 1;
            *p.outcomes
                .entry(at.outcome.as_str().to_string())
                .or_default() += 1;
        }
        match (res, written) {
            (Ok(r), Some(Ok(paths))) => self.saved(&job, req, &r, paths),
            (Ok(r), other) => {
                let why = match other {
                    Some(Err(e)) => e.to_string(),
                    _ => "not written".to_string(),
                };
                self.io_failure(
                    &job,
                    &r,
                    &format!("images from {} could not be written: {why}", r.provider),
                );
            }
            (Err(e), _) => self.failed(&job, &e),
        }
    }

    fn saved(&mut self, job: &Job, req: &ImageRequest, r: &ImageResponse, paths: Vec<PathBuf>) {
        let model = job.request.model.clone().unwrap_or_default();
        let cost = r.cost_usd.or_else(|| {
            output::cost_usd(self.catalog, &model, r.usage.as_ref(), req, r.images.len())
        });
        let entry = Entry {
            id: job.stem.clone(),
            prompt: job.request.prompt.clone(),
            files: paths.iter().map(|p| self.manifest.relative(p)).collect(),
            provider: r.provider.clone(),
            cost_usd: cost,
        };
        if let Err(e) = self.manifest.record(entry) {
            // The images are saved; only the record of it is missing, so a re-run would
            // generate them again: say so.
            let msg = format!("images saved, but the batch manifest could not be written ({e}): a re-run would generate this prompt again");
            self.io_failure(job, r, &msg);
            return;
        }
        self.summary.generated += 1;
        self.summary.images += paths.len();
        self.summary.cost_usd += cost.unwrap_or(0.0);
        let p = self
            .summary
            .providers
            .entry(r.provider.clone())
            .or_default();
        p.served += 1;
        p.images += paths.len();
        if super::quiet() && !self.json {
            // `suspend`, not `println`: a hidden bar (not a terminal) drops `println` lines.
            self.pb.suspend(|| {
                for path in &paths {
                    println!("{}", path.display());
                }
            });
        }
        if self.json {
            print_json(&json!({
                "index": job.index, "line": job.line, "prompt": job.request.prompt,
                "status": "ok", "provider": r.provider, "model": model,
                "images": paths, "usage": r.usage, "cost_usd": cost,
                "attempts": output::attempts_json(&r.attempts),
            }));
        }
    }

    /// A job whose input images could not be read when it was due (nothing was sent).
    fn unreadable(&mut self, job: &Job, msg: &str) {
        self.summary.failed += 1;
        let msg = format!("line {}: {msg}", job.line);
        let entry = json!({
            "index": job.index, "line": job.line, "prompt": job.request.prompt,
            "status": "failed",
            "error": {"kind": "invalid_prompt", "message": msg,
                      "explanation": {"cause": msg, "action": "Check the line's input files (they must exist, be readable, and be png, jpeg or webp under 50 MB), then re-run the same command: done prompts are skipped."}},
        });
        report_failure(self.json, self.pb, job, &msg, entry, self.summary);
    }

    fn io_failure(&mut self, job: &Job, r: &ImageResponse, msg: &str) {
        self.summary.failed += 1;
        let entry = json!({
            "index": job.index, "line": job.line, "prompt": job.request.prompt,
            "status": "failed",
            "error": {"kind": "io", "message": msg,
                      "explanation": {"cause": msg, "action": "Check that the output folder is writable and the disk has room, then re-run to resume."}},
            "attempts": output::attempts_json(&r.attempts),
        });
        report_failure(self.json, self.pb, job, msg, entry, self.summary);
    }

    fn failed(&mut self, job: &Job, e: &image_router::Error) {
        self.summary.failed += 1;
        let entry = json!({
            "index": job.index, "line": job.line, "prompt": job.request.prompt,
            "status": "failed",
            "error": output::error_json(e),
            "attempts": output::attempts_json(e.attempts()),
            "skipped": output::skipped_json(e.skipped()),
        });
        let msg = super::redact::text(&format!(
            "{e}\n    {}",
            e.explain().to_string().replace('\n', "\n    ")
        ));
        report_failure(self.json, self.pb, job, &msg, entry, self.summary);
    }
}

fn report_failure(
    json: bool,
    pb: &ProgressBar,
    job: &Job,
    msg: &str,
    entry: serde_json::Value,
    summary: &mut Summary,
) {
    if json {
        print_json(&entry);
    } else {
        // `suspend`, not `println`: a hidden bar (not a terminal) drops `println` lines, and
        // a failure must be seen as it happens (with --quiet it is all there is).
        pb.suspend(|| eprintln!("failed: prompt {} (line {}): {msg}", job.index, job.line));
    }
    summary.failures.push(entry);
}

fn print_summary(s: &Summary, dir: &Path) {
    eprintln!(
        "{} prompt(s): {} generated, {} skipped (already done), {} failed; {} image(s) in {}; about ${:.4}",
        s.total,
        s.generated,
        s.skipped,
        s.failed,
        s.images,
        dir.display(),
        s.cost_usd
    );
    if !s.providers.is_empty() {
        eprintln!(
            "{:<24} {:>7} {:>7} {:>15}  outcomes",
            "provider", "served", "images", "failed attempts"
        );
        for (name, p) in &s.providers {
            let outcomes = p
                .outcomes
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            eprintln!(
                "{name:<24} {:>7} {:>7} {:>15}  {outcomes}",
                p.served, p.images, p.failed_attempts
            );
        }
    }
    if s.failed > 0 {
        eprintln!("failed prompts (re-run the same command to retry only these):");
        for f in &s.failures {
            eprintln!(
                "  prompt {} (line {}): {}",
                f["index"],
                f["line"],
                f["error"]["message"].as_str().unwrap_or("")
            );
        }
    }
}

/// The prompts file's bytes; `-` is standard input.
fn read_prompts_file(path: &Path) -> std::io::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path)
    }
}

/// A job's request: a generation, or an edit with its input files read now (just before it
/// is sent, so a large batch does not hold every input in memory).
fn image_request(job: &Job) -> Result<ImageRequest, String> {
    match &job.edit {
        None => Ok(job.request.clone().into()),
        Some(e) => {
            let (images, mask) = read_inputs(&e.images, e.mask.as_deref())?;
            let mut r = edit_from(&job.request, images, mask);
            r.input_fidelity = e.input_fidelity;
            Ok(r.into())
        }
    }
}

/// What became of a job that was due.
enum Sent {
    /// Sent: the request, the router's answer and the writing of its images (boxed: the
    /// answer is large next to the other variant).
    Done(
        Box<(
            ImageRequest,
            Result<ImageResponse, image_router::Error>,
            Written,
        )>,
    ),
    /// Its input files could not be read (nothing was sent).
    Unreadable(String),
}
