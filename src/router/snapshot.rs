//! The router's configuration and provider set as one immutable snapshot behind an `ArcSwap`.
//!
//! A request loads the snapshot once and uses it to the end, so a reload never changes the
//! rules under a request in flight; per-provider state (cool-downs, and later limiters, health,
//! spend) lives in `Arc`s that a new snapshot carries over for providers that stay.

use std::sync::Arc;
use std::time::Duration;

use super::builder::ProviderOptions;
use super::state::ProviderState;
use crate::breaker::CircuitBreaker;
use crate::budget::BudgetLedger;
use crate::catalog::Catalog;
use crate::cost::CostEstimator;
use crate::health::Health;
use crate::limiter::RateLimiter;
use crate::provider::Provider;
use crate::score::Scorer;
use crate::strategy::Strategy;

/// Request-level settings.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub attempt_timeout: Duration,
    pub deadline: Duration,
    pub max_attempts: u32,
    pub content_policy_failover: bool,
    pub cooldown: Duration,
    pub retry_backoff: Duration,
    pub rate_limit_wait: Duration,
    pub max_wait: Option<Duration>,
    pub strategy: Strategy,
    pub default_model: Option<String>,
    pub cheap_probe: bool,
}

/// One provider and its state.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub provider: Arc<dyn Provider>,
    pub state: Arc<ProviderState>,
    pub limiter: RateLimiter,
    pub budget: BudgetLedger,
    pub health: Arc<Health>,
    pub breaker: CircuitBreaker,
    pub options: ProviderOptions,
}

impl Slot {
    pub fn new(
        provider: Arc<dyn Provider>,
        options: ProviderOptions,
        limiter: RateLimiter,
        budget: BudgetLedger,
        health: Health,
        breaker: CircuitBreaker,
    ) -> Self {
        Self {
            provider,
            state: Arc::new(ProviderState::default()),
            limiter,
            budget,
            health: Arc::new(health),
            breaker,
            options,
        }
    }

    /// This provider's state with a new provider object and options (hot reload).
    pub fn carried_over(&self, provider: Arc<dyn Provider>, options: ProviderOptions) -> Self {
        Self {
            provider,
            options,
            ..self.clone()
        }
    }

    /// Fraction of the tightest budget still free (`None` without budgets).
    pub fn budget_left(&self) -> Option<f64> {
        self.budget.remaining_fraction()
    }

    pub fn name(&self) -> &str {
        self.provider.name()
    }
}

/// Everything a request needs, swapped whole.
pub(crate) struct Snapshot {
    pub settings: Settings,
    pub catalog: Arc<Catalog>,
    pub providers: Vec<Slot>,
    /// The router-wide spend ledger.
    pub budget: BudgetLedger,
    pub costs: CostEstimator,
    pub scorer: Arc<dyn Scorer>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("settings", &self.settings)
            .field("providers", &self.providers)
            .finish_non_exhaustive()
    }
}
