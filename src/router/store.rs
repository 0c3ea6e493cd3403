//! The state store: where a provider slot keeps the state that decides admission — rate-limit
//! room, budgets, and the provider-wide and per-model unavailability — behind one trait, so a
//! store shared by several router instances (e.g. Redis) can replace the in-process one
//! without touching the request loop.
//!
//! # Contract
//!
//! * **Admission is one atomic step.** [`StateStore::admit`] checks the request against every
//!   rate-limit dimension of the provider (requests and tokens per minute, and any dimension a
//!   store adds) *and* reserves its estimated cost on the provider's and the router's budgets,
//!   all or nothing: a refusal leaves no partial reservation behind. A shared store does this in
//!   one server-side step (a Lua script or a transaction), or two instances could both see the
//!   last unit of room.
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
//! * **Ranking reads are synchronous and cheap** ([`headroom`](StateStore::headroom),
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
//! [`RateLimiter`], [`BudgetLedger`]s and [`CircuitBreaker`] and never fails. The trait uses
//! `async-trait`, which boxes each call's future: two small allocations per attempt (admit,
//! settle), small against the provider call.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};

use crate::breaker::{BreakerConfig, BreakerState, CircuitBreaker, DenyReason, OpenReason};
use crate::config_error::ConfigError;
use crate::error::Outcome;
use crate::quota::budget::LedgerSnapshot;
use crate::quota::budget::{reserve_cost, Budget, BudgetError, BudgetLedger, BudgetReservation};
use crate::quota::cost::{Cost, PriceUnknown};
use crate::quota::headers::RateLimitHeaders;
use crate::quota::limiter::{Denied, Headroom, Permit, RateLimiter};
use crate::quota::limits::Limits;
use crate::quota::usage::Usage;

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
    /// Rate limits.
    pub limits: Limits,
    /// Safety margin of the limits.
    pub margin: f64,
    /// The provider's budgets.
    pub budgets: Vec<Budget>,
    /// Breaker settings (the long cool-down is the router's cool-down).
    pub breaker: BreakerConfig,
}

/// The state of one provider that decides admission (see the module docs for the contract).
#[async_trait]
pub trait StateStore: Send + Sync + fmt::Debug {
    /// Rate-limit headroom now (ranking read).
    fn headroom(&self) -> Headroom;
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
    /// Whether the rate limits would admit `tokens` now, without admitting them (a read:
    /// used to explain, after a request was served, why a provider without room was not
    /// tried).
    fn rate_limit_check(&self, tokens: u64) -> Result<(), Denied>;
    /// Applies new settings (hot reload), keeping the state; on error nothing changes.
    fn reconfigure(&self, config: &StoreConfig) -> Result<(), ConfigError>;

    /// Admits a request of `tokens` estimated tokens and `cost` estimated cost against every
    /// rate-limit dimension and every budget, atomically.
    async fn admit(
        &self,
        tokens: u64,
        cost: Result<Cost, PriceUnknown>,
    ) -> Result<Admission, Refusal>;
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
    /// Applies rate-limit headers from an answer outside a settlement (a cheap probe).
    async fn observe(&self, headers: &RateLimitHeaders) -> Result<(), StoreError>;
}

#[derive(Debug)]
struct ModelCooldown {
    until: Duration,
    cause: Outcome,
    message: String,
}

/// The default store: the crate's limiter, budget ledgers and breaker, in this process.
#[derive(Debug)]
pub struct InProcessStore {
    limiter: RateLimiter,
    budget: BudgetLedger,
    router_budget: BudgetLedger,
    breaker: RwLock<CircuitBreaker>,
    models: Mutex<HashMap<String, ModelCooldown>>,
}

impl InProcessStore {
    /// A store over these components; `router_budget` is the router-wide ledger every
    /// provider's requests also reserve on.
    pub fn new(
        limiter: RateLimiter,
        budget: BudgetLedger,
        router_budget: BudgetLedger,
        breaker: CircuitBreaker,
    ) -> Self {
        Self {
            limiter,
            budget,
            router_budget,
            breaker: RwLock::new(breaker),
            models: Mutex::new(HashMap::new()),
        }
    }

    /// The rate limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }
}

#[async_trait]
impl StateStore for InProcessStore {
    fn headroom(&self) -> Headroom {
        self.limiter.headroom()
    }

    fn budget_left(&self) -> Option<f64> {
        self.budget.remaining_fraction()
    }

    fn unavailable(&self, model: &str, now: Duration) -> Option<Unavailable> {
        let breaker = self.breaker.read();
        if breaker.is_blocking() {
            let b = breaker.snapshot();
            if let (BreakerState::Open, Some(OpenReason::Denied(reason))) = (b.state, b.reason) {
                return Some(Unavailable {
                    cause: super::policy::deny_outcome(reason),
                    message: b.message.unwrap_or_default(),
                    remaining: b.retry_in.unwrap_or_default(),
                    model_only: false,
                });
            }
        }
        drop(breaker);
        let mut models = self.models.lock();
        match models.get(model) {
            Some(c) if c.until > now => Some(Unavailable {
                cause: c.cause,
                message: c.message.clone(),
                remaining: c.until.saturating_sub(now),
                model_only: true,
            }),
            Some(_) => {
                models.remove(model);
                None
            }
            None => None,
        }
    }

    fn breaker(&self) -> CircuitBreaker {
        self.breaker.read().clone()
    }

    fn spend(&self) -> LedgerSnapshot {
        self.budget.snapshot()
    }

    fn spent_usd(&self) -> f64 {
        self.budget.lifetime_spent_usd()
    }

    fn rate_limit_check(&self, tokens: u64) -> Result<(), Denied> {
        self.limiter.try_acquire(tokens).map(Permit::cancel)
    }

    fn reconfigure(&self, config: &StoreConfig) -> Result<(), ConfigError> {
        // The budgets are checked before anything changes, and the limiter checks its
        // settings before applying them, so an error changes nothing.
        for (i, b) in config.budgets.iter().enumerate() {
            Budget::new(b.limit_usd, b.period).map_err(|e| e.scoped(&format!("budgets[{i}]")))?;
        }
        self.limiter
            .set_limits_and_margin(config.limits.clone(), config.margin)?;
        self.budget.set_budgets(config.budgets.clone())?;
        let mut breaker = self.breaker.write();
        if breaker.config() != &config.breaker {
            *breaker = breaker.reconfigured(config.breaker.clone());
        }
        Ok(())
    }

    async fn admit(
        &self,
        tokens: u64,
        cost: Result<Cost, PriceUnknown>,
    ) -> Result<Admission, Refusal> {
        let permit = self
            .limiter
            .try_acquire(tokens)
            .map_err(Refusal::RateLimit)?;
        match reserve_cost(&[&self.budget, &self.router_budget], cost) {
            Ok(reservation) => Ok(Admission {
                tokens,
                id: 0,
                local: Some((permit, reservation)),
            }),
            Err(e) => {
                permit.cancel();
                Err(Refusal::Budget(e))
            }
        }
    }

    async fn settle(
        &self,
        admission: Admission,
        settlement: Settlement<'_>,
    ) -> Result<(), StoreError> {
        if let Some(h) = settlement.headers {
            self.limiter.observe_headers(h);
        }
        if let Some(wait) = settlement.rate_limited {
            self.limiter.on_rate_limited(Some(wait));
        }
        let Some((permit, reservation)) = admission.local else {
            return Ok(());
        };
        match (settlement.refund_rate_limit, settlement.usage) {
            (true, _) => permit.cancel(),
            (false, Some(u)) => permit.reconcile_usage(u),
            // Dropping a permit keeps the estimate charged.
            (false, None) => drop(permit),
        }
        match settlement.budget {
            BudgetSettlement::Commit(usd) => reservation.commit(usd),
            BudgetSettlement::Release => reservation.release(),
            BudgetSettlement::Hold => reservation.hold(),
        }
        Ok(())
    }

    fn release(&self, admission: Admission) {
        if let Some((permit, reservation)) = admission.local {
            permit.cancel();
            reservation.release();
        }
    }

    fn hold(&self, admission: Admission) {
        if let Some((permit, reservation)) = admission.local {
            drop(permit);
            reservation.hold();
        }
    }

    async fn deny(
        &self,
        reason: DenyReason,
        message: &str,
        _for: Duration,
    ) -> Result<(), StoreError> {
        // The breaker's long cool-down is the router's cool-down (set when it was built), so
        // `_for` is already its duration.
        self.breaker.read().open_for(reason, message);
        Ok(())
    }

    async fn cool_model(
        &self,
        model: &str,
        cause: Outcome,
        message: &str,
        until: Duration,
    ) -> Result<(), StoreError> {
        self.models.lock().insert(
            model.to_string(),
            ModelCooldown {
                until,
                cause,
                message: message.to_string(),
            },
        );
        Ok(())
    }

    async fn observe(&self, headers: &RateLimitHeaders) -> Result<(), StoreError> {
        self.limiter.observe_headers(headers);
        Ok(())
    }
}
