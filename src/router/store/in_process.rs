//! The default state store: the crate's limiters (one per model), budget ledgers and
//! breaker, in this process. It never fails and never waits, so the router puts no timer
//! around its calls.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};

use super::{
    Admission, BudgetSettlement, Demand, LimitSettings, Refusal, Settlement, StateStore,
    StoreConfig, StoreError, Unavailable, MAX_MODEL_WINDOWS,
};
use crate::breaker::{BreakerState, CircuitBreaker, DenyReason, OpenReason};
use crate::clock::SharedClock;
use crate::config_error::ConfigError;
use crate::error::Outcome;
use crate::quota::budget::{reserve_cost, Budget, BudgetLedger, LedgerSnapshot};
use crate::quota::cost::{Cost, PriceUnknown};
use crate::quota::headers::RateLimitHeaders;
use crate::quota::limiter::{Denied, Headroom, RateLimiter};

#[derive(Debug)]
struct ModelCooldown {
    until: Duration,
    cause: Outcome,
    message: String,
}

/// A map keyed by model name, looked up several times per request (ranking, admission,
/// gauges). Hashed with foldhash (randomly seeded per process) rather than std's SipHash,
/// which costs several times more on a short key; the maps hold a bounded number of model
/// names (see `MAX_MODEL_WINDOWS`).
type ModelMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// The model windows of an in-process store and the settings new ones are made with.
#[derive(Debug)]
struct Windows {
    settings: LimitSettings,
    by_model: ModelMap<RateLimiter>,
}

/// The default store: the crate's limiters (one per model), budget ledgers and breaker, in
/// this process.
#[derive(Debug)]
pub struct InProcessStore {
    windows: RwLock<Windows>,
    clock: SharedClock,
    budget: BudgetLedger,
    router_budget: BudgetLedger,
    breaker: RwLock<CircuitBreaker>,
    models: Mutex<ModelMap<ModelCooldown>>,
}

impl InProcessStore {
    /// A store over these components: model windows made from `limits` on `clock` as
    /// models are asked for; `router_budget` is the router-wide ledger every provider's
    /// requests also reserve on. The settings are checked (for the catalog's default model)
    /// before anything is made; errors name the field.
    pub fn new(
        limits: LimitSettings,
        clock: SharedClock,
        budget: BudgetLedger,
        router_budget: BudgetLedger,
        breaker: CircuitBreaker,
    ) -> Result<Self, ConfigError> {
        limits.limiter_config(limits.catalog.default_model())?;
        Ok(Self {
            windows: RwLock::new(Windows {
                settings: limits,
                by_model: ModelMap::default(),
            }),
            clock,
            budget,
            router_budget,
            breaker: RwLock::new(breaker),
            models: Mutex::new(ModelMap::default()),
        })
    }

    /// The limiter of `model`'s window, if one is in use.
    pub fn limiter(&self, model: &str) -> Option<RateLimiter> {
        self.windows.read().by_model.get(model).cloned()
    }

    /// The window of `model`, made on first use (see the module docs for the bound).
    fn window(&self, model: &str) -> Result<RateLimiter, StoreError> {
        if let Some(l) = self.windows.read().by_model.get(model) {
            return Ok(l.clone());
        }
        let mut w = self.windows.write();
        if let Some(l) = w.by_model.get(model) {
            return Ok(l.clone());
        }
        if w.by_model.len() >= MAX_MODEL_WINDOWS {
            w.by_model.retain(|_, l| !l.is_idle());
        }
        if w.by_model.len() >= MAX_MODEL_WINDOWS {
            return Err(StoreError::new(format!(
                "{MAX_MODEL_WINDOWS} model windows are in use; no window for model {model:?}"
            )));
        }
        let config = w
            .settings
            .limiter_config(model)
            .map_err(|e| StoreError::new(format!("limits of model {model:?}: {e}")))?;
        let limiter = RateLimiter::with_config(config, self.clock.clone())
            .map_err(|e| StoreError::new(format!("limits of model {model:?}: {e}")))?;
        w.by_model.insert(model.to_string(), limiter.clone());
        Ok(limiter)
    }

    /// [`StateStore::admit`]: nothing here waits.
    fn admit_sync(
        &self,
        demand: Demand<'_>,
        cost: Result<Cost, PriceUnknown>,
    ) -> Result<Admission, Refusal> {
        let permit = self
            .window(demand.model)
            .map_err(Refusal::Store)?
            .try_acquire_images(demand.images, demand.tokens)
            .map_err(Refusal::RateLimit)?;
        match reserve_cost(&[&self.budget, &self.router_budget], cost) {
            Ok(reservation) => Ok(Admission {
                tokens: demand.tokens,
                id: 0,
                local: Some((permit, reservation)),
            }),
            Err(e) => {
                permit.cancel();
                Err(Refusal::Budget(e))
            }
        }
    }

    /// [`StateStore::settle`]: nothing here waits.
    fn settle_sync(
        &self,
        admission: Admission,
        settlement: Settlement<'_>,
    ) -> Result<(), StoreError> {
        let Some((permit, reservation)) = admission.local else {
            // Not this store's admission: the headers and the 429 still describe the model.
            if let Ok(limiter) = self.window(settlement.model) {
                if let Some(h) = settlement.headers {
                    limiter.observe_headers(h);
                }
                if let Some(wait) = settlement.rate_limited {
                    limiter.on_rate_limited(Some(wait));
                }
            }
            return Ok(());
        };
        // The window the request was admitted in (its model's).
        let limiter = permit.limiter();
        let id = permit.id();
        // The answer's figures describe the provider's count up to this request (see the
        // limiter's docs): a refunded request is removed first, since the provider did not
        // count it either.
        match (settlement.refund_rate_limit, settlement.usage) {
            (true, _) => permit.cancel(),
            (false, Some(u)) => permit.reconcile_usage(u),
            // Dropping a permit keeps the estimate charged.
            (false, None) => drop(permit),
        }
        if let Some(h) = settlement.headers {
            limiter.observe_headers_after(id, h);
        }
        if let Some(wait) = settlement.rate_limited {
            limiter.on_rate_limited(Some(wait));
        }
        match settlement.budget {
            BudgetSettlement::Commit(usd) => reservation.commit(usd),
            BudgetSettlement::Release => reservation.release(),
            BudgetSettlement::Hold => reservation.hold(),
        }
        Ok(())
    }

    /// The headroom of a window that cannot be made (every window busy): none.
    fn no_window_headroom(&self, model: &str) -> Headroom {
        let settings = &self.windows.read().settings;
        let limits = settings.limits_for(model).unwrap_or_default();
        Headroom {
            requests: Some(0),
            tokens: Some(0),
            images: Some(0),
            fraction: 0.0,
            blocked_until: None,
            retry_in: None,
            effective_rpm: limits.rpm.map(u64::from),
            effective_tpm: limits.tpm,
            effective_ipm: limits.ipm.map(u64::from),
            margin: settings.margin(),
            backoff_factor: 1.0,
            no_access: limits.no_access.is_some(),
        }
    }
}

#[async_trait]
impl StateStore for InProcessStore {
    fn headroom(&self, model: &str) -> Headroom {
        match self.window(model) {
            Ok(l) => l.headroom(),
            Err(_) => self.no_window_headroom(model),
        }
    }

    fn windows(&self) -> Vec<(String, Headroom)> {
        let w = self.windows.read();
        let mut v: Vec<(String, Headroom)> = w
            .by_model
            .iter()
            .map(|(m, l)| (m.clone(), l.headroom()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
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
                    cause: crate::router::policy::deny_outcome(reason),
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

    fn rate_limit_check(&self, demand: Demand<'_>) -> Result<(), Denied> {
        match self.window(demand.model) {
            Ok(l) => l.check(demand.images, demand.tokens),
            // No window can be made (every one busy): nothing to explain with.
            Err(_) => Ok(()),
        }
    }

    fn reconfigure(&self, config: &StoreConfig) -> Result<(), ConfigError> {
        // The budgets are checked before anything changes, and the limiter checks its
        // settings before applying them, so an error changes nothing.
        for (i, b) in config.budgets.iter().enumerate() {
            Budget::new(b.limit_usd, b.period).map_err(|e| e.scoped(&format!("budgets[{i}]")))?;
        }
        let mut windows = self.windows.write();
        // Every window's new settings first, then apply them all: an error changes nothing.
        let mut new = Vec::with_capacity(windows.by_model.len());
        config
            .limits
            .limiter_config(config.limits.catalog.default_model())?;
        for (model, limiter) in &windows.by_model {
            new.push((limiter.clone(), config.limits.limiter_config(model)?));
        }
        self.budget.set_budgets(config.budgets.clone())?;
        for (limiter, c) in new {
            limiter.set_limits_margin_shared(c.limits, c.margin, c.shared)?;
        }
        windows.settings = config.limits.clone();
        drop(windows);
        let mut breaker = self.breaker.write();
        if breaker.config() != &config.breaker {
            *breaker = breaker.reconfigured(config.breaker.clone());
        }
        Ok(())
    }

    async fn admit(
        &self,
        demand: Demand<'_>,
        cost: Result<Cost, PriceUnknown>,
    ) -> Result<Admission, Refusal> {
        self.admit_sync(demand, cost)
    }

    fn admit_now(
        &self,
        demand: Demand<'_>,
        cost: &Result<Cost, PriceUnknown>,
    ) -> Option<Result<Admission, Refusal>> {
        Some(self.admit_sync(demand, cost.clone()))
    }

    async fn settle(
        &self,
        admission: Admission,
        settlement: Settlement<'_>,
    ) -> Result<(), StoreError> {
        self.settle_sync(admission, settlement)
    }

    fn settle_now(
        &self,
        admission: Admission,
        settlement: Settlement<'_>,
    ) -> Result<Result<(), StoreError>, Admission> {
        Ok(self.settle_sync(admission, settlement))
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

    async fn observe(&self, model: &str, headers: &RateLimitHeaders) -> Result<(), StoreError> {
        self.window(model)?.observe_headers(headers);
        Ok(())
    }
}
