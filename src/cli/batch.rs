//! `image-router batch`: one image set per prompt, resumable, with a per-provider summary.
//!
//! Nothing is lost: every prompt ends as files on disk or as a listed error (text on stderr,
//! or a JSON line). A prompt whose output files all exist is skipped, so re-running the same
//! command resumes an interrupted batch. Files are written atomically (temporary name, then
//! rename), so a half-written image never counts as done.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use futures_util::stream::{self, StreamExt};
use image_router::{GenerateRequest, OutputFormat, Router};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::generate::{request, write_images};
use super::output::{self, print_json};
use super::{Common, RequestOpts, EXIT_CONFIG, EXIT_FAILED};

pub const AFTER_HELP: &str = "\
The prompts file has one prompt per line, or one JSON object per line with per-prompt
options (any request field, plus \"name\" for the output file's stem and \"class\"):
  a watercolor fox
  {\"prompt\": \"a lighthouse at dusk\", \"size\": \"1536x1024\", \"quality\": \"high\", \"name\": \"lighthouse\"}
Empty lines and lines starting with # are ignored. Outputs are OUT_DIR/0001.png, 0002.png, ...
(numbered by prompt; NAME-1.png, NAME-2.png when n > 1). A line that cannot be read (bad
JSON, empty prompt, a name used twice) is reported as a failed prompt; the others still run.

Resumable: prompts whose output files exist are skipped, so re-running continues a batch.
A progress bar is shown on a terminal (not when piped or with --json).
With --json, stdout has one JSON line per prompt and a final {\"summary\": ...} line.
Exit code 1 when any prompt failed.

Examples:
  image-router batch -c router.toml --prompts prompts.txt --out-dir out
  image-router batch -c router.toml --prompts prompts.jsonl --out-dir out --concurrency 8 --quality low --json";

#[derive(Debug, Args)]
pub struct BatchArgs {
    #[command(flatten)]
    pub common: Common,
    /// The prompts file (text or JSON lines).
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

#[derive(Debug, Deserialize)]
struct JsonLine {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    class: Option<String>,
    #[serde(flatten)]
    request: GenerateRequest,
}

/// One prompt to run.
#[derive(Debug, Clone)]
struct Job {
    index: usize,
    line: usize,
    stem: String,
    class: Option<String>,
    request: GenerateRequest,
}

impl Job {
    fn ext(&self) -> &'static str {
        self.request
            .output_format
            .unwrap_or(OutputFormat::Png)
            .extension()
    }
    fn base(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.{}", self.stem, self.ext()))
    }
    /// The files this prompt produces.
    fn outputs(&self, dir: &Path) -> Vec<PathBuf> {
        let n = usize::from(self.request.n.unwrap_or(1));
        if n <= 1 {
            return vec![self.base(dir)];
        }
        (1..=n)
            .map(|k| dir.join(format!("{}-{k}.{}", self.stem, self.ext())))
            .collect()
    }
}

/// A line of the prompts file that cannot run (bad JSON, empty prompt, bad or duplicate
/// name). It is reported as a failed prompt; the other lines still run.
#[derive(Debug, Clone)]
struct BadLine {
    index: usize,
    line: usize,
    text: String,
    message: String,
}

/// Parses the prompts file. Every non-empty, non-comment line gets the next index (so fixing
/// a bad line later does not renumber the outputs of the others) and becomes a job or a bad
/// line: one bad line never stops the batch.
fn parse_prompts(text: &str, defaults: &RequestOpts) -> Vec<Result<Job, BadLine>> {
    let mut out = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let index = out.len() + 1;
        let bad = |message: String| BadLine {
            index,
            line,
            text: t.to_string(),
            message: format!("line {line}: {message}"),
        };
        out.push(parse_line(t, index, line, defaults, &mut names).map_err(bad));
    }
    out
}

/// Refuses a JSON line with a field the request does not have (`"qualty": "high"` would
/// otherwise be dropped silently and a different, billed, image generated). The known fields
/// are the ones the parsed request serializes back, plus `name` and `class`.
fn check_known_fields(t: &str, j: &JsonLine) -> Result<(), String> {
    let input: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(t).map_err(|e| format!("not a valid JSON prompt: {e}"))?;
    let known = match serde_json::to_value(&j.request) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => return Ok(()),
    };
    let unknown: Vec<&str> = input
        .iter()
        .filter(|(k, v)| {
            !v.is_null() && k.as_str() != "name" && k.as_str() != "class" && !known.contains_key(*k)
        })
        .map(|(k, _)| k.as_str())
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "unknown field(s) {unknown:?}; a JSON prompt takes the request fields (prompt, \
             model, n, size, quality, background, output_format, output_compression, \
             moderation, user, style) plus \"name\" and \"class\""
        ))
    }
}

fn parse_line(
    t: &str,
    index: usize,
    line: usize,
    defaults: &RequestOpts,
    names: &mut std::collections::HashSet<String>,
) -> Result<Job, String> {
    let default_req = request("", defaults);
    let (name, class, req) = if t.starts_with('{') {
        let j: JsonLine =
            serde_json::from_str(t).map_err(|e| format!("not a valid JSON prompt: {e}"))?;
        check_known_fields(t, &j)?;
        let mut r = j.request;
        r.model = r.model.or(default_req.model);
        r.size = r.size.or(default_req.size);
        r.quality = r.quality.or(default_req.quality);
        r.n = r.n.or(default_req.n);
        r.output_format = r.output_format.or(default_req.output_format);
        r.background = r.background.or(default_req.background);
        (j.name, j.class.or(defaults.class.clone()), r)
    } else {
        let mut r = default_req;
        r.prompt = t.to_string();
        (None, defaults.class.clone(), r)
    };
    if req.prompt.trim().is_empty() {
        return Err("empty prompt".to_string());
    }
    let stem = match name {
        Some(n) => {
            if n.is_empty() || n.contains(['/', '\\']) || n.starts_with('.') {
                return Err(format!("\"name\" must be a plain file name, got {n:?}"));
            }
            n
        }
        None => format!("{index:04}"),
    };
    if !names.insert(stem.clone()) {
        return Err(format!("output name {stem:?} is used twice"));
    }
    Ok(Job {
        index,
        line,
        stem,
        class,
        request: req,
    })
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

pub async fn run(a: BatchArgs) -> ExitCode {
    let json = a.common.json;
    let cfg = match super::load_config(&a.common) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let catalog = match cfg.catalog() {
        Ok(c) => c,
        Err(e) => return super::config_failure(&e, json),
    };
    let text = match std::fs::read_to_string(&a.prompts) {
        Ok(t) => t,
        Err(e) => return usage_error(json, &format!("cannot read {}: {e}", a.prompts.display())),
    };
    let (mut jobs, bad): (Vec<Job>, Vec<BadLine>) = {
        let (ok, bad): (Vec<_>, Vec<_>) = parse_prompts(&text, &a.opts)
            .into_iter()
            .partition(Result::is_ok);
        (
            ok.into_iter().filter_map(Result::ok).collect(),
            bad.into_iter().filter_map(Result::err).collect(),
        )
    };
    let default_model = cfg
        .router
        .default_model
        .clone()
        .unwrap_or_else(|| catalog.default_model().to_string());
    for j in &mut jobs {
        if j.request.model.is_none() {
            j.request.model = Some(default_model.clone());
        }
    }
    let router: Router = match cfg.build() {
        Ok(r) => r,
        Err(e) => return super::config_failure(&e, json),
    };
    if let Err(e) = std::fs::create_dir_all(&a.out_dir) {
        return usage_error(json, &format!("cannot create {}: {e}", a.out_dir.display()));
    }

    let mut summary = Summary {
        total: jobs.len() + bad.len(),
        ..Summary::default()
    };
    let dir = Arc::new(a.out_dir.clone());
    let (todo, done): (Vec<Job>, Vec<Job>) = jobs
        .into_iter()
        .partition(|j| !j.outputs(&dir).iter().all(|p| p.exists()));
    for j in &done {
        summary.skipped += 1;
        if json {
            print_json(&json!({
                "index": j.index, "line": j.line, "prompt": j.request.prompt,
                "status": "skipped", "images": j.outputs(&dir),
            }));
        }
    }

    // Lines that cannot run are listed failures; the others still run.
    let prompts_path = a.prompts.display().to_string();
    for b in &bad {
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

    let pb = if !json && std::io::stderr().is_terminal() {
        let pb = ProgressBar::new(todo.len() as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg} (eta {eta})",
        ) {
            pb.set_style(style);
        }
        pb
    } else {
        ProgressBar::hidden()
    };
    if !json && !done.is_empty() {
        pb.println(format!(
            "{} prompt(s) already done in {}: skipped",
            done.len(),
            dir.display()
        ));
    }

    let results = stream::iter(todo.into_iter().map(|job| {
        let router = router.clone();
        let dir = dir.clone();
        async move {
            let class = job
                .class
                .clone()
                .map(image_router::class::RequestClass::from);
            let res = router
                .send_as(job.request.clone().into(), class.as_ref())
                .await;
            let written = match &res {
                Ok(r) => Some(write_images(&job.base(&dir), &r.images)),
                Err(_) => None,
            };
            (job, res, written)
        }
    }))
    .buffer_unordered(usize::from(a.concurrency));
    futures_util::pin_mut!(results);

    while let Some((job, res, written)) = results.next().await {
        pb.inc(1);
        let attempts = match &res {
            Ok(r) => r.attempts.clone(),
            Err(e) => e.attempts().to_vec(),
        };
        for at in &attempts {
            if at.error.is_some() {
                let p = summary.providers.entry(at.provider.clone()).or_default();
                p.failed_attempts += 1;
                *p.outcomes
                    .entry(at.outcome.as_str().to_string())
                    .or_default() += 1;
            }
        }
        match res {
            Ok(r) => match written {
                Some(Ok(paths)) => {
                    summary.generated += 1;
                    summary.images += paths.len();
                    let model = job.request.model.clone().unwrap_or_default();
                    let cost = r.cost_usd.or_else(|| {
                        output::cost_usd(
                            &catalog,
                            &model,
                            r.usage.as_ref(),
                            &job.request,
                            r.images.len(),
                        )
                    });
                    summary.cost_usd += cost.unwrap_or(0.0);
                    let p = summary.providers.entry(r.provider.clone()).or_default();
                    p.served += 1;
                    p.images += paths.len();
                    if json {
                        print_json(&json!({
                            "index": job.index, "line": job.line, "prompt": job.request.prompt,
                            "status": "ok", "provider": r.provider, "model": model,
                            "images": paths, "usage": r.usage, "cost_usd": cost,
                            "attempts": output::attempts_json(&r.attempts),
                        }));
                    }
                }
                other => {
                    let why = match other {
                        Some(Err(e)) => e.to_string(),
                        _ => "not written".to_string(),
                    };
                    let msg = format!("images from {} could not be written: {why}", r.provider);
                    summary.failed += 1;
                    let entry = json!({
                        "index": job.index, "line": job.line, "prompt": job.request.prompt,
                        "status": "failed",
                        "error": {"kind": "io", "message": msg,
                                  "explanation": {"cause": msg, "action": "Check that the output folder is writable and the disk has room, then re-run to resume."}},
                        "attempts": output::attempts_json(&r.attempts),
                    });
                    report_failure(json, &pb, &job, &msg, entry, &mut summary);
                }
            },
            Err(e) => {
                summary.failed += 1;
                let entry = json!({
                    "index": job.index, "line": job.line, "prompt": job.request.prompt,
                    "status": "failed",
                    "error": output::error_json(&e),
                    "attempts": output::attempts_json(e.attempts()),
                    "skipped": output::skipped_json(e.skipped()),
                });
                let msg = format!(
                    "{e}\n    {}",
                    e.explain().to_string().replace('\n', "\n    ")
                );
                report_failure(json, &pb, &job, &msg, entry, &mut summary);
            }
        }
    }
    pb.finish_and_clear();

    if json {
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
        pb.println(format!(
            "failed: prompt {} (line {}): {msg}",
            job.index, job.line
        ));
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

fn usage_error(json: bool, msg: &str) -> ExitCode {
    if json {
        print_json(&json!({"error": {"kind": "usage", "message": msg}}));
    } else {
        eprintln!("error: {msg}");
    }
    ExitCode::from(EXIT_CONFIG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_file_text_and_json_lines() {
        let text = "a fox\n\n# comment\n{\"prompt\": \"a cat\", \"n\": 2, \"name\": \"cat\", \"output_format\": \"jpeg\"}\n";
        let jobs: Vec<Job> = parse_prompts(text, &RequestOpts::default())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].stem, "0001");
        assert_eq!(jobs[0].line, 1);
        assert_eq!(jobs[1].line, 4);
        let outs = jobs[1].outputs(Path::new("d"));
        assert_eq!(
            outs,
            vec![PathBuf::from("d/cat-1.jpg"), PathBuf::from("d/cat-2.jpg")]
        );
        let bad = parse_prompts("{\"prompt\": 3}\nok\n", &RequestOpts::default());
        assert!(bad[0].as_ref().unwrap_err().message.contains("line 1"));
        assert_eq!(
            bad[1].as_ref().unwrap().stem,
            "0002",
            "a bad line keeps its number"
        );
        let typo = parse_prompts(
            "{\"prompt\": \"x\", \"qualty\": \"high\"}",
            &RequestOpts::default(),
        );
        assert!(typo[0].as_ref().unwrap_err().message.contains("qualty"));
        let known = parse_prompts(
            "{\"prompt\": \"x\", \"quality\": \"high\", \"user\": null, \"class\": \"batch\"}",
            &RequestOpts::default(),
        );
        assert!(known[0].is_ok(), "{known:?}");
        assert!(parse_prompts(
            "{\"prompt\": \"x\", \"name\": \"../x\"}",
            &RequestOpts::default()
        )[0]
        .is_err());
    }
}
