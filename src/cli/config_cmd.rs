//! `image-router config init`: a commented starting configuration file from what the
//! environment describes ([`EnvSetup::to_toml`]): the providers the conventional variables
//! make, their non-secret settings (base URL, organization, endpoint, deployment, API
//! version) and the variables' *names* for the keys. An existing file is never overwritten
//! without `--force`; the text is loaded back with the config parser before it is written, so
//! the file written is one `--config` accepts.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use image_router::config::{process_env, EnvSetup, RouterConfig};

use super::setup::{user_config_dir, FILE_NAME};
use super::{usage_error, EXIT_FAILED};

/// `config --help`'s examples.
pub const CONFIG_HELP: &str = "\
Examples:
  image-router config init                      # ./image-router.toml from the environment
  image-router config init --user --force       # the user's config directory, replacing it";

const INIT_HELP: &str = "\
The file names the environment variables that hold the keys (api_key_env), never the keys.
Providers come from OPENAI_API_KEY (with OPENAI_BASE_URL, OPENAI_ORG_ID, OPENAI_PROJECT_ID)
and AZURE_OPENAI_ENDPOINT with AZURE_OPENAI_API_KEY or AZURE_OPENAI_AD_TOKEN and
AZURE_OPENAI_DEPLOYMENT (and OPENAI_API_VERSION); with none set, the file starts with an
OpenAI provider naming OPENAI_API_KEY. An existing file is kept unless --force.

Examples:
  image-router config init                      # ./image-router.toml
  image-router config init --user               # ~/.config/image-router/image-router.toml
  image-router config init --out router.toml --force
  image-router config init --out -              # print it";

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Write a commented configuration file from the providers the environment describes.
    #[command(after_help = INIT_HELP)]
    Init(InitArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write (default ./image-router.toml); `-` prints it on stdout.
    #[arg(long, short = 'o', value_name = "PATH", conflicts_with = "user")]
    pub out: Option<PathBuf>,
    /// Write to the user's config directory ($XDG_CONFIG_HOME/image-router/, else
    /// ~/.config/image-router/), where every command finds it.
    #[arg(long)]
    pub user: bool,
    /// Overwrite the file if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(c: &ConfigCommand) -> ExitCode {
    match c {
        ConfigCommand::Init(a) => init(a),
    }
}

fn init(a: &InitArgs) -> ExitCode {
    let setup = match EnvSetup::detect(&process_env) {
        Ok(s) => s,
        Err(e) => return super::config_failure(&e, false),
    };
    let text = setup.to_toml();
    // What is written must load: a starting file that `--config` refuses helps nobody.
    if let Err(e) = text.parse::<RouterConfig>() {
        eprintln!("error: the generated configuration does not load ({e}); please report this");
        return ExitCode::from(EXIT_FAILED);
    }
    let path = match (&a.out, a.user) {
        (Some(p), _) if p.as_os_str() == "-" => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        (Some(p), _) => p.clone(),
        (None, true) => match user_config_dir(&process_env) {
            Some(d) => d.join(FILE_NAME),
            None => {
                return usage_error(
                    false,
                    "--user: neither XDG_CONFIG_HOME nor HOME is set; give --out PATH",
                )
            }
        },
        (None, false) => PathBuf::from(FILE_NAME),
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(parent) {
            eprintln!("error: cannot create {}: {e}", parent.display());
            return ExitCode::from(EXIT_FAILED);
        }
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true);
    if a.force {
        open.create(true).truncate(true);
    } else {
        // Refuses an existing file atomically (no check-then-write race).
        open.create_new(true);
    }
    let written = open
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return usage_error(
                false,
                &format!(
                    "{} already exists; it was left as it is (use --force to overwrite it)",
                    path.display()
                ),
            );
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::from(EXIT_FAILED);
        }
    }
    if !super::quiet() {
        if setup.is_empty() {
            eprintln!(
                "wrote {}: no provider found in the environment, so it starts with an OpenAI \
                 provider reading OPENAI_API_KEY (export it, or edit the file)",
                path.display()
            );
        } else {
            eprintln!(
                "wrote {} with {}; keys stay in those variables",
                path.display(),
                setup.summary()
            );
        }
        for n in setup.notes() {
            eprintln!("note: {n}");
        }
    }
    ExitCode::SUCCESS
}
