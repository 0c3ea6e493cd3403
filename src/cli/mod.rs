//! The command line: argument parsing (clap derive), shared helpers and exit codes.
//!
//! Exit codes: 0 success; 1 the work failed (no image, some prompts failed, a provider is
//! unusable); 2 the command line or the configuration is wrong (options that make an invalid
//! request included: they are as wrong as a bad flag).

mod batch;
mod doctor;
mod generate;
mod output;
mod plan;
// The library's redaction helpers, compiled into the binary too (they are crate-private there).
#[allow(dead_code)]
#[path = "../redact.rs"]
mod redact;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use image_router::config::RouterConfig;
use image_router::{Background, ConfigError, OutputFormat, Quality, Size};

/// Exit code: the work failed (no image, some prompts failed, a provider is unusable).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the command line or the configuration is wrong.
pub const EXIT_CONFIG: u8 = 2;

const AFTER_HELP: &str = "\
Examples:
  image-router generate --config router.toml --prompt \"a watercolor fox\" --out fox.png
  image-router batch --config router.toml --prompts prompts.txt --out-dir out --concurrency 4
  image-router doctor --config router.toml
  image-router status --config router.toml --json
  image-router plan --config router.toml --prompts prompts.txt

Exit codes: 0 success, 1 failure (no image / a prompt failed / a provider unusable),
2 invalid command line (or options that make an invalid request) or configuration.

Keys are read from the environment variables the config names (`api_key_env`); they are
never written in the config file nor printed.";

/// Route OpenAI-style image generation across OpenAI, Azure OpenAI and compatible proxies,
/// with rate-limit awareness, failover and plain-words explanations of every access problem.
#[derive(Debug, Parser)]
#[command(name = "image-router", version, after_help = AFTER_HELP, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate images for one prompt and write them to files.
    #[command(after_help = generate::AFTER_HELP)]
    Generate(generate::GenerateArgs),
    /// Generate one image set per prompt of a file; resumable, with a per-provider summary.
    #[command(after_help = batch::AFTER_HELP)]
    Batch(batch::BatchArgs),
    /// Check every provider without generating an image and explain each problem.
    #[command(after_help = doctor::AFTER_HELP)]
    Doctor(doctor::DoctorArgs),
    /// Show the router's configuration and each provider's limits.
    #[command(after_help = status::AFTER_HELP)]
    Status(status::StatusArgs),
    /// Forecast a prompts file before sending it: time to drain, shares, cost, what binds.
    #[command(after_help = plan::AFTER_HELP)]
    Plan(plan::PlanArgs),
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct Common {
    /// The TOML configuration file.
    #[arg(long, short = 'c', env = "IMAGE_ROUTER_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
    /// Print JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Request options shared by `generate` (and defaults for `batch`).
#[derive(Debug, Args, Clone, Default)]
pub struct RequestOpts {
    /// Model (default: the config's `default_model`, else gpt-image-1).
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// Size: auto, 1024x1024, 1536x1024, 1024x1536 (dall-e: 256x256, 512x512, 1792x1024, ...).
    #[arg(long, short = 's', value_parser = parse_size)]
    pub size: Option<Size>,
    /// Quality: low, medium, high, auto (dall-e-3: standard, hd).
    #[arg(long, short = 'q', value_parser = parse_quality)]
    pub quality: Option<Quality>,
    /// Number of images, 1-10.
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u8).range(1..=10))]
    pub n: Option<u8>,
    /// Output format: png, jpeg, webp.
    #[arg(long, value_parser = parse_format)]
    pub output_format: Option<OutputFormat>,
    /// Background: transparent, opaque, auto.
    #[arg(long, value_parser = parse_background)]
    pub background: Option<Background>,
    /// Request class (e.g. interactive, batch): providers `reserved_for` other classes are not
    /// used; providers `preferred_by` it go first.
    #[arg(long)]
    pub class: Option<String>,
}

fn parse_size(s: &str) -> Result<Size, String> {
    s.parse::<Size>().map_err(|e| e.to_string())
}
fn parse_quality(s: &str) -> Result<Quality, String> {
    s.parse::<Quality>().map_err(|e| e.to_string())
}
fn parse_format(s: &str) -> Result<OutputFormat, String> {
    s.parse::<OutputFormat>().map_err(|e| e.to_string())
}
fn parse_background(s: &str) -> Result<Background, String> {
    s.parse::<Background>().map_err(|e| e.to_string())
}

/// Loads the config, printing the explained error (text or JSON) on failure.
pub fn load_config(common: &Common) -> Result<RouterConfig, ExitCode> {
    RouterConfig::from_file(&common.config).map_err(|e| config_failure(&e, common.json))
}

/// Prints a configuration error (explained) and returns the config exit code.
pub fn config_failure(e: &ConfigError, json: bool) -> ExitCode {
    let x = e.explain();
    let (cause, action) = (redact::text(&x.cause), redact::text(&x.action));
    let message = redact::text(&e.to_string());
    if json {
        output::print_json(&serde_json::json!({
            "error": {
                "kind": "config",
                "field": e.field,
                "line": e.line,
                "message": message,
                "explanation": {"cause": cause, "action": action},
            }
        }));
    } else {
        eprintln!("error: {message}");
        eprintln!("{}", redact::text(&x.to_string()));
    }
    ExitCode::from(EXIT_CONFIG)
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    rt.block_on(async move {
        match cli.command {
            Command::Generate(a) => generate::run(a).await,
            Command::Batch(a) => batch::run(a).await,
            Command::Doctor(a) => doctor::run(a).await,
            Command::Status(a) => status::run(a).await,
            Command::Plan(a) => plan::run(a).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }
}
