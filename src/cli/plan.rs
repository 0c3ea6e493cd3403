//! `image-router plan`: the forecast of a prompts file on the configured accounts — time to
//! drain, each provider's share and cost, what binds first, what cannot be served and the
//! cheaper alternatives — before anything is sent (see `image_router::forecast`).
//!
//! Nothing is sent and no key is needed: a provider whose key variable is unset is built with
//! a placeholder (as `status` does), so a plan can be made before the keys are handed out. A
//! fresh process has no runtime state, so the plan starts from empty windows and budgets.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use image_router::config::{build_provider, process_env};
use image_router::forecast::{WorkItem, Workload, WorkloadError};
use image_router::{Quality, Size};
use serde_json::json;

use super::output::print_json;
use super::{redact, Common, EXIT_CONFIG, EXIT_FAILED};

pub const AFTER_HELP: &str = "\
Examples:
  image-router plan -c router.toml --prompts prompts.txt
  image-router plan -c router.toml --prompts prompts.txt --quality high --n 2 --json

The prompts file is the one `batch` reads (one prompt per line, or one JSON object per line);
--model/--size/--quality/--n are the defaults of its lines. Nothing is sent.
Exit codes: 0 every prompt can be served, 1 some cannot (listed), 2 invalid command line,
configuration or prompts file (the error names the line).";

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub common: Common,
    /// The prompts file: one prompt per line, or one JSON object per line.
    #[arg(long, short = 'p', value_name = "FILE")]
    pub prompts: PathBuf,
    /// Model (default: the config's `default_model`, else gpt-image-1).
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// Size: auto, 1024x1024, 1536x1024, 1024x1536 (dall-e: 256x256, 512x512, 1792x1024, ...).
    #[arg(long, short = 's', value_parser = super::parse_size)]
    pub size: Option<Size>,
    /// Quality: low, medium, high, auto (dall-e-3: standard, hd).
    #[arg(long, short = 'q', value_parser = super::parse_quality)]
    pub quality: Option<Quality>,
    /// Number of images per prompt, 1-10.
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u8).range(1..=10))]
    pub n: Option<u8>,
}

fn workload_failure(e: &WorkloadError, json: bool) -> ExitCode {
    let message = redact::text(&e.to_string());
    let line = match e {
        WorkloadError::Line { line, .. } => Some(*line),
        _ => None,
    };
    if json {
        print_json(&json!({"error": {"kind": "prompts", "line": line, "message": message}}));
    } else {
        eprintln!("error: {message}");
    }
    ExitCode::from(EXIT_CONFIG)
}

pub async fn run(a: PlanArgs) -> ExitCode {
    let json = a.common.json;
    let cfg = match super::load_config(&a.common) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Nothing is sent: an unset key does not stop a plan.
    let env = |v: &str| Some(process_env(v).unwrap_or_else(|| "placeholder-not-set".into()));
    let router = match cfg.build_with(&env, build_provider) {
        Ok(r) => r,
        Err(e) => return super::config_failure(&e, json),
    };
    let mut defaults = WorkItem::new(1).n(a.n.unwrap_or(1));
    defaults.model = a.model.clone();
    defaults.size = a.size;
    defaults.quality = a.quality;
    let workload = match Workload::from_prompts_file(&a.prompts, &defaults) {
        Ok(w) => w,
        Err(e) => return workload_failure(&e, json),
    };
    let forecast = match router.forecast(&workload) {
        Ok(f) => f,
        Err(e) => {
            let message = redact::text(&e.to_string());
            if json {
                print_json(&json!({"error": {"kind": "forecast", "message": message}}));
            } else {
                eprintln!("error: {message}");
            }
            return ExitCode::from(EXIT_FAILED);
        }
    };
    if json {
        match serde_json::to_value(&forecast) {
            Ok(v) => print_json(&json!({ "forecast": v })),
            Err(e) => {
                eprintln!("error: cannot write the forecast as JSON: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
        }
    } else {
        print!("{}", redact::text(&forecast.to_string()));
    }
    if forecast.serves_everything() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}
