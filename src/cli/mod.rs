//! The command line: argument parsing (clap derive), shared helpers and exit codes.
//!
//! Exit codes: 0 success; 1 the work failed (no image, some prompts failed, a provider is
//! unusable); 2 the command line or the configuration is wrong (options that make an invalid
//! request included: they are as wrong as a bad flag).
//!
//! Layout: one module per subcommand (`generate` and `edit` share the request path in
//! `generate`); `setup` finds the configuration (flag, `IMAGE_ROUTER_CONFIG`, a file in the
//! working or user config directory, else the environment's conventional variables);
//! `logging` turns `-v` / `RUST_LOG` into a tracing subscriber on stderr; `completions` writes
//! shell completions and the man page from the same clap definitions.

mod batch;
mod completions;
mod config_cmd;
mod doctor;
mod edit;
mod generate;
mod jobs;
mod logging;
mod output;
mod plan;
// The library's redaction helpers, compiled into the binary too (they are crate-private there).
#[allow(dead_code)]
#[path = "../redact.rs"]
mod redact;
mod setup;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{ArgAction, Args, Parser, Subcommand};
use image_router::config::RouterConfig;
use image_router::{Background, ConfigError, OutputFormat, Quality, Size};

/// Exit code: the work failed (no image, some prompts failed, a provider is unusable).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the command line or the configuration is wrong.
pub const EXIT_CONFIG: u8 = 2;

const AFTER_HELP: &str = "\
Examples:
  export OPENAI_API_KEY=...      # no config file needed: providers from the environment
  image-router generate --prompt \"a watercolor fox\" --out fox.png
  image-router edit --image fox.png --prompt \"give the fox a red scarf\" --out scarf.png
  image-router generate --config router.toml --prompt \"a watercolor fox\" --out fox.png
  image-router batch --config router.toml --prompts prompts.txt --out-dir out --concurrency 4
  image-router doctor --config router.toml
  image-router status --config router.toml --json
  image-router plan --config router.toml --prompts prompts.txt
  image-router jobs submit --config router.toml --prompts prompts.txt   # durable queue
  image-router worker --config router.toml                             # drains it
  image-router config init       # write image-router.toml from what the environment has

Configuration: --config FILE, else IMAGE_ROUTER_CONFIG, else ./image-router.toml, else
$XDG_CONFIG_HOME/image-router/image-router.toml (~/.config/...), else the variables
OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_ORG_ID, OPENAI_PROJECT_ID, AZURE_OPENAI_ENDPOINT,
AZURE_OPENAI_API_KEY (or AZURE_OPENAI_AD_TOKEN), AZURE_OPENAI_DEPLOYMENT, OPENAI_API_VERSION.
-v shows the router's request and attempt spans on stderr, -vv its decisions; RUST_LOG
(e.g. RUST_LOG=image_router=debug) sets the filter itself.

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
    #[command(flatten)]
    global: Global,
}

/// Options of every command, accepted before or after the subcommand.
#[derive(Debug, Args)]
pub struct Global {
    /// More output on stderr: -v the router's request and attempt spans, -vv its decisions
    /// (ranking, skips, waits), -vvv everything it traces. RUST_LOG, when set, is the filter.
    #[arg(long, short = 'v', action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Print only the paths of the files written (stdout) and errors (stderr). (No short
    /// form: -q is --quality.)
    #[arg(long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

static QUIET: AtomicBool = AtomicBool::new(false);

/// Whether `--quiet` was given: informational lines on stderr are left out.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
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
    /// Edit images (one or more inputs, an optional mask) with a prompt and write the results.
    #[command(after_help = edit::AFTER_HELP)]
    Edit(edit::EditArgs),
    /// The durable job queue: submit, status, list, cancel (drained by `worker`).
    #[command(subcommand, after_help = jobs::JOBS_HELP)]
    Jobs(jobs::JobsCommand),
    /// Drain the job queue through the router until interrupted.
    #[command(after_help = jobs::WORKER_HELP)]
    Worker(jobs::WorkerArgs),
    /// Configuration files: `config init` writes a commented one from the environment.
    #[command(subcommand, after_help = config_cmd::CONFIG_HELP)]
    Config(config_cmd::ConfigCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = completions::COMPLETIONS_HELP)]
    Completions(completions::CompletionsArgs),
    /// Write the man pages (roff), from the same definitions as --help.
    #[command(after_help = completions::MAN_HELP)]
    Man(completions::ManArgs),
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct Common {
    /// The TOML configuration file. Without it: IMAGE_ROUTER_CONFIG, ./image-router.toml,
    /// the user's config directory (image-router/image-router.toml), else providers from
    /// the environment (OPENAI_API_KEY, AZURE_OPENAI_ENDPOINT, ...).
    #[arg(long, short = 'c', env = "IMAGE_ROUTER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
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
    /// Leave the response cache out for this request (when the config's `[cache]` table
    /// turns it on): neither answered from it nor stored in it.
    #[arg(long)]
    pub no_cache: bool,
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

/// Loads the config (the file given or found, else the environment's providers, see
/// [`setup`]), printing the explained error (text or JSON) on failure.
pub fn load_config(common: &Common) -> Result<RouterConfig, ExitCode> {
    setup::load(common.config.as_deref(), &image_router::config::process_env)
        .map_err(|e| config_failure(&e, common.json))
}

/// Prints a usage problem found after parsing (a file that cannot be read, a bad prompt) and
/// returns the usage exit code.
pub fn usage_error(json: bool, msg: &str) -> ExitCode {
    let msg = redact::text(msg);
    if json {
        output::print_json(&serde_json::json!({"error": {"kind": "usage", "message": msg}}));
    } else {
        eprintln!("error: {msg}");
    }
    ExitCode::from(EXIT_CONFIG)
}

/// `--prompt -` reads the prompt from standard input (all of it, the final line break
/// dropped); any other value is the prompt itself.
pub fn read_prompt(prompt: &str, json: bool) -> Result<String, ExitCode> {
    if prompt != "-" {
        return Ok(prompt.to_string());
    }
    // A prompt is at most tens of thousands of characters (the longest model limit is 32,000);
    // reading stops one byte past 1 MiB so a stream piped by mistake cannot fill the memory.
    const MAX_PROMPT_BYTES: u64 = 1 << 20;
    let mut text = String::new();
    let read = std::io::Read::read_to_string(
        &mut std::io::Read::take(std::io::stdin(), MAX_PROMPT_BYTES + 1),
        &mut text,
    );
    if let Err(e) = read {
        return Err(usage_error(
            json,
            &format!("cannot read the prompt from standard input: {e}"),
        ));
    }
    if text.len() as u64 > MAX_PROMPT_BYTES {
        return Err(usage_error(
            json,
            "--prompt - read more than 1 MiB from standard input: that is not a prompt",
        ));
    }
    let text = text.trim_end_matches(['\n', '\r']).to_string();
    if text.trim().is_empty() {
        return Err(usage_error(
            json,
            "--prompt - read an empty prompt from standard input",
        ));
    }
    Ok(text)
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
    QUIET.store(cli.global.quiet, Ordering::Relaxed);
    logging::init(cli.global.verbose, cli.global.quiet);
    // Commands that need no runtime.
    match &cli.command {
        Command::Completions(a) => return completions::completions(a),
        Command::Man(a) => return completions::man(a),
        Command::Config(c) => return config_cmd::run(c),
        _ => {}
    }
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
            Command::Jobs(c) => jobs::run(c).await,
            Command::Worker(a) => jobs::worker(a).await,
            Command::Doctor(a) => doctor::run(a).await,
            Command::Status(a) => status::run(a).await,
            Command::Plan(a) => plan::run(a).await,
            Command::Edit(a) => edit::run(a).await,
            // Handled above, without a runtime.
            Command::Config(_) | Command::Completions(_) | Command::Man(_) => ExitCode::SUCCESS,
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

    /// Splits an example's command line as a shell would (double quotes, `\"` inside them);
    /// `None` for a line that is not an `image-router` invocation. A trailing `# comment`
    /// and redirections (`> FILE`) are dropped; of a pipeline, the `image-router` part is taken.
    fn example_args(line: &str) -> Option<Vec<String>> {
        let line = line
            .split(" | ")
            .map(str::trim)
            .find(|cmd| cmd.starts_with("image-router "))?;
        let (mut words, mut cur, mut quoted, mut in_word) =
            (Vec::new(), String::new(), false, false);
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if quoted && chars.peek() == Some(&'"') => {
                    cur.push('"');
                    chars.next();
                }
                '"' => {
                    quoted = !quoted;
                    in_word = true;
                }
                '#' | '>' if !quoted && !in_word => break,
                c if c.is_whitespace() && !quoted => {
                    if in_word {
                        words.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                }
                c => {
                    cur.push(c);
                    in_word = true;
                }
            }
        }
        if in_word {
            words.push(cur);
        }
        Some(words)
    }

    /// Every example in every `--help` parses with the real definitions: the help shows
    /// commands that work, not ones that drifted from the flags.
    #[test]
    fn every_help_example_parses() {
        let mut seen = std::collections::BTreeSet::new();
        let mut cmds = vec![Cli::command()];
        while let Some(c) = cmds.pop() {
            // The text as written (the rendered help wraps long lines).
            let help = c
                .get_after_help()
                .map(ToString::to_string)
                .unwrap_or_default();
            let examples: Vec<Vec<String>> = help.lines().filter_map(example_args).collect();
            if c.get_name() != "help" && !c.has_subcommands() {
                assert!(
                    !examples.is_empty(),
                    "{} --help has no example",
                    c.get_name()
                );
            }
            for args in examples {
                if let Err(e) = Cli::try_parse_from(&args) {
                    panic!(
                        "example {args:?} in {} --help does not parse: {e}",
                        c.get_name()
                    );
                }
                seen.insert(args.get(1).cloned().unwrap_or_default());
            }
            cmds.extend(c.get_subcommands().cloned());
        }
        for sub in [
            "generate",
            "edit",
            "batch",
            "doctor",
            "status",
            "config",
            "completions",
            "man",
        ] {
            assert!(
                seen.contains(sub),
                "no example runs `image-router {sub}`: {seen:?}"
            );
        }
        assert_eq!(
            example_args("image-router man | man -l -"),
            Some(vec!["image-router".to_string(), "man".to_string()])
        );
        assert_eq!(example_args("export OPENAI_API_KEY=..."), None);
        assert_eq!(
            example_args(r#"echo "x" | image-router generate --prompt "a \"b\"" --out f.png  # c"#),
            Some(vec![
                "image-router".into(),
                "generate".into(),
                "--prompt".into(),
                "a \"b\"".into(),
                "--out".into(),
                "f.png".into()
            ])
        );
    }
}
