//! The TOML configuration file: one `[router]` table and one `[[provider]]` table per provider,
//! mapping one to one onto [`RouterBuilder`] and the providers' builders.
//!
//! ```toml
//! [router]
//! strategy = "scored"           # the default; or "ordered", "weighted"
//! timeout = "30s"               # per attempt
//! deadline = "120s"             # whole request
//! max_attempts = 4
//!
//! [[provider]]
//! name = "openai-direct"
//! kind = "openai"               # "openai" | "azure" | "compatible"
//! base_url = "https://api.openai.com/v1"
//! api_key_env = "OPENAI_API_KEY"  # the variable's name; keys are never written in the file
//! tier = "tier-2"               # optional; rpm / tpm override it
//! rpm = 15
//! tpm = 500000
//!
//! [[provider]]
//! name = "azure-east"
//! kind = "azure"
//! endpoint = "https://example.openai.azure.com"
//! deployment = "gpt-image-1"
//! api_version = "2025-04-01-preview"
//! api_key_env = "AZURE_OPENAI_API_KEY"
//!
//! [[provider]]
//! name = "proxy"
//! kind = "compatible"
//! base_url = "https://proxy.example/v1"
//! api_key_env = "PROXY_API_KEY"
//! mode = "images"               # or "chat"
//! ```
//!
//! # Design
//!
//! * **Two steps.** [`RouterConfig::from_str`] parses and checks the file (no environment, no
//!   network), so tools such as `image-router status` and `doctor` can show a configuration
//!   even when a key is missing; [`RouterConfig::build`] then reads the keys from the
//!   environment and builds the [`Router`].
//! * **Keys never live in the file.** `api_key_env` (and `bearer_token_env` for Azure Entra
//!   ID tokens) name environment variables; the values are read into
//!   [`secrecy::SecretString`]s at build time.
//! * **Every error names the key and the line.** Unknown keys, wrong types, a missing required
//!   field, a bad duration, an unknown tier, a model name the catalog does not know (unless
//!   the provider takes unknown models: proxies do by default), a missing environment variable: a
//!   [`ConfigError`] with `field` like `provider[1].endpoint` and `line`.
//! * **Durations are strings** (`"30s"`, `"2m"`, `"1500ms"`, `"1m30s"`), in Go's duration syntax
//!   like OpenAI's reset headers.
//!
//! # Keys
//!
//! `[router]`: `strategy`, `timeout`, `deadline`, `max_attempts`, `default_model`,
//! `failover_on_content_policy`, `cooldown`, `retry_backoff`, `rate_limit_wait`, `max_wait`,
//! `budgets`, `fallback_usd_per_image`, `catalog` (a catalog override file, same schema as
//! `providers/*.toml`, relative to the config file).
//!
//! `[router.breaker]`: `consecutive_failures`, `failure_ratio`, `window`, `min_samples`,
//! `cool_down`, `cool_down_multiplier` (growth after a failed probe, 1 or more),
//! `max_cool_down`, `long_cool_down`, `ramp` (a duration, `"0s"` closes at once after a good
//! probe) and `ramp_start` (the share of traffic admitted first, 0 to 1), and
//! `cheap_probe` (probe with a call that generates no image after a cool-down; see
//! [`RouterBuilder::cheap_probe`]).
//!
//! `[router.score]`: the default scorer's exponents `availability`, `latency`, `headroom`,
//! `budget`, `priority`, and `latency_slack` (a duration) and `headroom_knee` (0 to 1); see
//! [`crate::score`]. Keys left out keep their defaults.
//!
//! `[router.health]`: `window`, `buckets`, `min_samples`, `latency_decay`, `idle_decay` (a
//! duration or `"off"`), `default_latency` (see [`crate::health::HealthConfig`]).
//!
//! Budgets (router-wide or per provider) are a list of `{ usd, per }` with `per` = `"day"`,
//! `"month"` or a duration: `budgets = [{ usd = 5.0, per = "day" }, { usd = 100, per = "month" }]`.
//!
//! `[[provider]]`: `name`, `kind`, `api_key_env`, `tier`, `rpm`, `tpm`, `safety_margin`,
//! `weight`, `budgets`, `models` (only serve these models), `allow_unknown_models` (serve models the
//! catalog does not know), and
//! * openai: `base_url`, `organization`, `project`;
//! * azure: `endpoint`, `deployment` (the deployment of the first of `models`, else of
//!   `[router] default_model`, else of the catalog's default model),
//!   `deployments` (a table model → deployment name), `default_deployment`, `api_version`,
//!   `v1_surface`, `bearer_token_env` instead of `api_key_env`;
//! * compatible: `base_url` (required), `mode` (`"images"` | `"chat"`), `rename` (a table model
//!   → the proxy's model name).
//!
//! `strategy`: `"scored"` (best score first, the router's default), `"ordered"` (strict
//! priority order) or `"weighted"` (by `weight` × headroom). `reserved_for` / `preferred_by`
//! (lists of request-class names, e.g. `["interactive"]`) set a provider's class policy.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::budget::{Budget, BudgetPeriod};
use crate::catalog::Catalog;
use crate::error::ConfigError;
use crate::headers::parse_go_duration;
use crate::provider::{Provider, ProviderKind};
use crate::router::{ProviderOptions, Router, RouterBuilder};

pub use crate::strategy::Strategy;

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    match s {
        "ordered" => Ok(Strategy::Ordered),
        "scored" => Ok(Strategy::Scored),
        "weighted" => Ok(Strategy::Weighted),
        other => Err(format!(
            "unknown strategy {other:?}; expected \"ordered\", \"scored\" or \"weighted\""
        )),
    }
}

/// How a compatible proxy serves images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyMode {
    /// `POST /images/generations` and `/images/edits`.
    #[default]
    Images,
    /// `POST /chat/completions`, image in the message content.
    Chat,
}

/// The `[router]` table.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RouterSettings {
    /// Provider ordering (`None`: the router's default, scored).
    pub strategy: Option<Strategy>,
    /// Time one attempt may take.
    #[serde(serialize_with = "ser_opt_dur")]
    pub timeout: Option<Duration>,
    /// Time a whole request may take.
    #[serde(serialize_with = "ser_opt_dur")]
    pub deadline: Option<Duration>,
    /// Most provider calls per request.
    pub max_attempts: Option<u32>,
    /// Model used when a request names none.
    pub default_model: Option<String>,
    /// Whether content-policy refusals fail over.
    pub failover_on_content_policy: Option<bool>,
    /// Cool-down after denials.
    #[serde(serialize_with = "ser_opt_dur")]
    pub cooldown: Option<Duration>,
    /// Backoff base before retrying a transient failure.
    #[serde(serialize_with = "ser_opt_dur")]
    pub retry_backoff: Option<Duration>,
    /// Wait after a 429 without `retry-after`.
    #[serde(serialize_with = "ser_opt_dur")]
    pub rate_limit_wait: Option<Duration>,
    /// Catalog override file (resolved against the config file's directory).
    pub catalog: Option<PathBuf>,
    /// Longest a request waits for rate-limit room.
    #[serde(serialize_with = "ser_opt_dur")]
    pub max_wait: Option<Duration>,
    /// Router-wide spend budgets.
    pub budgets: Vec<Budget>,
    /// Price per image assumed for models without a catalog price.
    pub fallback_usd_per_image: Option<f64>,
    /// Circuit-breaker settings (`[router.breaker]`), when given.
    #[serde(skip)]
    pub breaker: Option<crate::breaker::BreakerConfig>,
    /// Probe with a call that generates no image after a breaker's cool-down
    /// (`[router.breaker] cheap_probe`), when given.
    pub cheap_probe: Option<bool>,
    /// The default scorer's weights (`[router.score]`), when given.
    pub score: Option<crate::score::ScoreWeights>,
    /// Health measurement settings (`[router.health]`), when given.
    #[serde(skip)]
    pub health: Option<crate::health::HealthConfig>,
}

fn ser_opt_dur<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&crate::headers::format_go_duration(*d)),
        None => s.serialize_none(),
    }
}

/// One `[[provider]]` table, checked.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ProviderConfig {
    /// Unique name.
    pub name: String,
    /// Which implementation.
    pub kind: ProviderKind,
    /// OpenAI / proxy base URL.
    pub base_url: Option<String>,
    /// Azure resource endpoint.
    pub endpoint: Option<String>,
    /// Azure deployment for the default model.
    pub deployment: Option<String>,
    /// Azure deployments by model.
    pub deployments: BTreeMap<String, String>,
    /// Azure deployment used for models without a mapping.
    pub default_deployment: Option<String>,
    /// Azure `api-version`.
    pub api_version: Option<String>,
    /// Azure: use the v1 surface.
    pub v1_surface: Option<bool>,
    /// Name of the environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// Azure: name of the environment variable holding an Entra ID bearer token.
    pub bearer_token_env: Option<String>,
    /// Usage tier.
    pub tier: Option<String>,
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
    /// Fraction of the limits to use.
    pub safety_margin: Option<f64>,
    /// Relative weight.
    pub weight: Option<f64>,
    /// Spend budgets of this provider.
    pub budgets: Vec<Budget>,
    /// Only these request classes may use the provider (empty: all).
    pub reserved_for: Vec<String>,
    /// These request classes rank the provider first.
    pub preferred_by: Vec<String>,
    /// OpenAI organization id.
    pub organization: Option<String>,
    /// OpenAI project id.
    pub project: Option<String>,
    /// Models served (empty: the provider's default set).
    pub models: Vec<String>,
    /// OpenAI: accept models the catalog does not know.
    pub allow_unknown_models: Option<bool>,
    /// Proxy mode.
    pub mode: Option<ProxyMode>,
    /// Proxy model renames (ours → theirs).
    pub rename: BTreeMap<String, String>,
    /// Line of the `[[provider]]` header.
    pub line: usize,
    #[serde(skip)]
    key_lines: HashMap<String, usize>,
}

impl ProviderConfig {
    /// The line of `key` in this provider's table (the table's line when the key is absent).
    pub fn line_of(&self, key: &str) -> usize {
        self.key_lines.get(key).copied().unwrap_or(self.line)
    }

    /// Routing options for [`RouterBuilder::provider_with`].
    pub fn options(&self) -> ProviderOptions {
        let mut o = ProviderOptions::new();
        o.tier = self.tier.clone();
        o.rpm = self.rpm;
        o.tpm = self.tpm;
        o.safety_margin = self.safety_margin;
        o.weight = self.weight;
        for b in &self.budgets {
            o = o.budget(*b);
        }
        o.classes(crate::class::ClassPolicy {
            reserved_for: self.reserved_for.iter().cloned().map(Into::into).collect(),
            preferred_by: self.preferred_by.iter().cloned().map(Into::into).collect(),
        })
    }

    /// The model → name-on-the-wire mapping (Azure deployments or proxy renames) for `model`.
    pub fn wire_model<'a>(&'a self, model: &'a str) -> &'a str {
        match self.kind {
            ProviderKind::Azure => self
                .deployments
                .get(model)
                .or(self.default_deployment.as_ref())
                .map(String::as_str)
                .unwrap_or(model),
            _ => self.rename.get(model).map(String::as_str).unwrap_or(model),
        }
    }

    /// Reads the key (or Azure bearer token) from the environment through `env`. `Ok(None)`
    /// when the provider names no variable; an error naming the key and line when the
    /// variable is not set or empty.
    pub fn credential(
        &self,
        index: usize,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Credential>, ConfigError> {
        for (key, var, bearer) in [
            ("api_key_env", &self.api_key_env, false),
            ("bearer_token_env", &self.bearer_token_env, true),
        ] {
            if let Some(var) = var {
                return match env(var) {
                    Some(v) if !v.trim().is_empty() => Ok(Some(Credential {
                        secret: SecretString::from(v.trim().to_string()),
                        bearer,
                        var: var.clone(),
                    })),
                    _ => Err(ConfigError::new(
                        format!("provider[{index}].{key}"),
                        format!(
                            "environment variable {var} is not set (or empty); export it with \
                             the {} for provider {:?}",
                            if bearer { "bearer token" } else { "API key" },
                            self.name
                        ),
                    )
                    .at_line(self.line_of(key))),
                };
            }
        }
        Ok(None)
    }
}

/// A key or token read from the environment.
#[derive(Clone, Debug)]
pub struct Credential {
    /// The value (never printed).
    pub secret: SecretString,
    /// Whether it is an Entra ID bearer token (Azure) rather than an API key.
    pub bearer: bool,
    /// The environment variable it came from.
    pub var: String,
}

/// A parsed and checked configuration file. Building needs the environment (keys); loading
/// does not.
///
/// ```
/// use image_router::config::RouterConfig;
/// let cfg: RouterConfig = r#"
///     [router]
///     timeout = "30s"
///     [[provider]]
///     name = "openai"
///     kind = "openai"
///     api_key_env = "OPENAI_API_KEY"
///     tier = "tier-2"
/// "#.parse().unwrap();
/// assert_eq!(cfg.router.strategy, None); // the router's default (scored)
/// assert_eq!(cfg.providers[0].tier.as_deref(), Some("tier-2"));
///
/// let err = "[router]\ntimout = \"30s\"\n".parse::<RouterConfig>().unwrap_err();
/// assert_eq!(err.line, Some(2));
/// assert!(err.message.contains("timout"));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RouterConfig {
    /// The `[router]` table.
    pub router: RouterSettings,
    /// The `[[provider]]` tables in priority order.
    pub providers: Vec<ProviderConfig>,
    /// Where the file came from (for relative paths); `None` for a string.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
    #[serde(skip)]
    catalog_line: Option<usize>,
    #[serde(skip)]
    default_model_line: Option<usize>,
}

// ---- raw (file) schema ----------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    router: Option<RawRouter>,
    #[serde(default)]
    provider: Vec<Spanned<RawProvider>>,
}

type S<T> = Option<Spanned<T>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouter {
    strategy: S<String>,
    timeout: S<String>,
    deadline: S<String>,
    max_attempts: S<i64>,
    default_model: S<String>,
    failover_on_content_policy: S<bool>,
    cooldown: S<String>,
    retry_backoff: S<String>,
    rate_limit_wait: S<String>,
    catalog: S<String>,
    max_wait: S<String>,
    budgets: S<Vec<RawBudget>>,
    fallback_usd_per_image: S<f64>,
    breaker: Option<RawBreaker>,
    score: Option<RawScore>,
    health: Option<RawHealth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScore {
    availability: S<f64>,
    latency: S<f64>,
    headroom: S<f64>,
    budget: S<f64>,
    priority: S<f64>,
    latency_slack: S<String>,
    headroom_knee: S<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    window: S<String>,
    buckets: S<i64>,
    min_samples: S<i64>,
    latency_decay: S<String>,
    idle_decay: S<String>,
    default_latency: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    consecutive_failures: S<i64>,
    failure_ratio: S<f64>,
    window: S<String>,
    min_samples: S<i64>,
    cool_down: S<String>,
    max_cool_down: S<String>,
    long_cool_down: S<String>,
    cool_down_multiplier: S<f64>,
    ramp: S<String>,
    ramp_start: S<f64>,
    cheap_probe: S<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    usd: f64,
    per: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: S<String>,
    kind: S<String>,
    base_url: S<String>,
    endpoint: S<String>,
    deployment: S<String>,
    deployments: S<BTreeMap<String, String>>,
    default_deployment: S<String>,
    api_version: S<String>,
    v1_surface: S<bool>,
    api_key_env: S<String>,
    bearer_token_env: S<String>,
    tier: S<String>,
    rpm: S<i64>,
    tpm: S<i64>,
    safety_margin: S<f64>,
    weight: S<f64>,
    budgets: S<Vec<RawBudget>>,
    reserved_for: S<Vec<String>>,
    preferred_by: S<Vec<String>>,
    organization: S<String>,
    project: S<String>,
    models: S<Vec<String>>,
    allow_unknown_models: S<bool>,
    mode: S<String>,
    rename: S<BTreeMap<String, String>>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The key written on the line containing `offset` (`timeout = …` → `timeout`), or the table
/// header (`[[provider]]` → `provider`). Inside a value that spans lines (a multi-line array,
/// an inline table of a list) it is the key that opened the value, found on an earlier line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    for (n, line) in text[..end].lines().rev().enumerate() {
        let line = line.trim();
        if line.starts_with('[') && (n == 0 || !line.contains('=')) {
            // A header: the answer on its own line, the end of the search above a value.
            return (n == 0).then(|| {
                line.trim_matches(|c| c == '[' || c == ']')
                    .trim()
                    .to_string()
            });
        }
        if let Some((k, _)) = line.split_once('=') {
            let k = k.trim().trim_matches('"');
            let bare = !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"'));
            if bare {
                return Some(k.to_string());
            }
        }
    }
    None
}

/// Finds the `[[provider]]` header at or before `offset` and counts the providers before it.
fn provider_index_at(text: &str, offset: usize) -> Option<usize> {
    let before = &text[..offset.min(text.len())];
    let n = before
        .lines()
        .filter(|l| l.trim_start().starts_with("[[provider]]"))
        .count();
    n.checked_sub(1)
}

/// The name of the last single table header (`[router]`, `[router.breaker]`) at or before
/// `offset`, unless the last header is `[[provider]]`.
fn table_at(text: &str, offset: usize) -> Option<String> {
    let before = &text[..offset.min(text.len())];
    let header = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))?;
    if header.starts_with("[[") {
        return None;
    }
    let name = header.trim_start_matches('[');
    let name = name.split(']').next().unwrap_or_default().trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// Replaces every `sk-…` token of 12 characters or more with `sk-…(redacted)`.
fn redact_secrets(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("sk-") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(tail.len());
        if len >= 12 {
            out.push_str("sk-…(redacted)");
        } else {
            out.push_str(&tail[..len]);
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// Drops the quoted value from serde's `invalid type: string "…"` messages: the value may be
/// a secret pasted into the wrong field, and the line number already shows where it is.
fn without_string_values(msg: &str) -> String {
    let Some(start) = msg.find("string \"") else {
        return msg.to_string();
    };
    let value_start = start + "string \"".len();
    let mut escaped = false;
    for (j, c) in msg[value_start..].char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => {
                let end = value_start + j + 1;
                return format!("{}a string{}", &msg[..start], &msg[end..]);
            }
            _ => escaped = false,
        }
    }
    msg.to_string()
}

fn parse_error(text: &str, e: toml::de::Error) -> ConfigError {
    let msg = without_string_values(e.message().trim());
    let Some(span) = e.span() else {
        return ConfigError::new("config", msg);
    };
    let line = line_of(text, span.start);
    let key = key_at(text, span.start);
    // Name the key the way the typed config does: `router.timeout`, `provider[1].rpm`.
    let field = match (&key, provider_index_at(text, span.start)) {
        (Some(k), _) if k == "router" || k == "provider" => k.clone(),
        (Some(k), _) if table_at(text, span.start).is_some() && !k.starts_with("router") => {
            format!("{}.{k}", table_at(text, span.start).unwrap_or_default())
        }
        (Some(k), Some(i)) => format!("provider[{i}].{k}"),
        (Some(k), None) => k.clone(),
        (None, _) => "config".to_string(),
    };
    ConfigError::new(field, msg).at_line(line)
}

struct Ctx<'a> {
    text: &'a str,
}

impl Ctx<'_> {
    fn line<T>(&self, s: &Spanned<T>) -> usize {
        line_of(self.text, s.span().start)
    }
    fn err<T>(&self, field: String, s: &Spanned<T>, msg: impl Into<String>) -> ConfigError {
        ConfigError::new(field, msg).at_line(self.line(s))
    }
    fn duration(&self, field: &str, v: &S<String>) -> Result<Option<Duration>, ConfigError> {
        let Some(v) = v else { return Ok(None) };
        match parse_go_duration(v.get_ref()) {
            Some(d) if !d.is_zero() => Ok(Some(d)),
            Some(_) => Err(self.err(field.to_string(), v, "must be above zero")),
            None => Err(self.err(
                field.to_string(),
                v,
                format!(
                    "{:?} is not a duration; write e.g. \"30s\", \"2m\", \"1500ms\" or \"1m30s\"",
                    v.get_ref()
                ),
            )),
        }
    }
    fn budgets(&self, field: &str, v: &S<Vec<RawBudget>>) -> Result<Vec<Budget>, ConfigError> {
        let Some(list) = v else { return Ok(Vec::new()) };
        list.get_ref()
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let period = match b.per.as_str() {
                    "day" => BudgetPeriod::Day,
                    "month" => BudgetPeriod::Month,
                    other => match parse_go_duration(other) {
                        Some(d) => BudgetPeriod::Custom(d),
                        None => {
                            return Err(self.err(
                                format!("{field}[{i}].per"),
                                list,
                                format!("{other:?} is not a period; write \"day\", \"month\" or a duration like \"6h\""),
                            ))
                        }
                    },
                };
                Budget::new(b.usd, period).map_err(|e| {
                    let key = if e.field == "limit_usd" { "usd" } else { "per" };
                    self.err(format!("{field}[{i}].{key}"), list, e.message)
                })
            })
            .collect()
    }
    fn non_empty(&self, field: String, v: &S<String>) -> Result<Option<String>, ConfigError> {
        match v {
            Some(s) if s.get_ref().trim().is_empty() => {
                Err(self.err(field, s, "must not be empty"))
            }
            Some(s) => Ok(Some(s.get_ref().trim().to_string())),
            None => Ok(None),
        }
    }
    fn url(&self, field: String, v: &S<String>) -> Result<Option<String>, ConfigError> {
        let Some(s) = v else { return Ok(None) };
        match url::Url::parse(s.get_ref().trim()) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
                Ok(Some(s.get_ref().trim().trim_end_matches('/').to_string()))
            }
            Ok(u) => Err(self.err(
                field,
                s,
                format!("scheme {:?} not supported; use http or https", u.scheme()),
            )),
            Err(e) => Err(self.err(field, s, format!("{:?} is not a URL: {e}", s.get_ref()))),
        }
    }
}

impl FromStr for RouterConfig {
    type Err = ConfigError;
    fn from_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_str_in(text, None)
    }
}

impl RouterConfig {
    /// Reads and checks a configuration file (no environment, no network). Relative paths in
    /// it (`catalog`) are resolved against the file's directory.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                "config",
                format!("cannot read config file {}: {e}", path.display()),
            )
        })?;
        let dir = path.parent().map(Path::to_path_buf);
        Self::from_str_in(&text, dir)
    }

    fn from_str_in(text: &str, base_dir: Option<PathBuf>) -> Result<Self, ConfigError> {
        // A key pasted into the wrong field must not come back in the error message (which
        // ends up on terminals, in logs and in `--json` output).
        Self::parse_checked(text, base_dir).map_err(|mut e| {
            e.message = redact_secrets(&e.message);
            e
        })
    }

    fn parse_checked(text: &str, base_dir: Option<PathBuf>) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| parse_error(text, e))?;
        let cx = Ctx { text };
        let mut router = RouterSettings::default();
        let mut catalog_line = None;
        let mut default_model_line = None;
        if let Some(r) = &raw.router {
            if let Some(s) = &r.strategy {
                router.strategy = Some(
                    parse_strategy(s.get_ref())
                        .map_err(|m| cx.err("router.strategy".into(), s, m))?,
                );
            }
            router.timeout = cx.duration("router.timeout", &r.timeout)?;
            router.deadline = cx.duration("router.deadline", &r.deadline)?;
            router.cooldown = cx.duration("router.cooldown", &r.cooldown)?;
            router.retry_backoff = cx.duration("router.retry_backoff", &r.retry_backoff)?;
            router.rate_limit_wait = cx.duration("router.rate_limit_wait", &r.rate_limit_wait)?;
            if let Some(w) = &r.max_wait {
                router.max_wait = Some(parse_go_duration(w.get_ref()).ok_or_else(|| {
                    cx.err(
                        "router.max_wait".into(),
                        w,
                        format!(
                            "{:?} is not a duration; write e.g. \"0s\", \"30s\" or \"2m\"",
                            w.get_ref()
                        ),
                    )
                })?);
            }
            router.budgets = cx.budgets("router.budgets", &r.budgets)?;
            if let Some(b) = &r.breaker {
                let mut c = crate::breaker::BreakerConfig::default();
                let count = |k: &str, v: &S<i64>| -> Result<Option<u32>, ConfigError> {
                    match v {
                        Some(n) if *n.get_ref() < 0 || *n.get_ref() > i64::from(u32::MAX) => {
                            Err(cx.err(
                                format!("router.breaker.{k}"),
                                n,
                                format!("must be a count of 0 or more, got {}", n.get_ref()),
                            ))
                        }
                        Some(n) => Ok(Some(*n.get_ref() as u32)),
                        None => Ok(None),
                    }
                };
                if let Some(n) = count("consecutive_failures", &b.consecutive_failures)? {
                    c.consecutive_failures = n;
                }
                if let Some(n) = count("min_samples", &b.min_samples)? {
                    c.min_samples = n;
                }
                if let Some(f) = &b.failure_ratio {
                    let v = *f.get_ref();
                    if !(v.is_finite() && v > 0.0) {
                        return Err(cx.err(
                            "router.breaker.failure_ratio".into(),
                            f,
                            format!("must be above 0 (above 1 disables it), got {v}"),
                        ));
                    }
                    c.failure_ratio = v;
                }
                if let Some(d) = cx.duration("router.breaker.window", &b.window)? {
                    c.window = d;
                }
                if let Some(d) = cx.duration("router.breaker.cool_down", &b.cool_down)? {
                    c.cool_down = d;
                }
                if let Some(d) = cx.duration("router.breaker.max_cool_down", &b.max_cool_down)? {
                    c.max_cool_down = d;
                }
                if let Some(d) = cx.duration("router.breaker.long_cool_down", &b.long_cool_down)? {
                    c.long_cool_down = d;
                }
                if let Some(f) = &b.cool_down_multiplier {
                    let v = *f.get_ref();
                    if !(v.is_finite() && v >= 1.0) {
                        return Err(cx.err(
                            "router.breaker.cool_down_multiplier".into(),
                            f,
                            format!("must be 1 or more (1 keeps the cool-down fixed), got {v}"),
                        ));
                    }
                    c.cool_down_multiplier = v;
                }
                if let Some(r) = &b.ramp {
                    // Zero is allowed here: the breaker closes straight after a good probe.
                    c.ramp = parse_go_duration(r.get_ref()).ok_or_else(|| {
                        cx.err(
                            "router.breaker.ramp".into(),
                            r,
                            format!(
                                "{:?} is not a duration; write e.g. \"30s\", \"1m\" or \"0s\"",
                                r.get_ref()
                            ),
                        )
                    })?;
                }
                if let Some(f) = &b.ramp_start {
                    let v = *f.get_ref();
                    if !(0.0..=1.0).contains(&v) {
                        return Err(cx.err(
                            "router.breaker.ramp_start".into(),
                            f,
                            format!("must be from 0 to 1 (a share of traffic), got {v}"),
                        ));
                    }
                    c.ramp_start = v;
                }
                router.breaker = Some(c);
                router.cheap_probe = b.cheap_probe.as_ref().map(|v| *v.get_ref());
            }
            if let Some(sc) = &r.score {
                let mut w = crate::score::ScoreWeights::DEFAULT;
                let exponent = |k: &str, v: &S<f64>, slot: &mut f64| -> Result<(), ConfigError> {
                    if let Some(f) = v {
                        let x = *f.get_ref();
                        if !(x.is_finite() && x >= 0.0) {
                            return Err(cx.err(
                                format!("router.score.{k}"),
                                f,
                                format!("must be an exponent of 0 or more, got {x}"),
                            ));
                        }
                        *slot = x;
                    }
                    Ok(())
                };
                exponent("availability", &sc.availability, &mut w.availability)?;
                exponent("latency", &sc.latency, &mut w.latency)?;
                exponent("headroom", &sc.headroom, &mut w.headroom)?;
                exponent("budget", &sc.budget, &mut w.budget)?;
                exponent("priority", &sc.priority, &mut w.priority)?;
                if let Some(d) = cx.duration("router.score.latency_slack", &sc.latency_slack)? {
                    w.latency_slack_ms = d.as_secs_f64() * 1000.0;
                }
                if let Some(f) = &sc.headroom_knee {
                    let x = *f.get_ref();
                    if !(x > 0.0 && x <= 1.0) {
                        return Err(cx.err(
                            "router.score.headroom_knee".into(),
                            f,
                            format!("must be above 0 and at most 1, got {x}"),
                        ));
                    }
                    w.headroom_knee = x;
                }
                router.score = Some(w);
            }
            if let Some(h) = &r.health {
                let mut c = crate::health::HealthConfig::default();
                let count =
                    |k: &str, v: &S<i64>, lo: i64, hi: i64| -> Result<Option<u32>, ConfigError> {
                        match v {
                            Some(n) if *n.get_ref() < lo || *n.get_ref() > hi => Err(cx.err(
                                format!("router.health.{k}"),
                                n,
                                format!("must be from {lo} to {hi}, got {}", n.get_ref()),
                            )),
                            // In range, so it fits a u32.
                            Some(n) => Ok(Some(*n.get_ref() as u32)),
                            None => Ok(None),
                        }
                    };
                if let Some(n) = count("buckets", &h.buckets, 1, 1024)? {
                    c.buckets = n;
                }
                if let Some(n) = count("min_samples", &h.min_samples, 0, i64::from(u32::MAX))? {
                    c.min_samples = n;
                }
                if let (Some(raw), Some(d)) =
                    (&h.window, cx.duration("router.health.window", &h.window)?)
                {
                    if d.is_zero() {
                        return Err(cx.err(
                            "router.health.window".into(),
                            raw,
                            "must be longer than 0s",
                        ));
                    }
                    c.window = d;
                }
                if let Some(d) = cx.duration("router.health.latency_decay", &h.latency_decay)? {
                    c.latency_decay = d;
                }
                if let Some(v) = &h.idle_decay {
                    c.idle_decay = if v.get_ref() == "off" {
                        None
                    } else {
                        cx.duration("router.health.idle_decay", &h.idle_decay)?
                    };
                }
                if let Some(d) = cx.duration("router.health.default_latency", &h.default_latency)? {
                    c.default_latency = d;
                }
                router.health = Some(c);
            }
            if let Some(f) = &r.fallback_usd_per_image {
                let v = *f.get_ref();
                if !(v.is_finite() && v > 0.0) {
                    return Err(cx.err(
                        "router.fallback_usd_per_image".into(),
                        f,
                        format!("must be above 0, got {v}"),
                    ));
                }
                router.fallback_usd_per_image = Some(v);
            }
            if let Some(m) = &r.max_attempts {
                let v = *m.get_ref();
                if !(1..=100).contains(&v) {
                    return Err(cx.err(
                        "router.max_attempts".into(),
                        m,
                        format!("must be between 1 and 100, got {v}"),
                    ));
                }
                router.max_attempts = Some(v as u32);
            }
            router.default_model = cx.non_empty("router.default_model".into(), &r.default_model)?;
            default_model_line = r.default_model.as_ref().map(|m| cx.line(m));
            router.failover_on_content_policy =
                r.failover_on_content_policy.as_ref().map(|b| *b.get_ref());
            if let Some(c) = &r.catalog {
                catalog_line = Some(cx.line(c));
                router.catalog = cx
                    .non_empty("router.catalog".into(), &r.catalog)?
                    .map(PathBuf::from);
            }
            if let (Some(t), Some(d)) = (router.timeout, router.deadline) {
                if t > d {
                    if let Some(ts) = &r.timeout {
                        return Err(cx.err(
                            "router.timeout".into(),
                            ts,
                            "is longer than `deadline`: an attempt could never use it all",
                        ));
                    }
                }
            }
        }
        if raw.provider.is_empty() {
            return Err(ConfigError::new(
                "provider",
                "no [[provider]] table: add at least one provider",
            ));
        }
        let default_model = router
            .default_model
            .clone()
            .unwrap_or_else(|| Catalog::builtin().default_model().to_string());
        let mut providers = Vec::with_capacity(raw.provider.len());
        for (i, p) in raw.provider.iter().enumerate() {
            let pc = Self::provider(&cx, i, p, &default_model)?;
            if let Some(prev) = providers
                .iter()
                .find(|q: &&ProviderConfig| q.name == pc.name)
            {
                return Err(ConfigError::new(
                    format!("provider[{i}].name"),
                    format!(
                        "duplicate provider name {:?} (also at line {}): names must be unique",
                        pc.name, prev.line
                    ),
                )
                .at_line(pc.line_of("name")));
            }
            providers.push(pc);
        }
        Ok(RouterConfig {
            router,
            providers,
            base_dir,
            catalog_line,
            default_model_line,
        })
    }

    fn provider(
        cx: &Ctx<'_>,
        i: usize,
        sp: &Spanned<RawProvider>,
        default_model: &str,
    ) -> Result<ProviderConfig, ConfigError> {
        let f = |k: &str| format!("provider[{i}].{k}");
        let header_line = {
            // The span starts at the table's first key; the header is the line before it
            // unless the table is empty.
            let first = line_of(cx.text, sp.span().start);
            cx.text
                .lines()
                .take(first)
                .enumerate()
                .filter(|(_, l)| l.trim_start().starts_with("[[provider]]"))
                .map(|(n, _)| n + 1)
                .last()
                .unwrap_or(first)
        };
        let p = sp.get_ref();
        let mut key_lines = HashMap::new();
        macro_rules! record {
            ($($k:ident),*) => { $( if let Some(v) = &p.$k { key_lines.insert(stringify!($k).to_string(), cx.line(v)); } )* };
        }
        record!(
            name,
            kind,
            base_url,
            endpoint,
            deployment,
            deployments,
            default_deployment,
            api_version,
            v1_surface,
            api_key_env,
            bearer_token_env,
            tier,
            rpm,
            tpm,
            safety_margin,
            weight,
            budgets,
            reserved_for,
            preferred_by,
            organization,
            project,
            models,
            allow_unknown_models,
            mode,
            rename
        );
        let missing = |k: &str, why: &str| {
            ConfigError::new(f(k), format!("missing: {why}")).at_line(header_line)
        };
        let name = cx
            .non_empty(f("name"), &p.name)?
            .ok_or_else(|| missing("name", "every provider needs a unique `name`"))?;
        let kind_s = p.kind.as_ref().ok_or_else(|| {
            missing(
                "kind",
                "`kind` must be \"openai\", \"azure\" or \"compatible\"",
            )
        })?;
        let kind = match kind_s.get_ref().as_str() {
            "openai" => ProviderKind::OpenAi,
            "azure" => ProviderKind::Azure,
            "compatible" => ProviderKind::Compatible,
            other => {
                return Err(cx.err(
                    f("kind"),
                    kind_s,
                    format!(
                        "unknown kind {other:?}; expected \"openai\", \"azure\" or \"compatible\""
                    ),
                ))
            }
        };
        let only_for = |key: &str, present: bool, kinds: &str| -> Result<(), ConfigError> {
            if present {
                Err(ConfigError::new(
                    f(key),
                    format!(
                        "`{key}` applies to {kinds} providers only, not to kind {:?}",
                        kind_s.get_ref()
                    ),
                )
                .at_line(key_lines.get(key).copied().unwrap_or(header_line)))
            } else {
                Ok(())
            }
        };
        let is = |k: ProviderKind| kind == k;
        if !is(ProviderKind::Azure) {
            only_for("endpoint", p.endpoint.is_some(), "azure")?;
            only_for("deployment", p.deployment.is_some(), "azure")?;
            only_for("deployments", p.deployments.is_some(), "azure")?;
            only_for(
                "default_deployment",
                p.default_deployment.is_some(),
                "azure",
            )?;
            only_for("api_version", p.api_version.is_some(), "azure")?;
            only_for("v1_surface", p.v1_surface.is_some(), "azure")?;
            only_for("bearer_token_env", p.bearer_token_env.is_some(), "azure")?;
        }
        if is(ProviderKind::Azure) {
            only_for("base_url", p.base_url.is_some(), "openai and compatible")?;
        }
        if !is(ProviderKind::OpenAi) {
            only_for("organization", p.organization.is_some(), "openai")?;
            only_for("project", p.project.is_some(), "openai")?;
        }
        if !is(ProviderKind::Compatible) {
            only_for("mode", p.mode.is_some(), "compatible")?;
            only_for("rename", p.rename.is_some(), "compatible")?;
        }

        let base_url = cx.url(f("base_url"), &p.base_url)?;
        let endpoint = cx.url(f("endpoint"), &p.endpoint)?;
        let api_key_env = cx.non_empty(f("api_key_env"), &p.api_key_env)?;
        let bearer_token_env = cx.non_empty(f("bearer_token_env"), &p.bearer_token_env)?;
        for (k, v) in [
            ("api_key_env", &p.api_key_env),
            ("bearer_token_env", &p.bearer_token_env),
        ] {
            if let Some(v) = v {
                let s = v.get_ref().trim();
                if s.starts_with("sk-") || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    return Err(cx.err(
                        f(k),
                        v,
                        "must be the NAME of an environment variable (letters, digits, `_`); \
                         never write the key itself in the file",
                    ));
                }
            }
        }
        match kind {
            ProviderKind::OpenAi if api_key_env.is_none() => {
                return Err(missing("api_key_env", "an openai provider needs `api_key_env`, the name of the variable holding its key"));
            }
            ProviderKind::Azure => {
                if endpoint.is_none() {
                    return Err(missing(
                        "endpoint",
                        "an azure provider needs `endpoint` (https://RESOURCE.openai.azure.com)",
                    ));
                }
                if api_key_env.is_none() && bearer_token_env.is_none() {
                    return Err(missing("api_key_env", "an azure provider needs `api_key_env` (or `bearer_token_env` for an Entra ID token)"));
                }
                if api_key_env.is_some() && bearer_token_env.is_some() {
                    return Err(ConfigError::new(
                        f("bearer_token_env"),
                        "give either `api_key_env` or `bearer_token_env`, not both",
                    )
                    .at_line(
                        key_lines
                            .get("bearer_token_env")
                            .copied()
                            .unwrap_or(header_line),
                    ));
                }
                if p.deployment.is_none()
                    && p.deployments.is_none()
                    && p.default_deployment.is_none()
                {
                    return Err(missing("deployment", "an azure provider needs `deployment` (or a `deployments` table model → deployment name)"));
                }
            }
            ProviderKind::Compatible if base_url.is_none() => {
                return Err(missing(
                    "base_url",
                    "a compatible provider needs `base_url` (e.g. https://proxy.example/v1)",
                ));
            }
            _ => {}
        }
        let rpm = match &p.rpm {
            Some(v) if *v.get_ref() < 1 || *v.get_ref() > u32::MAX as i64 => {
                return Err(cx.err(
                    f("rpm"),
                    v,
                    format!(
                        "must be a positive number of requests per minute, got {}",
                        v.get_ref()
                    ),
                ))
            }
            Some(v) => Some(*v.get_ref() as u32),
            None => None,
        };
        let tpm = match &p.tpm {
            Some(v) if *v.get_ref() < 1 => {
                return Err(cx.err(
                    f("tpm"),
                    v,
                    format!(
                        "must be a positive number of tokens per minute, got {}",
                        v.get_ref()
                    ),
                ))
            }
            Some(v) => Some(*v.get_ref() as u64),
            None => None,
        };
        let safety_margin = match &p.safety_margin {
            Some(v) if !(*v.get_ref() > 0.0 && *v.get_ref() <= 1.0) => {
                return Err(cx.err(
                    f("safety_margin"),
                    v,
                    format!("must be above 0 and at most 1, got {}", v.get_ref()),
                ))
            }
            v => v.as_ref().map(|v| *v.get_ref()),
        };
        let weight = match &p.weight {
            Some(v) if !(v.get_ref().is_finite() && *v.get_ref() > 0.0) => {
                return Err(cx.err(
                    f("weight"),
                    v,
                    format!("must be above 0, got {}", v.get_ref()),
                ))
            }
            v => v.as_ref().map(|v| *v.get_ref()),
        };
        let mode = match &p.mode {
            Some(m) => Some(match m.get_ref().as_str() {
                "images" => ProxyMode::Images,
                "chat" => ProxyMode::Chat,
                other => {
                    return Err(cx.err(
                        f("mode"),
                        m,
                        format!("unknown mode {other:?}; expected \"images\" or \"chat\""),
                    ))
                }
            }),
            None => None,
        };
        let check_map = |key: &str,
                         m: &S<BTreeMap<String, String>>|
         -> Result<BTreeMap<String, String>, ConfigError> {
            let Some(m) = m else {
                return Ok(BTreeMap::new());
            };
            for (k, v) in m.get_ref() {
                if k.trim().is_empty() || v.trim().is_empty() {
                    return Err(cx.err(
                        f(key),
                        m,
                        "model names and their mapped names must not be empty",
                    ));
                }
            }
            Ok(m.get_ref().clone())
        };
        let class_list = |key: &str, v: &S<Vec<String>>| -> Result<Vec<String>, ConfigError> {
            match v {
                Some(l) if l.get_ref().iter().any(|c| c.trim().is_empty()) => {
                    Err(cx.err(f(key), l, "class names must not be empty"))
                }
                Some(l) => Ok(l.get_ref().clone()),
                None => Ok(Vec::new()),
            }
        };
        let models = match &p.models {
            Some(m) if m.get_ref().iter().any(|s| s.trim().is_empty()) => {
                return Err(cx.err(f("models"), m, "model names must not be empty"))
            }
            Some(m) => m.get_ref().clone(),
            None => Vec::new(),
        };
        let deployment = cx.non_empty(f("deployment"), &p.deployment)?;
        let mut deployments = check_map("deployments", &p.deployments)?;
        if let Some(d) = &deployment {
            // `deployment` is the deployment of the provider's first listed model, else of
            // the router's default model.
            let model = models.first().map_or(default_model, String::as_str);
            deployments
                .entry(model.to_string())
                .or_insert_with(|| d.clone());
        }
        Ok(ProviderConfig {
            name,
            kind,
            base_url,
            endpoint,
            deployment,
            deployments,
            default_deployment: cx.non_empty(f("default_deployment"), &p.default_deployment)?,
            api_version: cx.non_empty(f("api_version"), &p.api_version)?,
            v1_surface: p.v1_surface.as_ref().map(|b| *b.get_ref()),
            api_key_env,
            bearer_token_env,
            tier: cx.non_empty(f("tier"), &p.tier)?,
            rpm,
            tpm,
            safety_margin,
            weight,
            budgets: cx.budgets(&f("budgets"), &p.budgets)?,
            reserved_for: class_list("reserved_for", &p.reserved_for)?,
            preferred_by: class_list("preferred_by", &p.preferred_by)?,
            organization: cx.non_empty(f("organization"), &p.organization)?,
            project: cx.non_empty(f("project"), &p.project)?,
            models,
            allow_unknown_models: p.allow_unknown_models.as_ref().map(|b| *b.get_ref()),
            mode,
            rename: check_map("rename", &p.rename)?,
            line: header_line,
            key_lines,
        })
    }

    /// The catalog this configuration uses: the embedded one, with the `catalog` override file
    /// laid over it when set. Also checks every provider's `tier` against it.
    pub fn catalog(&self) -> Result<Arc<Catalog>, ConfigError> {
        let catalog = match &self.router.catalog {
            None => Catalog::builtin().clone(),
            Some(p) => {
                let path = match &self.base_dir {
                    Some(dir) if p.is_relative() => dir.join(p),
                    _ => p.clone(),
                };
                if !path.exists() {
                    let mut e = ConfigError::new(
                        "router.catalog",
                        format!("catalog file {} does not exist", path.display()),
                    );
                    if let Some(l) = self.catalog_line {
                        e = e.at_line(l);
                    }
                    return Err(e);
                }
                Catalog::builtin().with_override_file(&path)?
            }
        };
        for (i, p) in self.providers.iter().enumerate() {
            if let Some(t) = &p.tier {
                if catalog.tier(t).is_none() {
                    let known = catalog
                        .tiers()
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(ConfigError::new(
                        format!("provider[{i}].tier"),
                        redact_secrets(&format!("unknown tier {t:?}; known tiers: {known}")),
                    )
                    .at_line(p.line_of("tier")));
                }
            }
        }
        self.check_models(&catalog)?;
        Ok(Arc::new(catalog))
    }

    /// A model name the catalog does not know is a typo unless the provider takes unknown
    /// models (proxies do by default; others with `allow_unknown_models = true`): caught here
    /// with its line rather than as "no provider can serve this request" on every request.
    fn check_models(&self, catalog: &Catalog) -> Result<(), ConfigError> {
        let takes_unknown = |p: &ProviderConfig| {
            p.allow_unknown_models
                .unwrap_or(p.kind == ProviderKind::Compatible)
        };
        let known = || {
            catalog
                .models()
                .map(|m| m.name().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (i, p) in self.providers.iter().enumerate() {
            if takes_unknown(p) {
                continue;
            }
            if let Some(m) = p.models.iter().find(|m| catalog.model(m).is_none()) {
                return Err(ConfigError::new(
                    format!("provider[{i}].models"),
                    redact_secrets(&format!(
                        "unknown model {m:?}; the catalog knows {}. Set \
                         `allow_unknown_models = true` to send it anyway, or add it with a \
                         `catalog` override file",
                        known()
                    )),
                )
                .at_line(p.line_of("models")));
            }
        }
        if let Some(m) = &self.router.default_model {
            if catalog.model(m).is_none() && !self.providers.iter().any(takes_unknown) {
                let mut e = ConfigError::new(
                    "router.default_model",
                    redact_secrets(&format!(
                        "unknown model {m:?}; the catalog knows {}, and no provider takes \
                         models it does not know (`allow_unknown_models = true`)",
                        known()
                    )),
                );
                if let Some(l) = self.default_model_line {
                    e = e.at_line(l);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// A [`RouterBuilder`] with the `[router]` settings and the catalog applied, and no
    /// providers yet.
    pub fn router_builder(&self) -> Result<RouterBuilder, ConfigError> {
        Ok(self.router_builder_with(self.catalog()?))
    }

    fn router_builder_with(&self, catalog: Arc<Catalog>) -> RouterBuilder {
        let r = &self.router;
        let mut b = Router::builder().catalog(catalog);
        if let Some(d) = r.timeout {
            b = b.attempt_timeout(d);
        }
        if let Some(d) = r.deadline {
            b = b.deadline(d);
        }
        if let Some(n) = r.max_attempts {
            b = b.max_attempts(n);
        }
        if let Some(m) = &r.default_model {
            b = b.default_model(m.clone());
        }
        if let Some(yes) = r.failover_on_content_policy {
            b = b.failover_on_content_policy(yes);
        }
        if let Some(d) = r.cooldown {
            b = b.cooldown(d);
        }
        if let Some(d) = r.retry_backoff {
            b = b.retry_backoff(d);
        }
        if let Some(d) = r.rate_limit_wait {
            b = b.rate_limit_wait(d);
        }
        if let Some(d) = r.max_wait {
            b = b.max_wait(d);
        }
        for budget in &r.budgets {
            b = b.budget(*budget);
        }
        if let Some(usd) = r.fallback_usd_per_image {
            b = b.fallback_usd_per_image(usd);
        }
        if let Some(c) = &r.breaker {
            b = b.breaker(c.clone());
        }
        if let Some(yes) = r.cheap_probe {
            b = b.cheap_probe(yes);
        }
        if let Some(w) = r.score {
            b = b.scorer(Arc::new(crate::score::DefaultScorer::new(w)));
        }
        if let Some(h) = &r.health {
            b = b.health(h.clone());
        }
        if let Some(st) = r.strategy {
            b = b.strategy(st);
        }
        b
    }

    /// Builds the router with your own provider constructor: `make` gets each provider's
    /// checked table, its credential (read from the environment through `env`) and the
    /// configuration's catalog, and returns the provider. Errors from `make` are scoped to the provider (`provider[1].…`) and given
    /// the provider's line when they have none.
    pub fn build_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        mut make: impl FnMut(
            &ProviderConfig,
            Option<Credential>,
            &Arc<Catalog>,
        ) -> Result<Arc<dyn Provider>, ConfigError>,
    ) -> Result<Router, ConfigError> {
        let catalog = self.catalog()?;
        let mut b = self.router_builder_with(catalog.clone());
        for (i, p) in self.providers.iter().enumerate() {
            let cred = p.credential(i, env)?;
            let provider = make(p, cred, &catalog).map_err(|e| {
                let line = e.line.unwrap_or_else(|| p.line_of(&e.field));
                let mut e = e.scoped(&format!("provider[{i}]"));
                e.line = Some(line);
                e
            })?;
            b = b.provider_arc(provider, p.options());
        }
        b.build()
    }
}

impl RouterConfig {
    /// Builds the router with the built-in providers, reading keys from the process
    /// environment.
    pub fn build(&self) -> Result<Router, ConfigError> {
        self.build_with(&process_env, build_provider)
    }
}

impl Router {
    /// Builds a router from a TOML configuration file (see the [`config`](crate::config)
    /// module for the format). Keys are read from the environment variables the file names.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), image_router::ConfigError> {
    /// let router = image_router::Router::from_config_file("image-router.toml")?;
    /// # Ok(()) }
    /// ```
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<Router, ConfigError> {
        RouterConfig::from_file(path)?.build()
    }

    /// Builds a router from TOML text (see [`Router::from_config_file`]).
    pub fn from_config_str(text: &str) -> Result<Router, ConfigError> {
        text.parse::<RouterConfig>()?.build()
    }
}

/// Reads a variable from the process environment.
pub fn process_env(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

/// Builds the built-in provider for a `[[provider]]` table with its credential.
///
/// This is the default constructor of [`RouterConfig::build`]; use
/// [`RouterConfig::build_with`] to add your own kinds.
pub fn build_provider(
    p: &ProviderConfig,
    credential: Option<Credential>,
    catalog: &Arc<Catalog>,
) -> Result<Arc<dyn Provider>, ConfigError> {
    use crate::providers::{Azure, Compatible, CompatibleMode, OpenAi};
    macro_rules! common {
        ($b:expr) => {{
            let mut b = $b.name(&p.name).catalog(catalog.clone());
            if !p.models.is_empty() {
                b = b.models(p.models.clone());
            }
            if let Some(a) = p.allow_unknown_models {
                b = b.allow_unknown_models(a);
            }
            b
        }};
    }
    let key = |k: &str| ConfigError::new(k, "missing credential").at_line(p.line_of(k));
    Ok(match p.kind {
        ProviderKind::OpenAi => {
            let cred = credential.ok_or_else(|| key("api_key_env"))?;
            let mut b = common!(OpenAi::builder()).api_key(cred.secret);
            if let Some(u) = &p.base_url {
                b = b.base_url(u);
            }
            if let Some(o) = &p.organization {
                b = b.organization(o);
            }
            if let Some(pr) = &p.project {
                b = b.project(pr);
            }
            Arc::new(b.build()?)
        }
        ProviderKind::Azure => {
            let cred = credential.ok_or_else(|| key("api_key_env"))?;
            let mut b = common!(Azure::builder()).endpoint(p.endpoint.clone().unwrap_or_default());
            b = if cred.bearer {
                b.bearer_token(cred.secret)
            } else {
                b.api_key(cred.secret)
            };
            for (model, dep) in &p.deployments {
                b = b.deployment(model, dep);
            }
            if let Some(d) = &p.default_deployment {
                b = b.default_deployment(d);
            }
            if let Some(v) = &p.api_version {
                b = b.api_version(v);
            }
            if let Some(v1) = p.v1_surface {
                b = b.v1_surface(v1);
            }
            Arc::new(b.build()?)
        }
        _ => {
            let mut b =
                common!(Compatible::builder()).base_url(p.base_url.clone().unwrap_or_default());
            if let Some(c) = credential {
                b = b.api_key(c.secret);
            }
            b = b.mode(match p.mode.unwrap_or_default() {
                ProxyMode::Images => CompatibleMode::Images,
                ProxyMode::Chat => CompatibleMode::Chat,
            });
            for (from, to) in &p.rename {
                b = b.rename_model(from, to);
            }
            Arc::new(b.build()?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_from_messages() {
        let key = format!("sk-{}", "x".repeat(30));
        let m = format!("invalid type: string \"{key}\", expected i64");
        assert_eq!(
            without_string_values(&m),
            "invalid type: a string, expected i64"
        );
        assert_eq!(
            redact_secrets(&format!("{key:?} is not a duration")),
            "\"sk-…(redacted)\" is not a duration"
        );
        assert_eq!(redact_secrets("sk-short"), "sk-short");
    }

    #[test]
    fn key_at_finds_key_and_header() {
        let t = "[router]\ntimeout = 5\n[[provider]]\n";
        assert_eq!(key_at(t, 12).as_deref(), Some("timeout"));
        assert_eq!(key_at(t, 24).as_deref(), Some("provider"));
        assert_eq!(table_at(t, 12).as_deref(), Some("router"));
        assert_eq!(
            table_at("[router.breaker]\nx = 1\n", 18).as_deref(),
            Some("router.breaker")
        );
        assert_eq!(provider_index_at(t, t.len()), Some(0));
    }
}
