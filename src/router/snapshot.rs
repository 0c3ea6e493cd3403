//! The router's configuration and provider set as one immutable snapshot behind an `ArcSwap`.
//!
//! A request loads the snapshot once and uses it to the end, so a reload never changes the
//! rules under a request in flight; per-provider state (cool-downs, and later limiters, health,
//! spend) lives in `Arc`s that a new snapshot carries over for providers that stay.

use std::sync::Arc;
use std::time::Duration;

use super::state::ProviderState;
use crate::budget::BudgetLedger;
use crate::catalog::Catalog;
use crate::cost::CostEstimator;
use crate::limiter::RateLimiter;
use crate::provider::Provider;

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
    pub default_model: Option<String>,
}

/// One provider and its state.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub provider: Arc<dyn Provider>,
    pub state: Arc<ProviderState>,
    pub limiter: RateLimiter,
    pub budget: BudgetLedger,
}

impl Slot {
    pub fn new(provider: Arc<dyn Provider>, limiter: RateLimiter, budget: BudgetLedger) -> Self {
        Self {
            provider,
            state: Arc::new(ProviderState::default()),
            limiter,
            budget,
        }
    }

    pub fn name(&self) -> &str {
        self.provider.name()
    }
}

/// Everything a request needs, swapped whole.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub settings: Settings,
    pub catalog: Arc<Catalog>,
    pub providers: Vec<Slot>,
    /// The router-wide spend ledger.
    pub budget: BudgetLedger,
    pub costs: CostEstimator,
}
