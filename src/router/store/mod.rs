//! The state store: where a provider slot keeps the state that decides admission — rate-limit
//! room, budgets, and the provider-wide and per-model unavailability — behind one trait, so a
//! store shared by several router instances (e.g. Redis) can replace the in-process one
//! without touching the request loop.
//!
//! # Contract
//!
//! * **Admission is one atomic step.** [`StateStore::admit`] checks the request's [`Demand`]
//!   (its model, `n` images and estimated tokens) against every rate-limit dimension of the
//!   provider's window *for that model* (requests, images and tokens per minute, and any
//!   dimension a store adds) *and* reserves its estimated cost on the provider's and the
//!   router's budgets, all or nothing: a refusal leaves no partial reservation behind. A
//!   shared store does this in one server-side step (a Lua script or a transaction), or two
//!   instances could both see the last unit of room.
//! * **One window per model.** OpenAI counts image limits per model (a provider serving
//!   gpt-image-1 and gpt-image-1-mini has two independent minute windows), and an Azure
//!   deployment serves one model, so a store keeps one sliding window per model the provider
//!   has been asked for, with the limits [`LimitSettings::limits_for`] gives that model (the
//!   catalog's published figures for the provider's tier, explicit `rpm` / `tpm` / `ipm`
//!   applying to each model). Windows are created on first use and bounded in number
//!   ([`MAX_MODEL_WINDOWS`]): the router checks a request's model before admission, but a
//!   store must not grow without bound on model names anyway. Budgets, the breaker and
//!   denials stay provider-wide. Headers and 429s apply to the window of the model the answer
//!   was for ([`Settlement::model`], [`StateStore::observe`]).
//! * **Budgets reserve before sending and settle after**, atomically: [`StateStore::settle`]
//!   replaces the estimate with the actual tokens and cost, or releases it, or holds it.
//! * **Every admission ends exactly once**: settled, released ([`StateStore::release`]: the
//!   request was never sent) or held ([`StateStore::hold`]: it was sent and its outcome is
//!   unknown, so its rate-limit room stays used and its budget reservation is held until the
//!   budget's period ends). The slot's admission guard guarantees this, also when the request
//!   future is dropped or panics; `release` and `hold` are synchronous for that reason (they
//!   run in `Drop`), so a shared store queues them (and expires its reservations with a TTL
//!   as a backstop).
//! * **Provider-wide state every instance must learn at once lives in the store**: a denial
//!   ([`StateStore::deny`]: access denied, authentication, a missing endpoint — the provider is
//!   unavailable to every request until the cool-down ends), a per-model cool-down
//!   ([`StateStore::cool_model`]: model or deployment not found), and rate-limit blocks from a
//!   429's `retry-after` or from `x-ratelimit-*` headers ([`Settlement::rate_limited`],
//!   [`StateStore::observe`]). Health (latency, availability) stays per instance, in the slot.
//! * **The circuit breaker** ([`StateStore::breaker`]) is the store's record of provider-wide
//!   unavailability: the in-process store opens it for a denial (so one record, one duration,
//!   one state in `status()`); a shared store keeps a local breaker for fault counting and adds
//!   the shared denial on top.
//! * **Ranking reads are synchronous and cheap** ([`headroom`](StateStore::headroom) of the
//!   request's model, [`windows`](StateStore::windows) for status pages,
//!   [`budget_left`](StateStore::budget_left), [`unavailable`](StateStore::unavailable)): they
//!   order providers and may be slightly stale (a shared store answers them from a local cache
//!   it refreshes); admission, which is authoritative, is async.
//! * **Calls that change state are async and fallible** ([`StoreError`]): a shared store talks
//!   over the network and can fail or time out. The router treats a failed admission as a
//!   skipped provider (with the error in the skip) and a failed settlement as lost bookkeeping
//!   (logged), never as a failed request.
//! * **Every call is bounded by the store itself**: a shared store gives each network call a
//!   timeout (and reports it as a [`StoreError`]), so no request waits on the store forever;
//!   the router adds no timer of its own around the in-process store, which never waits.
//! * **Time** comes from the router's injected clock: callers pass `now` / `until` on that clock.
//!
//! The in-process store ([`InProcessStore`], the default) wraps the crate's
//! [`RateLimiter`], [`BudgetLedger`](crate::quota::budget::BudgetLedger)s and
//! [`CircuitBreaker`] and never fails. The trait uses `async-trait`, which boxes each call's
//! future: two small allocations per attempt (admit, settle), small against the provider
//! call.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::breaker::{BreakerConfig, CircuitBreaker, DenyReason};
use crate::catalog::Catalog;
use crate::config_error::ConfigError;
use crate::error::Outcome;
use crate::quota::budget::LedgerSnapshot;
use crate::quota::budget::{Budget, BudgetError, BudgetReservation};
use crate::quota::cost::{Cost, PriceUnknown};
use crate::quota::headers::RateLimitHeaders;
use crate::quota::limiter::{
    Denied, Headroom, LimiterConfig, Permit, RateLimiter, SHARED_KEY_MARGIN,
};
use crate::quota::limits::Limits;
use crate::quota::usage::Usage;

mod factory;
mod in_process;
#[cfg(feature = "redis")]
pub mod redis;

pub use factory::{InProcessFactory, StoreContext, StoreFactory};
pub use in_process::InProcessStore;

/// A store call that failed (a shared store's network or server error, or a time-out).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("state store: {message}")]
pub struct StoreError {
    /// What went wrong.
    pub message: String,
}

impl StoreError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Most model windows one in-process store keeps. Past it, windows with nothing in them are
/// forgotten first; if every window is busy, a request for yet another model is refused
/// (a [`Refusal::Store`]) rather than growing the map.
pub const MAX_MODEL_WINDOWS: usize = 64;

/// What a request asks of a provider's rate limits: one request of `images` images (its `n`)
/// and `tokens` estimated tokens, counted in the window of `model`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Demand<'a> {
    /// The model the request is for (the router's name, not a deployment's).
    pub model: &'a str,
    /// Images asked for (`n`).
    pub images: u32,
    /// Estimated tokens.
    pub tokens: u64,
}

impl<'a> Demand<'a> {
    /// A demand of `images` images and `tokens` tokens on `model`'s window.
    pub fn new(model: &'a str, images: u32, tokens: u64) -> Self {
        Self {
            model,
            images,
            tokens,
        }
    }
}

/// How a provider's rate limits are set: the catalog and tier to read each model's published
/// figures from, explicit numbers that apply to every model of the provider, and the margin.
#[derive(Clone, Debug)]
pub struct LimitSettings {
    /// The catalog the tier and per-model figures come from.
    pub catalog: Arc<Catalog>,
    /// The provider's usage tier.
    pub tier: Option<String>,
    /// Explicit requests per minute (each model).
    pub rpm: Option<u32>,
    /// Explicit tokens per minute (each model).
    pub tpm: Option<u64>,
    /// Explicit images per minute (each model).
    pub ipm: Option<u32>,
    /// Explicit safety margin; `None`: the whole limit, or [`SHARED_KEY_MARGIN`] for a
    /// shared key.
    pub margin: Option<f64>,
    /// The key is shared with other clients (see [`crate::quota::limiter`]).
    pub shared: bool,
}

impl LimitSettings {
    /// Limits from a tier and explicit numbers alone, on the built-in catalog.
    pub fn new(tier: Option<&str>, rpm: Option<u32>, tpm: Option<u64>) -> Self {
        Self {
            catalog: Arc::new(Catalog::builtin().clone()),
            tier: tier.map(str::to_string),
            rpm,
            tpm,
            ipm: None,
            margin: None,
            shared: false,
        }
    }

    /// The limits of `model`'s window ([`Limits::resolve_for_model`]); errors name the field.
    pub fn limits_for(&self, model: &str) -> Result<Limits, ConfigError> {
        Limits::resolve_for_model(
            &self.catalog,
            self.tier.as_deref(),
            model,
            self.rpm.map(i64::from),
            self.tpm.map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
            self.ipm.map(i64::from),
        )
    }

    /// The margin that applies: the explicit one, else 1 (the whole limit), or
    /// [`SHARED_KEY_MARGIN`] for a shared key.
    pub fn margin(&self) -> f64 {
        self.margin
            .unwrap_or(if self.shared { SHARED_KEY_MARGIN } else { 1.0 })
    }

    /// The limiter settings of `model`'s window; out-of-range values are errors naming them.
    pub fn limiter_config(&self, model: &str) -> Result<LimiterConfig, ConfigError> {
        let config = LimiterConfig::new(self.limits_for(model)?)
            .margin(self.margin())
            .shared(self.shared);
        // Validated by building a limiter on a throw-away clock: the one place the rules are.
        RateLimiter::with_config(config.clone(), Arc::new(crate::clock::ManualClock::new()))?;
        Ok(config)
    }
}

/// Why [`StateStore::admit`] refused a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum Refusal {
    /// A rate limit has no room (or never will).
    RateLimit(Denied),
    /// A budget cannot cover the estimated cost.
    Budget(BudgetError),
    /// The store could not answer.
    Store(StoreError),
    /// The provider (or this model) is unavailable: a denial or a cool-down another instance
    /// recorded in a shared store, found by the admission itself (so no instance pays a
    /// second failed call once one has recorded it).
    Unavailable(Unavailable),
}

/// A request admitted by a store: its rate-limit room and budget reservation, until it is
/// settled, released or held (exactly one of them; see the module docs).
#[derive(Debug)]
#[must_use = "an admission must be settled, released or held"]
pub struct Admission {
    /// The tokens admitted.
    pub tokens: u64,
    /// A shared store's id of its reservation (0 for the in-process store).
    pub id: u64,
    local: Option<(Permit, BudgetReservation)>,
}

impl Admission {
    /// An admission a shared store made, known to it by `id`.
    pub fn shared(id: u64, tokens: u64) -> Self {
        Self {
            tokens,
            id,
            local: None,
        }
    }
}

/// How a budget reservation ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BudgetSettlement {
    /// Charge the actual cost (USD).
    Commit(f64),
    /// Free it: the request cost nothing.
    Release,
    /// Hold it until the budget's period ends: the request may have been billed.
    Hold,
}

/// The outcome of a sent request, as the store applies it.
#[derive(Clone, Copy, Debug)]
pub struct Settlement<'a> {
    /// Give the rate-limit room back (the provider did no work that counts).
    pub refund_rate_limit: bool,
    /// The actual usage, to replace the token estimate.
    pub usage: Option<&'a Usage>,
    /// What happens to the budget reservation.
    pub budget: BudgetSettlement,
    /// The model the request was for: headers and a 429 apply to its window.
    pub model: &'a str,
    /// Rate-limit headers of the answer, to apply to the limiter.
    pub headers: Option<&'a RateLimitHeaders>,
    /// A real 429: back off, and block admissions for this long.
    pub rate_limited: Option<Duration>,
}

/// Why a provider is unavailable now.
#[derive(Clone, Debug, PartialEq)]
pub struct Unavailable {
    /// The outcome that made it so.
    pub cause: Outcome,
    /// The provider's message then.
    pub message: String,
    /// Time left.
    pub remaining: Duration,
    /// Only this model is cooled down (the provider serves others).
    pub model_only: bool,
}

/// Settings a store applies on reload ([`StateStore::reconfigure`]).
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Rate limits of each model's window, and the margin.
    pub limits: LimitSettings,
    /// The provider's budgets.
    pub budgets: Vec<Budget>,
    /// Breaker settings (the long cool-down is the router's cool-down).
    pub breaker: BreakerConfig,
}

/// What a store says about itself on status pages ([`StateStore::state`]).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct StoreState {
    /// The store's kind: `"in-process"` or `"redis"`.
    pub kind: &'static str,
    /// The provider account whose limits and budgets the store shares (a shared store).
    pub account: Option<String>,
    /// Why the store serves from local state now (a shared store that cannot reach its
    /// server), `None` when it is healthy.
    pub degraded: Option<String>,
    /// Router instances known to share the account (a shared store), from their heartbeats.
    pub instances: Option<u32>,
}

impl StoreState {
    /// The in-process store's state.
    pub fn in_process() -> Self {
        Self {
            kind: "in-process",
            ..Self::default()
        }
    }
}

/// The state of one provider that decides admission (see the module docs for the contract).
#[async_trait]
pub trait StateStore: Send + Sync + fmt::Debug {
    /// The store's kind and condition, for status pages.
    fn state(&self) -> StoreState {
        StoreState::in_process()
    }
    /// Rate-limit headroom of `model`'s window now (ranking read).
    fn headroom(&self, model: &str) -> Headroom;
    /// Every model window in use and its headroom, by model name (status read).
    fn windows(&self) -> Vec<(String, Headroom)>;
    /// Free share of the tightest budget, `None` without budgets (ranking read).
    fn budget_left(&self) -> Option<f64>;
    /// Why the provider cannot take a request for `model` at `now`, if it cannot (ranking
    /// read): a denial or a cool-down of this model.
    fn unavailable(&self, model: &str, now: Duration) -> Option<Unavailable>;
    /// The provider's circuit breaker.
    fn breaker(&self) -> CircuitBreaker;
    /// The provider's spend ledger.
    fn spend(&self) -> LedgerSnapshot;
    /// Everything the provider's ledger committed since it was created, USD (for gauges).
    fn spent_usd(&self) -> f64;
    /// Whether the rate limits would admit `demand` now, without admitting it (a read:
    /// used to explain, after a request was served, why a provider without room was not
    /// tried).
    fn rate_limit_check(&self, demand: Demand<'_>) -> Result<(), Denied>;
    /// Applies new settings (hot reload), keeping the state; on error nothing changes.
    fn reconfigure(&self, config: &StoreConfig) -> Result<(), ConfigError>;

    /// Admits `demand` (in its model's window) and `cost` estimated cost against every
    /// rate-limit dimension and every budget, atomically.
    async fn admit(
        &self,
        demand: Demand<'_>,
        cost: Result<Cost, PriceUnknown>,
    ) -> Result<Admission, Refusal>;
    /// [`admit`](StateStore::admit) for a store that decides without waiting on anything
    /// (the in-process store): the answer now, with no future to allocate and poll, which
    /// the router asks first on every attempt. `None` (the default): ask
    /// [`admit`](StateStore::admit). A store that answers here answers exactly as `admit`
    /// would.
    fn admit_now(
        &self,
        _demand: Demand<'_>,
        _cost: &Result<Cost, PriceUnknown>,
    ) -> Option<Result<Admission, Refusal>> {
        None
    }
    /// [`settle`](StateStore::settle) without waiting, as [`admit_now`](StateStore::admit_now)
    /// is for `admit`: `Ok` with settle's answer, or `Err` handing the admission back to be
    /// settled through [`settle`](StateStore::settle) (the default).
    fn settle_now(
        &self,
        admission: Admission,
        _settlement: Settlement<'_>,
    ) -> Result<Result<(), StoreError>, Admission> {
        Err(admission)
    }
    /// Applies a sent request's outcome to its admission.
    async fn settle(
        &self,
        admission: Admission,
        settlement: Settlement<'_>,
    ) -> Result<(), StoreError>;
    /// Ends an admission whose request was never sent: everything is given back.
    fn release(&self, admission: Admission);
    /// Ends an admission whose request was sent but whose outcome is unknown: the room stays
    /// used, the budget reservation is held until its period ends.
    fn hold(&self, admission: Admission);
    /// Makes the provider unavailable to every request for `for_` (a denial), with the reason
    /// and the provider's message.
    async fn deny(
        &self,
        reason: DenyReason,
        message: &str,
        for_: Duration,
    ) -> Result<(), StoreError>;
    /// Cools the provider down for `model` only, until `until` (router clock).
    async fn cool_model(
        &self,
        model: &str,
        cause: Outcome,
        message: &str,
        until: Duration,
    ) -> Result<(), StoreError>;
    /// Applies rate-limit headers from an answer outside a settlement (a cheap probe about
    /// `model`) to `model`'s window.
    async fn observe(&self, model: &str, headers: &RateLimitHeaders) -> Result<(), StoreError>;
}
