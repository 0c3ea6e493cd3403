//! Doctor: checks every configured provider *without generating an image* and explains each
//! problem in plain words, with what to do.
//!
//! Why: the most common first experience with image models is a 429 before a single image
//! was made, and the 429 may mean three different things (a real rate limit, no quota, or a
//! tier without access). A generation costs money and minutes; a `GET /models/{model}` (or an
//! Azure deployment lookup, see [`Provider::probe`]) costs nothing, exercises the same key,
//! URL and account, and gets classified by the same code as a generation. Missing
//! environment variables are reported per provider instead of aborting, so one run shows
//! every problem at once.
//!
//! What a check can and cannot see: a models (or deployment) lookup proves the URL, the key,
//! the organization/project headers and that the account can see the model. Tier access,
//! quota, billing and verification problems show on it only where the provider enforces them
//! on that endpoint too; when a check passes but generations still fail, the router's
//! `explain()` on the generation error gives the same explanations.
//!
//! One check, two readers: doctor does not probe by itself. It builds a router from the
//! providers it could build (with the file's settings) and runs the router's capability check
//! ([`Router::check_with`], `src/router/check.rs`) on it, then reads each provider and model
//! as doctor does: a [`Problem`] and a [`Health`] per entry, the classified error, the live
//! limits compared with the configured ones, and what the check marked. [`check_router`] does
//! the same on a router an application already built. Providers that could not be built (no
//! key, a bad table) are reported from the configuration, in their place.
//!
//! Doctor's verdict is stricter than the router's: a provider that did not answer in time is
//! `Unusable` to doctor (someone should look), while the router keeps it in service
//! ([`CheckResult::Unchecked`]) because one slow lookup proves nothing about the next request.
//!
//! The results are plain data ([`DoctorReport`], serializable) with the same
//! [`Explanation`] text as `explain()`; `image-router doctor` only prints them.
//!
//! ```
//! # async fn run() {
//! use image_router::config::RouterConfig;
//! use image_router::doctor;
//! use std::time::Duration;
//! let cfg: RouterConfig = r#"
//!     [[provider]]
//!     name = "openai"
//!     kind = "openai"
//!     api_key_env = "SURELY_UNSET_VARIABLE_FOR_THIS_EXAMPLE"
//! "#.parse().unwrap();
//! let report = doctor::check_config(&cfg, None, Duration::from_secs(10)).await;
//! assert!(!report.all_usable());
//! assert_eq!(report.providers[0].problem, Some(doctor::Problem::NoKey));
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::catalog::Catalog;
use crate::config::{Credential, ProviderConfig, RouterConfig};
use crate::config_error::ConfigError;
use crate::error::{AccessDenial, ErrorKind, NotFoundKind, ProviderError};
use crate::explain::Explanation;
use crate::provider::{ProbeReport, Provider, ProviderKind};
use crate::quota::headers::RateLimitHeaders;
use crate::router::{CheckOptions, CheckResult, CheckedProvider, Mark, Router};

/// How a provider came out of the check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Reachable, key accepted, model served.
    Ok,
    /// Usable, but something deserves attention (rate limited right now, a transient server
    /// error, or the provider has no cheap check).
    Warning,
    /// Will not serve requests until the problem is fixed.
    Unusable,
}

/// The problem found, one per provider and model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// The environment variable named by `api_key_env` is not set.
    NoKey,
    /// The key was rejected (401).
    InvalidKey,
    /// A 429 "retry after 0.0 seconds": the tier has no access to the model.
    TierAccess,
    /// `insufficient_quota`.
    InsufficientQuota,
    /// `billing_hard_limit_reached`.
    BillingHardLimit,
    /// The organization must be verified.
    OrgNotVerified,
    /// Country / region not supported, or model not available in the region.
    RegionNotSupported,
    /// Another 403 (key permissions, blocked resource).
    Forbidden,
    /// Azure deployment not found.
    DeploymentNotFound,
    /// Model not found / not available to this account.
    ModelNotFound,
    /// 404 on the path: wrong base URL or endpoint.
    EndpointNotFound,
    /// Could not connect (DNS, refused, TLS, reset) or no connection in time.
    EndpointUnreachable,
    /// Connected but no answer in time.
    Timeout,
    /// Rate limited right now (the key and model work).
    RateLimited,
    /// 5xx.
    ServerError,
    /// The provider could not be built from its configuration.
    Config,
    /// The provider has no cheap check (custom provider).
    NotChecked,
    /// Something else (an unexpected answer).
    Other,
}

/// One provider's check.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ProviderCheck {
    /// Provider name.
    pub name: String,
    /// Provider kind (serialized as in the config file: `"openai"`, `"azure"`, ...).
    pub kind: ProviderKind,
    /// The model checked (our name).
    pub model: String,
    /// Overall result.
    pub health: Health,
    /// What is wrong, if anything.
    pub problem: Option<Problem>,
    /// What was checked and how it answered.
    pub probe: Option<ProbeReport>,
    /// The classified error, when the check failed.
    pub error: Option<ProviderError>,
    /// Cause and action in plain words, when there is a problem.
    pub explanation: Option<Explanation>,
    /// Configured tier.
    pub tier: Option<String>,
    /// Requests per minute the router will use (explicit, else the tier's).
    pub rpm: Option<u32>,
    /// Tokens per minute the router will use.
    pub tpm: Option<u64>,
    /// Images per minute the router will use (explicit, else the tier's figure for this
    /// model).
    pub ipm: Option<u32>,
    /// Notes (e.g. live limits differ from the configured ones).
    pub notes: Vec<String>,
    /// How long the check took, ms.
    pub ms: u64,
    /// What the check marked in the router: the provider's denial, or this model's
    /// cool-down.
    pub marked: Option<Mark>,
}

impl ProviderCheck {
    fn new(p: &ProviderConfig, model: &str, catalog: &Catalog) -> Self {
        // The tier's figures for the checked model (a usage tier's are per model); a tier
        // without access shows as 0 / 0, as the check below reads it.
        let tier = p.tier.as_deref().and_then(|t| {
            crate::quota::limits::Limits::resolve_for_model(
                catalog,
                Some(t),
                model,
                None,
                None,
                None,
            )
            .ok()
            .map(|mut l| {
                if l.no_access.is_some() {
                    (l.rpm, l.tpm) = (Some(0), Some(0));
                }
                l
            })
        });
        Self {
            name: p.name.clone(),
            kind: p.kind,
            model: model.to_string(),
            health: Health::Ok,
            problem: None,
            probe: None,
            error: None,
            explanation: None,
            tier: p.tier.clone(),
            rpm: p.rpm.or(tier.as_ref().and_then(|t| t.rpm)),
            tpm: p.tpm.or(tier.as_ref().and_then(|t| t.tpm)),
            ipm: p.ipm.or(tier.as_ref().and_then(|t| t.ipm)),
            notes: Vec::new(),
            ms: 0,
            marked: None,
        }
    }

    /// Whether the provider can serve requests.
    pub fn usable(&self) -> bool {
        self.health != Health::Unusable
    }
}

/// Every provider's check, in configuration order, and the shared store's.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct DoctorReport {
    /// One entry per configured provider and model checked (a provider that could not be
    /// built: one entry).
    pub providers: Vec<ProviderCheck>,
    /// The shared state store's check (`[store] kind = "redis"`); `None` for the in-process
    /// store, which has nothing to reach.
    pub store: Option<StoreCheck>,
}

impl DoctorReport {
    /// Whether every provider is usable and the shared store (if any) answers.
    pub fn all_usable(&self) -> bool {
        self.providers.iter().all(ProviderCheck::usable) && self.store.as_ref().is_none_or(|s| s.ok)
    }
}

/// The check of a shared state store: does the server answer, and which version is it.
///
/// What is checked: a connection within the check's time-out, `PING` (the answer must be
/// `PONG`) and `INFO server` for `redis_version` (Valkey answers it too, with its
/// compatibility version, and adds `valkey_version`, reported when present). Both commands
/// are read-only and write no key. The URL is never shown: it may carry a password.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct StoreCheck {
    /// The store's kind (`"redis"`).
    pub kind: &'static str,
    /// The server answered `PING`.
    pub ok: bool,
    /// The server's version (`redis_version`, or `valkey_version` on Valkey).
    pub server_version: Option<String>,
    /// What went wrong and what to do, when the check failed.
    pub explanation: Option<Explanation>,
    /// Time the check took, ms.
    pub ms: u64,
}

/// Checks the store of `config` (see [`StoreCheck`]): `None` for the in-process store.
/// The URL is read through `env` from the variable `[store] url_env` names. Never fails or
/// panics: every problem is a failed [`StoreCheck`] with an explanation.
pub async fn check_store(
    config: &RouterConfig,
    env: &dyn Fn(&str) -> Option<String>,
    timeout: Duration,
) -> Option<StoreCheck> {
    if config.store.kind == crate::config::StoreKind::InProcess {
        return None;
    }
    #[cfg(feature = "redis")]
    {
        Some(redis_check(&config.store, env, timeout).await)
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = (env, timeout);
        Some(StoreCheck {
            kind: "redis",
            ok: false,
            server_version: None,
            explanation: Some(Explanation::new(
                "The configuration asks for a Redis store, but this build of image-router has no `redis` feature.",
                "Build image-router with the `redis` feature, or set `[store] kind = \"in-process\"`.",
            )),
            ms: 0,
        })
    }
}

#[cfg(feature = "redis")]
async fn redis_check(
    store: &crate::config::StoreSettings,
    env: &dyn Fn(&str) -> Option<String>,
    timeout: Duration,
) -> StoreCheck {
    let started = std::time::Instant::now();
    let failed = |cause: String, action: &str| StoreCheck {
        kind: "redis",
        ok: false,
        server_version: None,
        explanation: Some(Explanation::new(
            crate::redact::text(&cause),
            action.to_string(),
        )),
        ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    let config = match store.redis_config_from(env) {
        Ok(Some(c)) => c,
        Ok(None) => return failed("The store is not a Redis store.".into(), "-"),
        Err(e) => {
            return failed(
                format!("Redis store: {}", e.message),
                "Export the variable `[store] url_env` names with the server's redis:// or \
                 rediss:// URL before running.",
            )
        }
    };
    let client = match config.client() {
        Ok(c) => c,
        Err(e) => return failed(format!("Redis store: {}", e.message), "Fix the URL."),
    };
    let talk = async {
        // On a cluster, PING goes to every node (all must answer) and INFO answers per node.
        let mut conn = client.connect(timeout).await?;
        let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
        let info = crate::redis_conn::info_server(&mut conn).await?.join("\n");
        Ok::<_, redis::RedisError>((pong, info))
    };
    match tokio::time::timeout(timeout, talk).await {
        Err(_) => failed(
            format!("Redis store: no answer within {} ms.", timeout.as_millis()),
            "Check that the server runs and is reachable from here (host, port, firewall, TLS \
             for rediss://).",
        ),
        // The error's text can name the host but not the password (the redis crate does not
        // print URLs); it is redacted anyway.
        Ok(Err(e)) => failed(
            format!("Redis store: the server did not answer: {e}"),
            "Check that the server runs, the URL's host and port, its password (AUTH) and \
             TLS (rediss://).",
        ),
        Ok(Ok((pong, _))) if pong != "PONG" => failed(
            format!("Redis store: PING answered {pong:?}, not PONG."),
            "Check that the URL points at a Redis (or Valkey) server.",
        ),
        Ok(Ok((_, info))) => StoreCheck {
            kind: "redis",
            ok: true,
            server_version: info_field(&info, "valkey_version")
                .map(|v| format!("valkey {v}"))
                .or_else(|| info_field(&info, "redis_version")),
            explanation: None,
            ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        },
    }
}

/// The value of `key` in an `INFO` answer (`key:value` lines).
#[cfg(feature = "redis")]
fn info_field(info: &str, key: &str) -> Option<String> {
    info.lines().find_map(|l| {
        l.trim()
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

/// The problem and health an error means.
pub fn classify(err: &ProviderError) -> (Problem, Health) {
    use Health::*;
    match &err.kind {
        ErrorKind::Authentication => (Problem::InvalidKey, Unusable),
        ErrorKind::AccessDenied { reason } => (
            match reason {
                AccessDenial::TierAccess => Problem::TierAccess,
                AccessDenial::InsufficientQuota => Problem::InsufficientQuota,
                AccessDenial::BillingHardLimit => Problem::BillingHardLimit,
                AccessDenial::OrganizationNotVerified => Problem::OrgNotVerified,
                AccessDenial::RegionNotSupported => Problem::RegionNotSupported,
                _ => Problem::Forbidden,
            },
            Unusable,
        ),
        ErrorKind::NotFound { what } => (
            match what {
                NotFoundKind::Model => Problem::ModelNotFound,
                NotFoundKind::Deployment => Problem::DeploymentNotFound,
                NotFoundKind::Endpoint => Problem::EndpointNotFound,
                _ => Problem::Other,
            },
            Unusable,
        ),
        ErrorKind::Connect | ErrorKind::Timeout { sent: false } => {
            (Problem::EndpointUnreachable, Unusable)
        }
        ErrorKind::Timeout { sent: true } => (Problem::Timeout, Unusable),
        ErrorKind::RateLimited { .. } => (Problem::RateLimited, Warning),
        ErrorKind::Server => (Problem::ServerError, Warning),
        _ => (Problem::Other, Warning),
    }
}

/// The model a provider that could not be built is reported with: `model` if given, else
/// the router's default model, else the catalog's; a provider with a `models` list that lacks
/// it is reported with its first. (A built provider is checked for each of its configured
/// models, see [`check_router`].)
pub fn model_for(
    cfg: &RouterConfig,
    p: &ProviderConfig,
    model: Option<&str>,
    catalog: &Catalog,
) -> String {
    let wanted = model
        .map(str::to_string)
        .or_else(|| cfg.router.default_model.clone())
        .unwrap_or_else(|| catalog.default_model().to_string());
    if model.is_none() && !p.models.is_empty() && !p.models.contains(&wanted) {
        return p.models[0].clone();
    }
    wanted
}

/// Checks every provider of a built router with [`Router::check_with`] (the same check as
/// [`Router::check`], so the router marks what it finds: a rejected key denies the provider,
/// a missing model is cooled down) and gives each provider and model its problem, health and
/// explanation. `model`: look up this model on every provider instead of the configured ones.
/// The whole check ends within `timeout`.
pub async fn check_router(router: &Router, model: Option<&str>, timeout: Duration) -> DoctorReport {
    let mut options = CheckOptions::new().timeout(timeout);
    if let Some(m) = model {
        options = options.models([m]);
    }
    let report = router.check_with(options).await;
    DoctorReport {
        providers: report
            .providers
            .iter()
            .flat_map(from_check)
            .map(redacted)
            .collect(),
        // A built router's store is checked by its own admissions; `check_config` checks
        // the configured store's server.
        store: None,
    }
}

/// One entry per model of a provider's check, read as doctor reads it.
fn from_check(p: &CheckedProvider) -> Vec<ProviderCheck> {
    p.models
        .iter()
        .map(|m| {
            let mut check = ProviderCheck {
                name: p.name.clone(),
                kind: p.kind,
                model: m.model.clone(),
                health: Health::Ok,
                problem: None,
                probe: m.probe.clone(),
                error: None,
                explanation: None,
                tier: p.tier.clone(),
                // This model's window (a usage tier's figures are per model).
                rpm: m.limits.as_ref().map_or(p.rpm, |l| l.rpm),
                tpm: m.limits.as_ref().map_or(p.tpm, |l| l.tpm),
                ipm: m.limits.as_ref().map_or(p.ipm, |l| l.ipm),
                notes: Vec::new(),
                ms: m.ms,
                marked: match m.result {
                    CheckResult::Denied => p.denied.clone(),
                    _ => m.cooled_down.clone(),
                },
            };
            // A tier without access (`free`, or rpm / tpm 0) passes a models lookup, yet the
            // router never sends it a request: say so instead of "ok".
            if let Some(x) = &p.no_access {
                check.health = Health::Unusable;
                check.problem = Some(Problem::TierAccess);
                check.explanation = Some(x.clone());
            }
            match &m.error {
                Some(err) => {
                    let (problem, health) = classify(err);
                    check.problem = Some(problem);
                    check.health = health;
                    check.explanation = m.explanation.clone();
                    check.error = Some(err.clone());
                }
                None => {
                    if m.probe.as_ref().is_some_and(|r| !r.probed) && p.no_access.is_none() {
                        check.health = Health::Warning;
                        check.problem = Some(Problem::NotChecked);
                        check.explanation = m.explanation.clone();
                    }
                    if let Some(r) = &m.probe {
                        let limits = r.rate_limits;
                        note_limits(&mut check, &limits);
                    }
                }
            }
            check
        })
        .collect()
}

fn note_limits(check: &mut ProviderCheck, h: &RateLimitHeaders) {
    if let (Some(live), Some(cfg)) = (h.limit_requests, check.rpm) {
        if live != u64::from(cfg) {
            check.notes.push(format!(
                "the provider reports {live} requests per minute; the configuration says {cfg}: set `rpm = {live}` to use the real limit"
            ));
        }
    }
    if let (Some(live), Some(cfg)) = (h.limit_tokens, check.tpm) {
        if live != cfg {
            check.notes.push(format!(
                "the provider reports {live} tokens per minute; the configuration says {cfg}: set `tpm = {live}`"
            ));
        }
    }
}

/// Checks every provider of `config` with the providers `make` builds (see
/// [`RouterConfig::build_with`]); keys come from `env`. The providers that could be built are
/// checked concurrently on one router ([`check_router`]), the whole check within `timeout`;
/// one entry per provider and model, in configuration order. Never fails: every problem is a
/// [`ProviderCheck`].
pub async fn check_config_with(
    config: &RouterConfig,
    model: Option<&str>,
    timeout: Duration,
    env: &dyn Fn(&str) -> Option<String>,
    mut make: impl FnMut(
        &ProviderConfig,
        Option<Credential>,
        &Arc<Catalog>,
    ) -> Result<Arc<dyn Provider>, ConfigError>,
) -> DoctorReport {
    let catalog = match config.catalog() {
        Ok(c) => c,
        Err(e) => {
            // The catalog (or a tier) is wrong: every provider is affected the same way.
            let cat = Catalog::builtin();
            let providers: Vec<ProviderCheck> = config
                .providers
                .iter()
                .map(|p| {
                    let mut c = ProviderCheck::new(p, &model_for(config, p, model, cat), cat);
                    c.health = Health::Unusable;
                    c.problem = Some(Problem::Config);
                    c.explanation = Some(e.explain());
                    c
                })
                .collect();
            return DoctorReport {
                providers: providers.into_iter().map(redacted).collect(),
                store: check_store(config, env, timeout).await,
            };
        }
    };
    // Providers that could not be built are reported from the configuration; the others are
    // checked together, on a router built from them with the file's settings. A provider
    // with several keys is checked key by key (each named `{name}/{VARIABLE}`), so one run
    // shows which key is missing, revoked or out of quota.
    let tables: Vec<(usize, ProviderConfig)> = config
        .providers
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            let keys = p.keys();
            if keys.is_empty() {
                vec![(i, p.clone())]
            } else {
                keys.into_iter().map(|k| (i, k)).collect()
            }
        })
        .collect();
    let mut checks: Vec<Vec<ProviderCheck>> = Vec::with_capacity(tables.len());
    let mut built = Vec::new();
    for (t, (i, p)) in tables.iter().enumerate() {
        let i = *i;
        let mut check = ProviderCheck::new(p, &model_for(config, p, model, &catalog), &catalog);
        let made = p
            .credential(i, env)
            .map_err(|e| (Problem::NoKey, e))
            .and_then(|cred| {
                make(p, cred, &catalog)
                    .map_err(|e| (Problem::Config, e.scoped(&format!("provider[{i}]"))))
            });
        match made {
            Err((problem, e)) => {
                check.health = Health::Unusable;
                check.problem = Some(problem);
                check.explanation = Some(if problem == Problem::NoKey {
                    no_key(p)
                } else {
                    e.explain()
                });
                checks.push(vec![check]);
            }
            Ok(provider) => {
                built.push((t, provider, check));
                checks.push(Vec::new());
            }
        }
    }
    if !built.is_empty() {
        // This router is doctor's own: it checks once, here, not again at start.
        let router = config.router_builder().and_then(|b| {
            let mut b = b.check_on_start(false);
            for (t, provider, _) in &built {
                b = b.provider_arc(provider.clone(), tables[*t].1.options());
            }
            b.build()
        });
        match router {
            Ok(router) => {
                for c in check_router(&router, model, timeout).await.providers {
                    if let Some(pos) = tables.iter().position(|(_, p)| p.name == c.name) {
                        checks[pos].push(c);
                    }
                }
            }
            Err(e) => {
                // The settings were checked when the file loaded; should the router still
                // refuse them, every provider that was built shares the problem.
                for (t, _, mut check) in built {
                    check.health = Health::Unusable;
                    check.problem = Some(Problem::Config);
                    check.explanation = Some(e.explain());
                    checks[t].push(check);
                }
            }
        }
    }
    DoctorReport {
        providers: checks.into_iter().flatten().map(redacted).collect(),
        store: check_store(config, env, timeout).await,
    }
}

/// The advice for a provider whose key variable is not set. A name that looks like a pasted
/// key is never printed.
fn no_key(p: &ProviderConfig) -> Explanation {
    let var = crate::redact::env_var_name(
        p.api_key_env
            .as_deref()
            .or(p.bearer_token_env.as_deref())
            .unwrap_or("?"),
    );
    Explanation::new(
        format!(
            "{}: no key. The environment variable {var} (named by `api_key_env` at line {}) is not set.",
            p.name,
            p.line_of("api_key_env")
        ),
        format!("Export the key before running: `export {var}=...` (keys are never written in the config file)."),
    )
}

/// The check with credentials in URLs (user-info, key query parameters) and `sk-` keys
/// masked in every text it carries: the report is printed and serialized as it is.
fn redacted(mut c: ProviderCheck) -> ProviderCheck {
    use crate::redact::text;
    if let Some(p) = &mut c.probe {
        p.checked = p.checked.as_deref().map(text);
        p.detail = p.detail.as_deref().map(text);
    }
    if let Some(e) = &mut c.error {
        e.message = text(&e.message);
    }
    if let Some(x) = &mut c.explanation {
        x.cause = text(&x.cause);
        x.action = text(&x.action);
    }
    for n in &mut c.notes {
        *n = text(n);
    }
    c
}

/// [`check_config_with`] with the built-in providers and the process environment.
pub async fn check_config(
    config: &RouterConfig,
    model: Option<&str>,
    timeout: Duration,
) -> DoctorReport {
    check_config_with(
        config,
        model,
        timeout,
        &crate::config::process_env,
        crate::config::build_provider,
    )
    .await
}
