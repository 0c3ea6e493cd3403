//! [`RouterStatus`]: a serializable snapshot of what the router knows about each provider —
//! breaker state, health, score components, rate-limit headroom, spend, cool-downs and the last
//! error — for status pages, the `status` command and debugging a routing decision.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use super::slot::Slot;
use super::snapshot::Snapshot;
use crate::breaker::{BreakerSnapshot, BreakerState, OpenReason};
use crate::error::ProviderError;
use crate::explain::Explanation;
use crate::health::HealthSnapshot;
use crate::provider::ProviderKind;
use crate::quota::budget::LedgerSnapshot;
use crate::quota::limiter::Headroom;
use crate::score::ScoreBreakdown;
use crate::strategy::Strategy;

/// The router's state, provider by provider.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct RouterStatus {
    /// The ranking strategy.
    pub strategy: Strategy,
    /// The model used when a request names none.
    pub default_model: String,
    /// The router-wide spend ledger.
    pub spend: LedgerSnapshot,
    /// Each provider, in configured order.
    pub providers: Vec<ProviderStatus>,
}

/// One provider's state.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ProviderStatus {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: ProviderKind,
    /// Position in the configured order.
    pub priority: usize,
    /// Circuit breaker.
    pub breaker: BreakerSnapshot,
    /// Availability, latency, in-flight.
    pub health: HealthSnapshot,
    /// The score and each of its components now.
    pub score: ScoreBreakdown,
    /// Rate-limit headroom and effective limits of the window of the router's default model.
    pub headroom: Headroom,
    /// Every rate-limit window in use (one per model the provider was asked for), by model.
    pub windows: Vec<ModelWindow>,
    /// Spend totals and budgets.
    pub spend: LedgerSnapshot,
    /// A provider-wide denial in force (access denied, authentication, a missing endpoint):
    /// the same record as `breaker` (open with a `denied` reason), in the words of a skip.
    pub cooldown: Option<CooldownStatus>,
    /// The latest failure.
    pub last_error: Option<LastError>,
}

/// One model's rate-limit window of a provider.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ModelWindow {
    /// The model.
    pub model: String,
    /// Its headroom and effective limits.
    pub headroom: Headroom,
}

/// A cool-down in force.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct CooldownStatus {
    /// What started it.
    pub cause: crate::error::Outcome,
    /// The provider's message then.
    pub message: String,
    /// Time left, ms.
    pub remaining_ms: u64,
}

/// The latest failure of a provider.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct LastError {
    /// The error.
    pub error: ProviderError,
    /// The cause and the fix in plain words ([`ProviderError::explain_with`], with the
    /// router's catalog and the provider's configured tier).
    pub explanation: Explanation,
    /// When, seconds since the Unix epoch.
    pub at_unix: u64,
}

pub(crate) fn build(snap: &Snapshot) -> RouterStatus {
    RouterStatus {
        strategy: snap.settings.strategy,
        default_model: snap
            .settings
            .default_model
            .clone()
            .unwrap_or_else(|| snap.catalog.default_model().to_string()),
        spend: snap.budget.snapshot(),
        providers: {
            // The same idle-decay floor the router ranks with (over providers whose breaker
            // lets traffic through), so the status shows the scores routing uses.
            let floor = super::plan::latency_floor(
                snap.providers
                    .iter()
                    .filter(|s| !s.store.breaker().is_blocking()),
            );
            snap.providers
                .iter()
                .enumerate()
                .map(|(i, slot)| provider(snap, slot, i, floor))
                .collect()
        },
    }
}

fn provider(
    snap: &Snapshot,
    slot: &Slot,
    priority: usize,
    floor: Option<Duration>,
) -> ProviderStatus {
    let model = snap
        .settings
        .default_model
        .as_deref()
        .unwrap_or_else(|| snap.catalog.default_model());
    let headroom = slot.store.headroom(model);
    let windows = slot
        .store
        .windows()
        .into_iter()
        .map(|(model, headroom)| ModelWindow { model, headroom })
        .collect();
    let breaker = slot.store.breaker().snapshot();
    let half_open = breaker.state == BreakerState::HalfOpen;
    let inputs = super::plan::score_inputs(slot, priority, headroom.fraction, floor, half_open);
    let cooldown = match (breaker.state, breaker.reason) {
        (BreakerState::Open, Some(OpenReason::Denied(reason))) => Some(CooldownStatus {
            cause: super::policy::deny_outcome(reason),
            message: breaker.message.clone().unwrap_or_default(),
            remaining_ms: breaker
                .retry_in
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }),
        _ => None,
    };
    ProviderStatus {
        name: slot.name().to_string(),
        kind: slot.provider.kind(),
        priority,
        breaker,
        health: slot.health.snapshot(),
        score: snap.scorer.score(&inputs),
        headroom,
        windows,
        spend: slot.store.spend(),
        cooldown,
        last_error: slot.last_error().map(|(error, at)| LastError {
            explanation: error.explain_with(&snap.catalog, slot.options.tier.as_deref()),
            error,
            at_unix: at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
        }),
    }
}
