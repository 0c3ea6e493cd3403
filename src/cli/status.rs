//! `image-router status`: the router's configuration and each provider's limits and state.
//!
//! A fresh process has no runtime state yet (cool-downs, observed limits live in a running
//! router), so status shows what the router starts with: settings, providers in priority
//! order, where their keys come from (set or missing, never the value), and the limits the
//! router will use in the default model's window (explicit `rpm` / `tpm` / `ipm`, else the
//! tier's figures for that model from the catalog).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use image_router::breaker::BreakerState;
use image_router::budget::LedgerSnapshot;
use image_router::catalog::Catalog;
use image_router::config::{
    build_provider, mode_name, process_env, Credential, ProviderConfig, RouterSettings,
};
use image_router::quota::headers::format_go_duration;
use image_router::ProviderKind;
use image_router::{quota::limiter::Headroom, Provider, RouterStatus};
use image_router::{
    DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_COOLDOWN, DEFAULT_DEADLINE, DEFAULT_MAX_ATTEMPTS,
};
use serde_json::{json, Value};

use super::output::print_json;
use super::redact;
use super::Common;

pub const AFTER_HELP: &str = "\
Examples:
  image-router status -c router.toml
  image-router status -c router.toml --json";

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: Common,
}

pub async fn run(a: StatusArgs) -> ExitCode {
    let json = a.common.json;
    let cfg = match super::load_config(&a.common) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let catalog = match cfg.catalog() {
        Ok(c) => c,
        Err(e) => return super::config_failure(&e, json),
    };
    // The router's own view (limiter headroom, budgets). Building sends nothing; a provider
    // whose key is missing is built with a placeholder so its limits still show.
    let env = |v: &str| Some(process_env(v).unwrap_or_else(|| "placeholder-not-set".into()));
    // The providers as built, for the name each gives the default model on the wire.
    // A provider with several keys is built once per key; its first key stands for it.
    let mut built: HashMap<String, Arc<dyn Provider>> = HashMap::new();
    let keep = |p: &ProviderConfig, c: Option<Credential>, cat: &Arc<Catalog>| {
        let provider = build_provider(p, c, cat)?;
        built
            .entry(p.group_name().to_string())
            .or_insert_with(|| provider.clone());
        Ok(provider)
    };
    let router = match cfg.build_with(&env, keep) {
        Ok(r) => r,
        Err(e) => return super::config_failure(&e, json),
    };
    let view = View {
        default_model: cfg
            .router
            .default_model
            .clone()
            .unwrap_or_else(|| catalog.default_model().to_string()),
        live: router.status(),
        headroom: router.headroom().into_iter().collect(),
        spend: router.spend(),
        catalog,
        built,
    };
    let rows: Vec<Value> = cfg
        .providers
        .iter()
        .enumerate()
        .map(|(i, p)| view.row(i, p))
        .collect();
    let settings = view.settings(&cfg.router);
    if json {
        print_json(&json!({
            "router": settings,
            // The table as configured (the URL's variable by name, never its value) and the
            // store's own view: shared or not, degraded or not, instances, accounts.
            "store": {
                "config": cfg.store,
                "live": view.live.store,
            },
            "providers": rows,
            "spend": view.spend.first(),
            "status": view.live,
        }));
    } else {
        print_text(&settings, &rows, &view);
    }
    ExitCode::SUCCESS
}

/// What status shows besides the configuration: the built router's view.
struct View {
    default_model: String,
    live: RouterStatus,
    headroom: HashMap<String, Headroom>,
    spend: Vec<LedgerSnapshot>,
    catalog: Arc<Catalog>,
    built: HashMap<String, Arc<dyn Provider>>,
}

impl View {
    /// One provider's row. URLs are shown without credentials; a key's variable name only
    /// when it does not look like a key itself.
    fn row(&self, i: usize, p: &ProviderConfig) -> Value {
        // The limits of the default model's window: a usage tier's figures are per model.
        let limits = image_router::quota::limits::Limits::resolve_for_model(
            &self.catalog,
            p.tier.as_deref(),
            &self.default_model,
            p.rpm.map(i64::from),
            p.tpm.map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
            p.ipm.map(i64::from),
        )
        .ok();
        let keys = self.keys(p);
        let key_var = p.api_key_env.as_deref().or(p.bearer_token_env.as_deref());
        let key_set = key_var.map(|v| {
            std::env::var(v)
                .map(|s| !s.trim().is_empty())
                .unwrap_or(false)
        });
        let url = match p.kind {
            ProviderKind::Azure => p.endpoint.clone(),
            ProviderKind::OpenAi => Some(
                p.base_url
                    .clone()
                    .unwrap_or_else(|| self.catalog.kinds().openai_base_url.clone()),
            ),
            _ => p.base_url.clone(),
        }
        .map(|u| redact::url(&u));
        json!({
            "priority": i + 1,
            "name": p.name,
            "kind": p.kind.as_str(),
            "url": url,
            "default_model_as_sent": self.built.get(&p.name).map(|b| b.wire_model(&self.default_model)),
            "models": p.models,
            "deployments": p.deployments,
            "deployment": p.deployment,
            "mode": p.mode.map(mode_name),
            "tier": p.tier,
            "rpm": limits.as_ref().and_then(|l| l.rpm),
            "tpm": limits.as_ref().and_then(|l| l.tpm),
            "ipm": limits.as_ref().and_then(|l| l.ipm),
            "shared": p.shared.unwrap_or(false),
            // The default is the whole limit; a shared key keeps 0.9 while the provider sends
            // no remaining-* figures (see `quota::limiter`).
            "safety_margin": p.safety_margin.unwrap_or(if p.shared == Some(true) {
                image_router::quota::limiter::SHARED_KEY_MARGIN
            } else {
                1.0
            }),
            "weight": p.weight.unwrap_or(1.0),
            "key_env": key_var.map(redact::env_var_name),
            "key_set": key_set,
            "state": if keys.is_empty() {
                self.state(&p.name, key_set)
            } else if keys.iter().any(|k| k["state"] == "ready") {
                "ready"
            } else {
                keys.first().and_then(|k| k["state"].as_str()).unwrap_or("-")
            },
            "headroom": self.headroom.get(&p.name),
            "spend": self.spend.iter().find(|l| l.name == p.name),
            "keys": keys,
        })
    }

    /// A provider with several keys: each key by label (the variable's name), whether it
    /// is set, and its state and headroom under the name `{provider}/{label}`. Empty for a
    /// provider with one key.
    fn keys(&self, p: &ProviderConfig) -> Vec<Value> {
        if p.api_key_envs.len() < 2 {
            return Vec::new();
        }
        p.api_key_envs
            .iter()
            .map(|var| {
                let member = format!("{}/{var}", p.name);
                let set = std::env::var(var).is_ok_and(|s| !s.trim().is_empty());
                json!({
                    "label": redact::env_var_name(var),
                    "provider": member,
                    "key_set": set,
                    "state": self.state(&member, Some(set)),
                    "headroom": self.headroom.get(&member),
                    "spend": self.spend.iter().find(|l| l.name == member),
                })
            })
            .collect()
    }

    fn state(&self, name: &str, key_set: Option<bool>) -> &'static str {
        let live = self.live.providers.iter().find(|s| s.name == name);
        match (key_set, self.headroom.get(name)) {
            (Some(false), _) => "no key",
            _ if live.is_some_and(|s| s.cooldown.is_some()) => "cooling down",
            _ if live.is_some_and(|s| s.breaker.state != BreakerState::Closed) => {
                "breaker not closed"
            }
            (_, Some(h)) if h.no_access => "no access (tier)",
            (_, Some(h)) if h.retry_in.is_some() => "blocked",
            _ => "ready",
        }
    }

    fn settings(&self, r: &RouterSettings) -> Value {
        let fmt = |d: Option<Duration>, def: Duration| format_go_duration(d.unwrap_or(def));
        json!({
            "strategy": self.live.strategy,
            "timeout": fmt(r.timeout, DEFAULT_ATTEMPT_TIMEOUT),
            "deadline": fmt(r.deadline, DEFAULT_DEADLINE),
            "max_attempts": r.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            // One duration for a denial: `cooldown`, else `[router.breaker] long_cool_down`.
            "cooldown": fmt(
                r.cooldown.or(r.breaker.as_ref().map(|b| b.long_cool_down)),
                DEFAULT_COOLDOWN
            ),
            "default_model": self.default_model,
            "failover_on_content_policy": r.failover_on_content_policy.unwrap_or(false),
            "catalog": r.catalog,
        })
    }
}

/// One line on the store: where the state lives and whether this instance is degraded.
fn store_line(st: &image_router::StoreStatus) -> String {
    if !st.shared {
        return format!(
            "store: {} (limits, budgets and denials are this process's own)",
            st.kind
        );
    }
    let instances = st
        .instances
        .map_or("unknown".to_string(), |n| n.to_string());
    let mut accounts: Vec<String> = st
        .providers
        .iter()
        .map(|p| format!("{} → {}", p.name, p.account.as_deref().unwrap_or(&p.name)))
        .collect();
    accounts.dedup();
    let this = match &st.degraded {
        Some(why) => format!("DEGRADED, serving from a local share of each limit: {why}"),
        None => "connected".to_string(),
    };
    format!(
        "store: {} (shared), {instances} live instance(s); accounts: {}; this instance: {this}",
        st.kind,
        accounts.join(", ")
    )
}

fn print_text(settings: &Value, rows: &[Value], view: &View) {
    println!(
        "router: strategy {}, timeout {}, deadline {}, max {} attempt(s), cool-down {}, default model {}",
        settings["strategy"].as_str().unwrap_or("-"),
        settings["timeout"].as_str().unwrap_or(""),
        settings["deadline"].as_str().unwrap_or(""),
        settings["max_attempts"],
        settings["cooldown"].as_str().unwrap_or(""),
        view.default_model
    );
    println!("{}", store_line(&view.live.store));
    println!(
        "{:<3} {:<20} {:<10} {:<8} {:>6} {:>6} {:>9} {:<24} {:<10} url",
        "#", "provider", "kind", "tier", "rpm", "ipm", "tpm", "key", "state"
    );
    for row in rows {
        let s = |k: &str| match &row[k] {
            Value::Null => "-".to_string(),
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let n_keys = row["keys"].as_array().map_or(0, Vec::len);
        let key = match (&row["key_env"], &row["key_set"]) {
            _ if n_keys > 1 => format!("{n_keys} keys"),
            (Value::String(v), Value::Bool(true)) => format!("{v} (set)"),
            (Value::String(v), _) => format!("{v} (MISSING)"),
            _ => "-".into(),
        };
        println!(
            "{:<3} {:<20} {:<10} {:<8} {:>6} {:>6} {:>9} {:<24} {:<10} {}",
            s("priority"),
            s("name"),
            s("kind"),
            s("tier"),
            s("rpm"),
            s("ipm"),
            s("tpm"),
            key,
            s("state"),
            s("url")
        );
        for k in row["keys"].as_array().into_iter().flatten() {
            let set = if k["key_set"] == Value::Bool(true) {
                "set"
            } else {
                "MISSING"
            };
            println!(
                "    key {:<24} {:<8} {}",
                k["label"].as_str().unwrap_or("-"),
                set,
                k["state"].as_str().unwrap_or("-")
            );
        }
    }
    for l in &view.spend {
        for b in &l.budgets {
            println!(
                "budget {}: ${:.2} of ${:.2} per {} spent, ${:.2} left",
                l.name, b.spent_usd, b.limit_usd, b.period, b.remaining_usd
            );
        }
    }
}
