//! The router's configuration and provider set as one immutable snapshot behind an `ArcSwap`.
//!
//! A request loads the snapshot once and uses it to the end, so a reload never changes the
//! rules under a request in flight; per-provider state lives in the slots' shared parts,
//! which a new snapshot carries over for providers that stay.

use std::sync::Arc;
use std::time::Duration;

use super::policy::{PolicySettings, TimeoutPolicy};
use super::slot::Slot;
use crate::catalog::Catalog;
use crate::quota::budget::BudgetLedger;
use crate::quota::cost::CostEstimator;
use crate::score::Scorer;
use crate::strategy::Strategy;

/// Request-level settings.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub attempt_timeout: Duration,
    pub deadline: Duration,
    pub max_attempts: u32,
    pub content_policy_failover: bool,
    pub timeout_after_send: TimeoutPolicy,
    /// How long a denial (in the breaker) and a model cool-down last.
    pub cooldown: Duration,
    pub retry_backoff: Duration,
    pub rate_limit_wait: Duration,
    pub max_wait: Option<Duration>,
    pub strategy: Strategy,
    pub default_model: Option<String>,
    pub cheap_probe: bool,
    /// Run the capability check once at start (`check.rs`).
    pub check_on_start: bool,
    /// Time the capability check may take.
    pub check_timeout: Duration,
    /// Preview mode (`preview.rs`).
    pub preview: super::preview::PreviewConfig,
    /// Models routed in order when no provider can serve a request's model (`fallback.rs`),
    /// unless the request names its own.
    pub fallback_models: Vec<String>,
}

impl Settings {
    /// The settings the policy table depends on.
    pub fn policy(&self) -> PolicySettings {
        PolicySettings {
            content_policy_failover: self.content_policy_failover,
            timeout_after_send: self.timeout_after_send,
        }
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
