//! The provider slot: everything the router keeps per provider — the provider and its
//! options, the state store (rate-limit room, budgets, breaker, per-model cool-downs),
//! health, and the last error — and the two operations the request loop needs:
//! [`Slot::admit`] before a call and [`Slot::settle`] after it.
//!
//! Why a guard: a request can end anywhere — a caller drops its future, a provider panics —
//! and a reservation taken before the call must neither leak nor vanish. [`Admitted`] holds
//! the admission; dropped before the request was sent it gives everything back, dropped after
//! it was sent it keeps the rate-limit room used and holds the budget reservation until the
//! budget's period ends (the provider may have generated and billed the image).
//!
//! A slot is cheap to clone (shared state); a reload builds a new slot for a provider that
//! stays with [`Slot::carry_over`], which applies every new setting and keeps the state.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use super::policy::{BreakerRule, Decision, Rule};
use super::store::{
    Admission, BudgetSettlement, Demand, Refusal, Settlement, StateStore, StoreConfig, StoreError,
};
use crate::breaker::{BreakerEffect, BreakerPass, BreakerState};
use crate::config_error::ConfigError;
use crate::error::ProviderError;
use crate::health::{Health, HealthConfig, HealthEffect, InFlight};
use crate::provider::Provider;
use crate::quota::budget::Budget;
use crate::quota::cost::{Cost, PriceUnknown};
use crate::request::ClassPolicy;
use crate::response::ProviderResponse;

/// Per-provider routing settings: usage tier, explicit limits, safety margin and weight.
///
/// `tier` takes each model's limits from the catalog (the model's published figures for a
/// usage tier in `providers/models.toml`, or a preset's own figures from
/// `providers/openai.toml`); explicit `rpm` / `tpm` / `ipm`
/// override them and apply to each model the provider serves (one window per model; Azure
/// deployments give their own, since their quota is per deployment). By default the router
/// uses the whole limit; a key `shared` with other clients keeps a margin while the provider
/// sends no `x-ratelimit-remaining-*` figures (see [`crate::quota::limiter`]).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ProviderOptions {
    /// Usage tier name (`"tier-2"`).
    pub tier: Option<String>,
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
    /// Images per minute (a request weighs its `n`).
    pub ipm: Option<u32>,
    /// Fraction of the limits to use (default 1; 0.9 for a shared key without headers).
    pub safety_margin: Option<f64>,
    /// The key is shared with other clients (default `false`).
    pub shared: bool,
    /// Relative weight for scoring and weighted routing (default 1.0).
    pub weight: Option<f64>,
    /// Spend budgets of this provider (each request reserves its estimated cost first).
    pub budgets: Vec<Budget>,
    /// Which request classes this provider is reserved for or preferred by.
    pub classes: ClassPolicy,
    /// The provider account its limits and budgets belong to (default: the provider's
    /// name). Providers naming the same account share one set of windows and budgets in a
    /// shared store (the same OpenAI organization behind two providers).
    pub account: Option<String>,
}

impl ProviderOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the tier.
    #[must_use]
    pub fn tier(mut self, tier: impl Into<String>) -> Self {
        self.tier = Some(tier.into());
        self
    }
    /// Sets requests per minute.
    #[must_use]
    pub fn rpm(mut self, rpm: u32) -> Self {
        self.rpm = Some(rpm);
        self
    }
    /// Sets tokens per minute.
    #[must_use]
    pub fn tpm(mut self, tpm: u64) -> Self {
        self.tpm = Some(tpm);
        self
    }
    /// Sets images per minute.
    #[must_use]
    pub fn ipm(mut self, ipm: u32) -> Self {
        self.ipm = Some(ipm);
        self
    }
    /// Declares the key shared with other clients: when the provider sends no
    /// `x-ratelimit-remaining-*` figures, the safety margin (default 0.9) applies.
    #[must_use]
    pub fn shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }
    /// Sets the safety margin (0 < margin ≤ 1).
    #[must_use]
    pub fn safety_margin(mut self, margin: f64) -> Self {
        self.safety_margin = Some(margin);
        self
    }
    /// Sets the weight (> 0).
    #[must_use]
    pub fn weight(mut self, weight: f64) -> Self {
        self.weight = Some(weight);
        self
    }
    /// Adds a spend budget for this provider.
    #[must_use]
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budgets.push(budget);
        self
    }
    /// Names the provider account (see [`ProviderOptions::account`]).
    #[must_use]
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }
    /// Sets the request-class policy (reserved for / preferred by).
    #[must_use]
    pub fn classes(mut self, policy: ClassPolicy) -> Self {
        self.classes = policy;
        self
    }
}

/// Which key set a slot's provider belongs to, and the key's label (see
/// [`RouterBuilder::provider_keys`](crate::RouterBuilder::provider_keys)). Each key is a slot
/// of its own — its own store (limits, budgets, breaker), health and provider object (the
/// key signs the request) — so the request path stays the same for one key or several;
/// what a key set adds is the ordering among its members ([`super::plan`]) and the grouped
/// status view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyOf {
    /// The provider's name (the group).
    pub group: Arc<str>,
    /// The key's non-secret label.
    pub label: Arc<str>,
}

/// One provider and everything the router keeps about it.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub provider: Arc<dyn Provider>,
    /// The key set this slot is a member of (`None`: a provider with one key).
    pub key: Option<KeyOf>,
    pub options: ProviderOptions,
    pub store: Arc<dyn StateStore>,
    pub health: Arc<Health>,
    /// The latest failure and when (for status pages); per instance.
    last_error: Arc<Mutex<Option<(ProviderError, SystemTime)>>>,
    /// This provider's metric keys, built once (see [`crate::metrics::ProviderKeys`]).
    pub metric_keys: Arc<crate::metrics::ProviderKeys>,
}

/// What is left of a [`Slot::settle`] to await.
pub(crate) type SettleRest<'s> =
    std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 's>>;

/// What [`Slot::settle`] needs besides the call's result.
pub(crate) struct SettleArgs<'a> {
    /// The policy row of the error (`None` on success).
    pub rule: Option<Rule>,
    /// The model, for a per-model cool-down and its rate-limit window.
    pub model: &'a str,
    /// The actual cost of a success, USD.
    pub cost_usd: Option<f64>,
    /// How long a denial or a model cool-down lasts.
    pub cooldown: Duration,
    /// For a rate-limited answer: how long the provider is blocked.
    pub rate_limit_wait: Duration,
    /// The router clock, read only when a model cool-down is set (an error's path).
    pub clock: &'a dyn crate::clock::Clock,
    /// The best latency measured among the router's providers (read after this call's
    /// measurement is recorded: the context the measurement is judged in later).
    pub best_latency: &'a (dyn Fn() -> Option<Duration> + Sync),
    /// Time within the call that was not the provider's (a stream's caller holding an
    /// event): taken off the latency health records.
    pub excluded: Duration,
}

impl Slot {
    pub fn new(
        provider: Arc<dyn Provider>,
        options: ProviderOptions,
        store: Arc<dyn StateStore>,
        health: Health,
    ) -> Self {
        let metric_keys = Arc::new(crate::metrics::ProviderKeys::new(provider.name()));
        Self {
            provider,
            key: None,
            options,
            store,
            health: Arc::new(health),
            last_error: Arc::new(Mutex::new(None)),
            metric_keys,
        }
    }

    pub fn name(&self) -> &str {
        self.provider.name()
    }

    /// This slot as a member of a key set (or as a provider of its own with `None`).
    pub fn with_key(mut self, key: Option<KeyOf>) -> Self {
        self.key = key;
        self
    }

    /// Fraction of the tightest budget still free (`None` without budgets).
    pub fn budget_left(&self) -> Option<f64> {
        self.store.budget_left()
    }

    /// The provider's latest failure and when it happened.
    pub fn last_error(&self) -> Option<(ProviderError, SystemTime)> {
        self.last_error.lock().clone()
    }

    pub fn set_last_error(&self, err: &ProviderError) {
        *self.last_error.lock() = Some((err.clone(), SystemTime::now()));
    }

    /// This provider with a new provider object, options and settings (hot reload): every
    /// setting applies, the state (limiter log, spend, breaker, health, cool-downs, last
    /// error) stays. On error nothing changes.
    pub fn carry_over(
        &self,
        provider: Arc<dyn Provider>,
        options: ProviderOptions,
        store: &StoreConfig,
        health: &HealthConfig,
    ) -> Result<Self, ConfigError> {
        self.store.reconfigure(store)?;
        let metric_keys = Arc::new(crate::metrics::ProviderKeys::new(provider.name()));
        Ok(Self {
            metric_keys,
            key: self.key.clone(),
            provider,
            options,
            store: Arc::clone(&self.store),
            health: Arc::new(self.health.reconfigured(health.clone())),
            last_error: Arc::clone(&self.last_error),
        })
    }

    /// Admits a request: rate-limit room in its model's window and budget, atomically on
    /// the store.
    pub async fn admit(
        &self,
        demand: Demand<'_>,
        cost: Result<Cost, PriceUnknown>,
    ) -> Result<Admitted<'_>, Refusal> {
        let admission = match self.store.admit_now(demand, &cost) {
            Some(answer) => answer?,
            None => self.store.admit(demand, cost).await?,
        };
        Ok(Admitted {
            store: self.store.as_ref(),
            admission: Some(admission),
            sent: false,
        })
    }

    /// Applies one call's outcome to every component: the store (rate-limit room, budget,
    /// blocks, denial, model cool-down), the breaker, health and the last error, as the
    /// policy row says.
    ///
    /// What can be applied at once is applied before this returns; the rest, if any, is
    /// returned, boxed, for the caller to await at once: a store that settles only
    /// asynchronously (Redis), and every failed call (denials and cool-downs go through the
    /// store). A successful call on the in-process store leaves nothing to await: the attempt
    /// loop's future then holds no settlement future (960 bytes as an `async fn`, moved whole
    /// with it; issue 16).
    #[must_use = "what is left of the settlement must be awaited"]
    pub fn settle<'s>(
        &'s self,
        mut admitted: Admitted<'_>,
        pass: BreakerPass,
        in_flight: InFlight,
        result: &'s Result<ProviderResponse, ProviderError>,
        args: SettleArgs<'s>,
    ) -> Option<SettleRest<'s>> {
        let admission = admitted.take();
        match (result, args.rule) {
            (Ok(resp), _) => {
                let effect = HealthEffect {
                    availability: Some(true),
                    latency: true,
                };
                in_flight.finish_excluding(effect, args.excluded);
                self.measured_against(&args);
                self.record_breaker(pass, BreakerEffect::Success);
                let settlement = Settlement {
                    refund_rate_limit: false,
                    usage: resp.usage.as_ref(),
                    budget: BudgetSettlement::Commit(args.cost_usd.unwrap_or(0.0)),
                    model: args.model,
                    headers: Some(&resp.rate_limits),
                    rate_limited: None,
                };
                let admission = admission?;
                match self.store.settle_now(admission, settlement) {
                    Ok(stored) => {
                        self.warn_unstored(stored);
                        None
                    }
                    Err(admission) => Some(Box::pin(async move {
                        let stored = self.store.settle(admission, settlement).await;
                        self.warn_unstored(stored);
                    })),
                }
            }
            (Err(err), rule) => {
                let rule = rule.unwrap_or_else(|| {
                    super::policy::rule(&err.kind, super::policy::PolicySettings::default())
                });
                let effect = HealthEffect {
                    availability: rule.health,
                    latency: err.is_timeout(),
                };
                in_flight.finish_excluding(effect, args.excluded);
                if err.is_timeout() {
                    self.measured_against(&args);
                }
                Some(Box::pin(async move {
                    self.apply_breaker_rule(pass, rule.breaker, err, args.cooldown)
                        .await;
                    let settlement = Settlement {
                        refund_rate_limit: rule.refund_rate_limit,
                        usage: None,
                        budget: if rule.keep_budget {
                            BudgetSettlement::Hold
                        } else {
                            BudgetSettlement::Release
                        },
                        model: args.model,
                        headers: if rule.read_headers {
                            err.rate_limits.as_deref()
                        } else {
                            None
                        },
                        rate_limited: (rule.decision == Decision::FailoverRateLimited)
                            .then_some(args.rate_limit_wait),
                    };
                    self.settle_store(admission, settlement).await;
                    if rule.cool_model {
                        let until = args.clock.now().saturating_add(args.cooldown);
                        let cooled = self
                            .store
                            .cool_model(args.model, err.outcome(), &err.message, until)
                            .await;
                        if let Err(e) = cooled {
                            tracing::warn!(provider = self.name(), error = %e, "model cool-down not stored");
                        }
                    }
                    self.set_last_error(err);
                }))
            }
        }
    }

    async fn settle_store(&self, admission: Option<Admission>, settlement: Settlement<'_>) {
        let Some(admission) = admission else { return };
        let stored = match self.store.settle_now(admission, settlement) {
            Ok(stored) => stored,
            Err(admission) => self.store.settle(admission, settlement).await,
        };
        self.warn_unstored(stored);
    }

    fn warn_unstored(&self, stored: Result<(), StoreError>) {
        if let Err(e) = stored {
            tracing::warn!(provider = self.name(), error = %e, "settlement not stored");
        }
    }

    /// Records the context of a latency measurement: the best latency known right now.
    fn measured_against(&self, args: &SettleArgs<'_>) {
        if let Some(best) = (args.best_latency)() {
            self.health.set_measured_against(best);
        }
    }

    /// Reports an error to the breaker as its policy row says: a denial makes the provider
    /// unavailable to every request (through the store), anything else is recorded.
    pub async fn apply_breaker_rule(
        &self,
        pass: BreakerPass,
        rule: BreakerRule,
        err: &ProviderError,
        cooldown: Duration,
    ) {
        match (rule, super::policy::deny_reason(&err.kind)) {
            (BreakerRule::Deny, Some(reason)) => {
                if let Err(e) = self.store.deny(reason, &err.message, cooldown).await {
                    tracing::warn!(provider = self.name(), error = %e, "denial not stored");
                    self.record_breaker(pass, BreakerEffect::Failure);
                }
                // Otherwise the pass is dropped unreported: the denial opened the breaker
                // anew, so a probe pass from before is stale and records nothing.
            }
            (BreakerRule::Deny, None) => self.record_breaker(pass, BreakerEffect::Failure),
            (BreakerRule::Record(effect), _) => self.record_breaker(pass, effect),
        }
    }

    /// Records `effect`. A successful probe that starts the recovery also clears the outage's
    /// failures from the health window (see [`Health::forget_outcomes`]).
    pub fn record_breaker(&self, pass: BreakerPass, effect: BreakerEffect) {
        let transition = pass.record(effect);
        if transition.is_some_and(|t| t.to == BreakerState::Recovering) {
            self.health.forget_outcomes();
        }
    }
}

/// A request's admission on a slot's store, until it is settled (see the module docs).
pub(crate) struct Admitted<'a> {
    store: &'a dyn StateStore,
    admission: Option<Admission>,
    sent: bool,
}

impl Admitted<'_> {
    /// From now on the provider may have received (and billed) the request.
    pub fn mark_sent(&mut self) {
        self.sent = true;
    }

    fn take(&mut self) -> Option<Admission> {
        self.admission.take()
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if let Some(admission) = self.admission.take() {
            if self.sent {
                self.store.hold(admission);
            } else {
                self.store.release(admission);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::breaker::{BreakerConfig, CircuitBreaker};
    use crate::clock::{ManualClock, SharedClock};
    use crate::quota::budget::{BudgetLedger, BudgetPeriod, WallClock};
    use crate::quota::cost::{Cost, CostBasis};
    use crate::router::store::{InProcessStore, LimitSettings};

    fn store() -> (InProcessStore, BudgetLedger) {
        let clock: SharedClock = Arc::new(ManualClock::new());
        let wall = WallClock::new(SystemTime::now(), clock.clone());
        let day = Budget::new(1.0, BudgetPeriod::Day).unwrap();
        let ledger = BudgetLedger::new("p", vec![day], wall.clone()).unwrap();
        let router = BudgetLedger::new("router", vec![], wall).unwrap();
        // 10 RPM at a 0.9 margin: 9 requests a minute (the numbers below count on it).
        let mut limits = LimitSettings::new(None, Some(10), None);
        limits.margin = Some(0.9);
        let breaker = CircuitBreaker::new(BreakerConfig::default(), clock.clone());
        (
            InProcessStore::new(limits, clock, ledger.clone(), router, breaker).unwrap(),
            ledger,
        )
    }

    const MODEL: &str = "gpt-image-1";

    fn cost(usd: f64) -> Result<Cost, PriceUnknown> {
        Ok(Cost {
            usd,
            basis: CostBasis::PerImage,
        })
    }

    async fn admitted(store: &InProcessStore) -> Admitted<'_> {
        let demand = Demand::new(MODEL, 1, 100);
        let admission = store.admit(demand, cost(0.25)).await.unwrap();
        Admitted {
            store,
            admission: Some(admission),
            sent: false,
        }
    }

    #[tokio::test]
    async fn a_guard_dropped_before_sending_gives_everything_back() {
        let (store, ledger) = store();
        let guard = admitted(&store).await;
        assert_eq!(store.headroom(MODEL).requests, Some(8));
        assert!((ledger.snapshot().reserved_usd - 0.25).abs() < 1e-9);
        drop(guard);
        assert_eq!(store.headroom(MODEL).requests, Some(9));
        let snap = ledger.snapshot();
        assert_eq!(snap.reserved_usd, 0.0);
        assert_eq!(snap.budgets[0].held_usd, 0.0);
    }

    #[tokio::test]
    async fn a_guard_dropped_after_sending_keeps_the_room_and_holds_the_money() {
        let (store, ledger) = store();
        let mut guard = admitted(&store).await;
        guard.mark_sent();
        drop(guard);
        assert_eq!(store.headroom(MODEL).requests, Some(8));
        let snap = ledger.snapshot();
        assert_eq!(snap.reserved_usd, 0.0);
        assert!((snap.budgets[0].held_usd - 0.25).abs() < 1e-9);
        assert_eq!(snap.lifetime_spent_usd, 0.0);
    }
}
