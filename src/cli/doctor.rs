//! `image-router doctor`: checks each provider without generating and explains problems.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use image_router::doctor::{self, Health};
use serde_json::json;

use super::output::print_json;
use super::{Common, EXIT_FAILED};

pub const AFTER_HELP: &str = "\
For every provider in the config, doctor checks without generating an image (so without
cost): OpenAI and proxies `GET /v1/models/{model}`, Azure the deployment, for each
configured model (`models`, else the default model). It is the router's own start-up
check (`check_on_start`), and shows what the router would set aside. It reads any
rate-limit headers and explains each problem in plain words with what to do: no key,
invalid key, tier access (a 429 saying to retry after 0.0 seconds), insufficient quota,
billing hard limit, organization not verified, region not supported, deployment not found,
model not found, endpoint unreachable. With `[store] kind = \"redis\"` it also checks that the
shared store answers (PING, bounded by --timeout) and reports the server's version.

Exit code 0 when every provider is usable, 1 when any is not, 2 when the config is invalid.

Examples:
  image-router doctor -c router.toml
  image-router doctor -c router.toml --model gpt-image-1-mini --json";

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub common: Common,
    /// Model to check on every provider (default: each provider's configured `models`, else
    /// the config's default model, else gpt-image-1).
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// Time each check may take ("10s", "1500ms").
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub timeout: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    image_router::quota::headers::parse_go_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a duration; write e.g. \"10s\" or \"1500ms\""))
}

pub async fn run(a: DoctorArgs) -> ExitCode {
    let json = a.common.json;
    let cfg = match super::load_config(&a.common) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let report = doctor::check_config(&cfg, a.model.as_deref(), a.timeout).await;
    let ok = report.all_usable();
    if json {
        print_json(&json!({ "ok": ok, "providers": report.providers, "store": report.store }));
    } else {
        if let Some(st) = &report.store {
            match (&st.server_version, &st.explanation) {
                (_, Some(x)) => {
                    println!("[UNUSABLE] store {} in {} ms", st.kind, st.ms);
                    println!("    cause: {}", x.cause);
                    println!("    what to do: {}", x.action);
                }
                (v, None) => println!(
                    "[ok] store {} answers PING (server {}) in {} ms",
                    st.kind,
                    v.as_deref().unwrap_or("version unknown"),
                    st.ms
                ),
            }
        }
        for c in &report.providers {
            let mark = match c.health {
                Health::Ok => "ok",
                Health::Warning => "warning",
                Health::Unusable => "UNUSABLE",
            };
            let figures: Vec<String> = [
                c.rpm.map(|r| format!("{r} RPM")),
                c.ipm.map(|i| format!("{i} IPM")),
                c.tpm.map(|t| format!("{t} TPM")),
            ]
            .into_iter()
            .flatten()
            .collect();
            let limits = match figures.len() {
                0 => String::new(),
                1 => format!(", limit {}", figures[0]),
                _ => format!(", limits {}", figures.join(" / ")),
            };
            println!(
                "[{mark}] {} ({}, model {}{limits}) in {} ms",
                c.name,
                c.kind.as_str(),
                c.model,
                c.ms
            );
            if let Some(p) = &c.probe {
                if let Some(what) = &p.checked {
                    println!(
                        "    checked: {what} -> HTTP {}",
                        p.status
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "-".into())
                    );
                }
                let h = &p.rate_limits;
                if h.limit_requests.is_some() || h.remaining_requests.is_some() {
                    println!(
                        "    rate limits reported: requests {}/{} remaining, tokens {}/{} remaining",
                        opt(h.remaining_requests),
                        opt(h.limit_requests),
                        opt(h.remaining_tokens),
                        opt(h.limit_tokens)
                    );
                }
            }
            if let Some(x) = &c.explanation {
                if let Some(p) = c.problem {
                    println!(
                        "    problem: {}",
                        serde_json::to_value(p)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default()
                    );
                }
                println!("    cause: {}", x.cause);
                println!("    what to do: {}", x.action);
            }
            if let Some(m) = &c.marked {
                let what = match &m.model {
                    Some(model) => format!("{model} cooled down on this provider"),
                    None => "provider set aside".to_string(),
                };
                println!(
                    "    router: {what} for {} s (requests go elsewhere)",
                    m.for_ms / 1000
                );
            }
            for n in &c.notes {
                println!("    note: {n}");
            }
        }
        let bad = report.providers.iter().filter(|c| !c.usable()).count();
        if report.store.as_ref().is_some_and(|s| !s.ok) {
            println!("the shared store does not answer");
        }
        if bad == 0 && ok {
            println!("all {} provider(s) usable", report.providers.len());
        } else if bad > 0 {
            println!("{bad} of {} provider(s) unusable", report.providers.len());
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
}
