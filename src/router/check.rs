//! The capability check: [`Router::check`] asks every provider, without generating an image,
//! whether it answers, whether its key is valid and whether it offers each configured model
//! or deployment, and **marks what it cannot serve** so the first real request does not pay
//! for the discovery.
//!
//! # Why
//!
//! Without a check, the router learns that a key was revoked or a deployment deleted from the
//! first user request that goes there: that request pays an attempt (and its latency) before
//! failing over. The providers already have a cheap lookup ([`Provider::probe`]: `GET
//! /models/{model}` for OpenAI and proxies, the deployment for Azure) that exercises the same
//! URL, key and account and is classified by the same code as a generation, so the check is
//! that lookup per provider and model, read through the router's own policy table
//! ([`policy::rule`]): whatever a real request's answer would do to the router, the lookup's
//! answer does too.
//!
//! # What it marks, and what it leaves alone
//!
//! | the lookup says | result | what the router does |
//! |---|---|---|
//! | found | [`CheckResult::Offered`] | rate-limit headers on the answer are applied to the limiter |
//! | 401, an account denial (quota, tier, verification, region, a blocked resource) | [`CheckResult::Denied`] | the provider is made unavailable through the state store ([`StateStore::deny`](super::store::StateStore::deny)) for the router's cool-down, as a real request's answer would |
//! | model or deployment not found | [`CheckResult::NotOffered`] | that model is cooled down on that provider ([`StateStore::cool_model`](super::store::StateStore::cool_model)) for the cool-down; requests for other models still go there |
//! | no answer in time, a 5xx, a connect error, a 429, a 404 on the lookup's own path, no cheap check, anything else | [`CheckResult::Unchecked`] | nothing: the provider stays usable, and the reason is reported |
//!
//! One deliberate difference from a real request: a 404 on the lookup's *path* (not a model
//! or deployment not found) would deny the provider if an image call got it, but on a lookup
//! it only shows that the lookup is not served there. Azure retired its data-plane deployment
//! lookup after api-version `2023-03-15-preview` (later versions answer `{"error":{"code":
//! "404","message":"Resource not found"}}` whatever the deployment; reported in
//! openai/openai-python#460 and Azure/azure-sdk-for-python#32170), and some proxies serve
//! neither `/models/{model}` nor `/models`; denying on that would take a working provider out
//! of service. So on Azure the check proves reachability and the key where the resource
//! still answers the lookup, and a missing deployment shows only where it answers
//! `DeploymentNotFound` (which also means "created less than 5 minutes ago": the cool-down
//! outlasts that).
//!
//! A check that could not decide never takes a provider out of service: only a definite
//! answer does. The marks are the ones a failed generation leaves, so they end the same way
//! (the breaker's cool-down, the model cool-down) and show the same way in
//! [`Router::status`].
//!
//! # Bounded
//!
//! Every provider and model is looked up concurrently, and every lookup ends at one deadline
//! (`check_timeout`, default [`DEFAULT_CHECK_TIMEOUT`]): a hanging provider costs the check
//! the timeout, never more. The marks are state-store calls, which the store bounds itself
//! (the in-process store never waits; see the store's contract).
//!
//! # At start
//!
//! With [`RouterBuilder::check_on_start`](super::RouterBuilder::check_on_start) (config
//! `[router] check_on_start = true`), the check runs once when the router starts:
//! [`RouterBuilder::build`](super::RouterBuilder::build) stays synchronous and, inside a tokio
//! runtime, starts the check in the background at once; requests sent before it ends wait for
//! it (at most `check_timeout`, before their own deadline starts), so none of them is sent to
//! a provider the check is about to rule out. Outside a runtime the first request runs it.
//! [`RouterBuilder::build_checked`](super::RouterBuilder::build_checked) waits for the check
//! and returns its report, for a start-up that wants to log it or refuse to start. The check
//! runs once per router; after a [`Router::reload`] call [`Router::check`] when wanted.
//!
//! # What a lookup cannot see
//!
//! A model lookup proves the URL, the key, the organization / project headers and that the
//! account can see the model. Tier access, quota and verification show on it only where the
//! provider enforces them on that endpoint too; the published reference does not say whether
//! `GET /v1/models/{model}` ("Retrieves a model instance") is refused for an account whose
//! tier has no image access, so such problems may still show first on a real request, as
//! without a check (not verified against a live account). What each answer means is the
//! classifier's (`providers/classify.rs`), the same as for generations.

use crate::quota::limits::Limits;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tracing::Instrument;

use super::policy::{self, BreakerRule};
use super::slot::Slot;
use super::snapshot::Snapshot;
use super::Router;
use crate::catalog::Catalog;
use crate::error::{ErrorKind, NotFoundKind, Outcome, ProviderError};
use crate::explain::Explanation;
use crate::metrics as m;
use crate::provider::{CallContext, ProbeReport, ProviderKind};

/// Default time the whole check may take (`check_timeout`).
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What to check (see [`Router::check_with`]); the defaults are the router's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckOptions {
    /// Time the whole check may take (default: the router's `check_timeout`).
    pub timeout: Option<Duration>,
    /// Models to look up on every provider (default: each provider's configured models,
    /// else the router's default model).
    pub models: Option<Vec<String>>,
}

impl CheckOptions {
    /// The router's settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the time the whole check may take.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Looks up these models on every provider instead of the configured ones.
    #[must_use]
    pub fn models<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.models = Some(models.into_iter().map(Into::into).collect());
        self
    }
}

/// How one model's lookup came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CheckResult {
    /// The provider answered, accepted the key and offers the model.
    Offered,
    /// The provider answered that the model (or the Azure deployment) does not exist: the
    /// model is cooled down on this provider.
    NotOffered,
    /// The key was rejected or the account is denied: the provider is unavailable until the
    /// cool-down ends.
    Denied,
    /// The check could not tell (no answer in time, a server error, a connect error, a rate
    /// limit, a lookup the provider does not serve, no cheap check): the provider stays
    /// usable.
    Unchecked,
}

impl CheckResult {
    /// Stable snake_case name, as in JSON and the metrics label.
    pub const fn as_str(&self) -> &'static str {
        match self {
            CheckResult::Offered => "offered",
            CheckResult::NotOffered => "not_offered",
            CheckResult::Denied => "denied",
            CheckResult::Unchecked => "unchecked",
        }
    }
}

/// Something the check marked in the router's state.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Mark {
    /// `None`: the whole provider is unavailable (a denial); `Some(model)`: only this model
    /// is cooled down on it.
    pub model: Option<String>,
    /// The answer that caused it.
    pub cause: Outcome,
    /// How long it lasts, ms (the router's cool-down).
    pub for_ms: u64,
    /// The provider's message (credentials masked).
    pub reason: String,
}

/// One model's lookup on one provider.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ModelCheck {
    /// The model (the router's name for it).
    pub model: String,
    /// How the lookup came out.
    pub result: CheckResult,
    /// Whether the provider gave an HTTP answer.
    pub answered: bool,
    /// Whether the key was accepted (`None`: not known).
    pub key_valid: Option<bool>,
    /// Whether the provider offers the model (`None`: not known).
    pub offered: Option<bool>,
    /// Why the model could not be checked, for [`CheckResult::Unchecked`].
    pub unchecked: Option<String>,
    /// What was looked up and how it answered, when it answered with a success.
    pub probe: Option<ProbeReport>,
    /// The classified error, when the lookup failed.
    pub error: Option<ProviderError>,
    /// Cause and action in plain words, for anything but [`CheckResult::Offered`].
    pub explanation: Option<Explanation>,
    /// The model cool-down the check set, for [`CheckResult::NotOffered`].
    pub cooled_down: Option<Mark>,
    /// How long the lookup took, ms.
    pub ms: u64,
    /// The limits of this model's window on the provider (explicit figures, else the tier's
    /// published figures for this model); `None` when they cannot be resolved.
    pub limits: Option<Limits>,
}

/// One provider's check.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct CheckedProvider {
    /// Provider name.
    pub name: String,
    /// Provider kind.
    pub kind: ProviderKind,
    /// Configured tier.
    pub tier: Option<String>,
    /// Requests per minute the router uses (explicit, else the tier's).
    pub rpm: Option<u32>,
    /// Tokens per minute the router uses (explicit, else the tier's).
    pub tpm: Option<u64>,
    /// Images per minute the router uses (explicit, else the tier's figure for the first
    /// model looked up; each model's own are in [`ModelCheck::limits`]).
    pub ipm: Option<u32>,
    /// Whether any lookup got an HTTP answer.
    pub answered: bool,
    /// Whether the key was accepted: `Some(false)` when any lookup was refused for the key,
    /// `Some(true)` when one answered otherwise, `None` when none could tell.
    pub key_valid: Option<bool>,
    /// The denial the check set (the provider is unavailable until it ends).
    pub denied: Option<Mark>,
    /// The configured limits allow no request at all (a `free` tier, or `rpm` / `tpm` 0):
    /// the router never sends this provider a request, whatever the lookup says.
    pub no_access: Option<Explanation>,
    /// One entry per model looked up.
    pub models: Vec<ModelCheck>,
    /// How long this provider's check took, ms.
    pub ms: u64,
}

impl CheckedProvider {
    /// Whether the router will send this provider requests after the check (not denied,
    /// not without access, and at least one model not cooled down).
    pub fn usable(&self) -> bool {
        self.denied.is_none()
            && self.no_access.is_none()
            && self
                .models
                .iter()
                .any(|m| m.result != CheckResult::NotOffered)
    }

    /// The lookup of `model`, if it was looked up.
    pub fn model(&self, model: &str) -> Option<&ModelCheck> {
        self.models.iter().find(|m| m.model == model)
    }
}

/// Every provider's check, in priority order (serializable, e.g. for `--json`).
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct CheckReport {
    /// One entry per provider.
    pub providers: Vec<CheckedProvider>,
    /// The time the check was allowed, ms.
    pub timeout_ms: u64,
    /// How long it took, ms.
    pub ms: u64,
}

impl CheckReport {
    /// The check of the provider named `name`.
    pub fn provider(&self, name: &str) -> Option<&CheckedProvider> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// Whether every provider offers every model looked up.
    pub fn all_offered(&self) -> bool {
        self.providers.iter().all(|p| {
            p.no_access.is_none() && p.models.iter().all(|m| m.result == CheckResult::Offered)
        })
    }
}

impl Router {
    /// Checks every provider without generating an image and marks what it cannot serve (the
    /// module docs of `src/router/check.rs` say why and how, summarised here): a rejected key or an
    /// account denial makes the provider unavailable for the cool-down, a missing model or
    /// deployment cools that model down on that provider, and a provider that could not be
    /// checked stays usable and is reported as unchecked. Providers and models are checked
    /// concurrently; the whole check ends within the router's `check_timeout`.
    ///
    /// ```no_run
    /// # async fn run(router: image_router::Router) {
    /// let report = router.check().await;
    /// for p in &report.providers {
    ///     for m in &p.models {
    ///         println!("{} / {}: {}", p.name, m.model, m.result.as_str());
    ///         if let Some(x) = &m.explanation {
    ///             println!("  {x}");
    ///         }
    ///     }
    /// }
    /// println!("{}", serde_json::to_string_pretty(&report).unwrap());
    /// # }
    /// ```
    pub async fn check(&self) -> CheckReport {
        self.check_with(CheckOptions::new()).await
    }

    /// [`check`](Self::check) with another timeout or other models.
    pub async fn check_with(&self, options: CheckOptions) -> CheckReport {
        let snap = self.inner.snapshot.load_full();
        let timeout = options.timeout.unwrap_or(snap.settings.check_timeout);
        let span = tracing::info_span!(
            "image_router.check",
            providers = snap.providers.len(),
            timeout_ms = millis(timeout),
        );
        run(&snap, &self.inner.clock, timeout, options.models.as_deref())
            .instrument(span)
            .await
    }

    /// The report of the check on start, once it has run (see
    /// [`RouterBuilder::check_on_start`](super::RouterBuilder::check_on_start)).
    pub fn start_check(&self) -> Option<CheckReport> {
        self.inner.start_check.get().cloned()
    }

    /// Runs the check on start unless it already ran (or waits for the one under way), and
    /// returns its report. Callers that are cancelled leave it to the next one.
    pub(crate) async fn run_start_check(&self) -> CheckReport {
        self.inner
            .start_check
            .get_or_init(|| self.check())
            .await
            .clone()
    }
}

/// Starts the check on start in the background when a tokio runtime is at hand (else the
/// first request runs it).
pub(crate) fn spawn_start_check(router: &Router) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let router = router.clone();
        // Detached: it ends within the check timeout, and requests wait on the same cell.
        drop(handle.spawn(async move {
            router.run_start_check().await;
        }));
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The check itself, on one snapshot.
async fn run(
    snap: &Snapshot,
    clock: &crate::clock::SharedClock,
    timeout: Duration,
    models: Option<&[String]>,
) -> CheckReport {
    let started = tokio::time::Instant::now();
    // One deadline for everything: a huge timeout must not overflow the clock.
    let deadline = started
        .checked_add(timeout)
        .unwrap_or_else(|| started + Duration::from_secs(365 * 24 * 3600));
    let providers = snap.providers.iter().map(|slot| {
        let wanted = match models {
            Some(list) => list.to_vec(),
            None => models_of(snap, slot),
        };
        let span = tracing::info_span!("image_router.check.provider", provider = slot.name());
        check_provider(snap, clock, slot, wanted, deadline).instrument(span)
    });
    let providers = futures_util::future::join_all(providers).await;
    CheckReport {
        providers,
        timeout_ms: millis(timeout),
        ms: millis(started.elapsed()),
    }
}

/// The provider's configured models, else the router's default model.
fn models_of(snap: &Snapshot, slot: &Slot) -> Vec<String> {
    let configured = slot.provider.configured_models();
    if !configured.is_empty() {
        return configured;
    }
    let default = snap
        .settings
        .default_model
        .clone()
        .unwrap_or_else(|| snap.catalog.default_model().to_string());
    vec![default]
}

async fn check_provider(
    snap: &Snapshot,
    clock: &crate::clock::SharedClock,
    slot: &Slot,
    models: Vec<String>,
    deadline: tokio::time::Instant,
) -> CheckedProvider {
    let started = tokio::time::Instant::now();
    let lookups = models
        .iter()
        .map(|model| lookup(slot, model, deadline, &snap.catalog));
    let found = futures_util::future::join_all(lookups).await;

    let o = &slot.options;
    // Each model's window has its own limits (a usage tier's figures are per model).
    let limits_of = |model: &str| {
        Limits::resolve_for_model(
            &snap.catalog,
            o.tier.as_deref(),
            model,
            o.rpm.map(i64::from),
            o.tpm.map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
            o.ipm.map(i64::from),
        )
        .ok()
    };
    let first = models
        .first()
        .map_or_else(|| snap.catalog.default_model(), String::as_str);
    let limits = limits_of(first);
    let rpm = limits.as_ref().and_then(|l| l.rpm);
    let ipm = limits.as_ref().and_then(|l| l.ipm);
    let tpm = limits.as_ref().and_then(|l| l.tpm);
    let without_access = limits.as_ref().is_some_and(|l| l.no_access.is_some());
    let mut check = CheckedProvider {
        name: slot.name().to_string(),
        kind: slot.provider.kind(),
        tier: o.tier.clone(),
        rpm,
        tpm,
        ipm,
        answered: false,
        key_valid: None,
        denied: None,
        no_access: without_access.then(|| no_access(slot.name(), o.tier.as_deref(), &snap.catalog)),
        models: Vec::with_capacity(found.len()),
        ms: 0,
    };
    let cooldown = snap.settings.cooldown;
    for (mut model, err) in found {
        model.limits = limits_of(&model.model);
        if let Some(err) = &err {
            let rule = policy::rule(&err.kind, snap.settings.policy());
            let lookup_path_missing = err.kind
                == (ErrorKind::NotFound {
                    what: NotFoundKind::Endpoint,
                });
            match (rule.breaker, policy::deny_reason(&err.kind)) {
                // A 404 on the lookup's own path says nothing about the image endpoint (see
                // the module docs: Azure retired its deployment lookup).
                _ if lookup_path_missing => {
                    model.unchecked = Some(format!(
                        "the lookup itself is not served here (HTTP 404 on its path): {}",
                        err.message
                    ));
                }
                (BreakerRule::Deny, Some(reason)) => {
                    model.result = CheckResult::Denied;
                    if check.denied.is_none() {
                        match slot.store.deny(reason, &err.message, cooldown).await {
                            Ok(()) => {
                                check.denied = Some(mark(None, err, cooldown));
                                slot.set_last_error(err);
                                super::publish_gauges(snap, slot, first);
                            }
                            Err(e) => tracing::warn!(
                                provider = slot.name(), error = %e, "check: denial not stored"
                            ),
                        }
                    }
                }
                _ if rule.cool_model => {
                    model.result = CheckResult::NotOffered;
                    let until = clock.now().saturating_add(cooldown);
                    match slot
                        .store
                        .cool_model(&model.model, err.outcome(), &err.message, until)
                        .await
                    {
                        Ok(()) => {
                            model.cooled_down = Some(mark(Some(&model.model), err, cooldown));
                            slot.set_last_error(err);
                        }
                        Err(e) => tracing::warn!(
                            provider = slot.name(), error = %e, "check: model cool-down not stored"
                        ),
                    }
                }
                _ => {
                    model.unchecked = Some(format!(
                        "{}: {}",
                        err.outcome().as_str().replace('_', " "),
                        err.message
                    ));
                }
            }
        }
        if let Some(report) = &model.probe {
            if report.probed {
                if let Err(e) = slot.store.observe(&model.model, &report.rate_limits).await {
                    tracing::warn!(provider = slot.name(), error = %e, "check: headers not stored");
                }
            }
        }
        m::check(slot.name(), model.result.as_str());
        check.answered |= model.answered;
        check.key_valid = match (check.key_valid, model.key_valid) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), _) | (_, Some(true)) => Some(true),
            _ => None,
        };
        model.error = err;
        check.models.push(model);
    }
    check.ms = millis(started.elapsed());
    check
}

fn mark(model: Option<&str>, err: &ProviderError, cooldown: Duration) -> Mark {
    Mark {
        model: model.map(str::to_string),
        cause: err.outcome(),
        for_ms: millis(cooldown),
        reason: err.message.clone(),
    }
}

/// One lookup, ended at `deadline`: the model's entry (result, answered, key, offered,
/// probe, explanation) and the error, if any. The result of a failed lookup is decided by
/// the caller from the policy table; until then it is [`CheckResult::Unchecked`].
async fn lookup(
    slot: &Slot,
    model: &str,
    deadline: tokio::time::Instant,
    catalog: &Arc<Catalog>,
) -> (ModelCheck, Option<ProviderError>) {
    let started = tokio::time::Instant::now();
    let left = deadline.saturating_duration_since(started);
    let ctx = CallContext::new(left);
    let answer = match tokio::time::timeout_at(deadline, slot.provider.probe(model, &ctx)).await {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(e)) => Err(e.with_masked_urls()),
        Err(_) => Err(ProviderError::new(
            slot.name(),
            ErrorKind::Timeout { sent: true },
            format!("no answer within {} ms", millis(left)),
        )),
    };
    let mut entry = ModelCheck {
        model: model.to_string(),
        result: CheckResult::Unchecked,
        answered: false,
        key_valid: None,
        offered: None,
        unchecked: None,
        probe: None,
        error: None,
        explanation: None,
        cooled_down: None,
        ms: millis(started.elapsed()),
        limits: None,
    };
    match answer {
        Ok(report) if report.probed => {
            entry.result = CheckResult::Offered;
            entry.answered = true;
            entry.key_valid = Some(true);
            entry.offered = Some(true);
            entry.probe = Some(report);
            (entry, None)
        }
        Ok(report) => {
            entry.unchecked =
                Some("the provider has no way to be checked without generating an image".into());
            entry.explanation = Some(Explanation::new(
                format!(
                    "{} has no way to be checked without generating an image.",
                    slot.name()
                ),
                "Nothing to fix; a real request will show whether it works.",
            ));
            entry.probe = Some(report);
            (entry, None)
        }
        Err(err) => {
            entry.answered = err.status.is_some();
            match &err.kind {
                ErrorKind::Authentication => entry.key_valid = Some(false),
                ErrorKind::NotFound { what } => {
                    if matches!(what, NotFoundKind::Model | NotFoundKind::Deployment) {
                        entry.key_valid = Some(true);
                        entry.offered = Some(false);
                    }
                }
                // An account denial or a rate limit is an answer to a key that was accepted.
                ErrorKind::AccessDenied { .. } | ErrorKind::RateLimited { .. } => {
                    entry.key_valid = Some(true)
                }
                _ => {}
            }
            entry.explanation = Some(err.explain_with(catalog, slot.options.tier.as_deref()));
            (entry, Some(err))
        }
    }
}

/// Why a provider configured without access is never sent a request.
fn no_access(name: &str, tier: Option<&str>, catalog: &Catalog) -> Explanation {
    Explanation::new(
        format!(
            "{name} is configured with no access to image models ({}): whatever its key \
             and account allow, the router never sends this provider a request.",
            match tier {
                Some(t) => format!("tier {t} gives no access"),
                None => "a tier without access".to_string(),
            }
        ),
        format!(
            "If the account has moved up, set its real `tier` (or `rpm` / `tpm`) in the \
             config. {}",
            crate::explain::tier_advice(catalog, tier)
        ),
    )
}
