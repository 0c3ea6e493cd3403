//! [`RouterStatus`]: a serializable snapshot of what the router knows about each provider —
//! breaker state, health, score components, rate-limit headroom, spend, cool-downs and the last
//! error — for status pages, the `status` command and debugging a routing decision.
//!
//! A provider with several keys is several entries of `providers` (one per key, each named
//! `{name}/{label}` with `group` and `key` set) and one entry of `key_groups`, which lists
//! the provider's keys under it by label: which carry traffic, which are set aside and why.
//! Labels are never keys (see `providers::ProviderKeys`).

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
    /// Each provider, in configured order (a provider with several keys: one entry per key).
    pub providers: Vec<ProviderStatus>,
    /// Each provider with several keys, its keys listed under it by label (empty when no
    /// provider has several keys).
    pub key_groups: Vec<KeyGroupStatus>,
    /// Where the providers' limits, budgets and denials live: in this process, or shared
    /// with other instances (Redis), and whether this instance serves from local state now.
    pub store: StoreStatus,
}

/// The state store of the router's providers, as [`StateStore::state`] reports it
/// (see [`crate::store`]).
///
/// [`StateStore::state`]: crate::store::StateStore::state
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct StoreStatus {
    /// `"in-process"` or `"redis"` (the kind of the providers' stores; a router has one).
    pub kind: &'static str,
    /// Whether the state is shared with other router instances.
    pub shared: bool,
    /// Why this instance serves from local state now (a shared store that cannot reach its
    /// server: each limit is divided among the live instances), `None` when it does not.
    /// The first provider's reason when several report one.
    pub degraded: Option<String>,
    /// Router instances sharing the state, from their heartbeats (the most any provider's
    /// store reports; `None` for the in-process store).
    pub instances: Option<u32>,
    /// Each provider's store, in configured order.
    pub providers: Vec<ProviderStore>,
}

/// One provider's store.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ProviderStore {
    /// The provider's name (as in [`RouterStatus::providers`]).
    pub name: String,
    /// The provider account whose windows and budgets the store shares (a shared store).
    pub account: Option<String>,
    /// Why this provider's store serves from local state now, if it does.
    pub degraded: Option<String>,
    /// Instances known to share the account.
    pub instances: Option<u32>,
}

fn store_status(snap: &Snapshot) -> StoreStatus {
    let providers: Vec<ProviderStore> = snap
        .providers
        .iter()
        .map(|slot| {
            let st = slot.store.state();
            ProviderStore {
                name: slot.name().to_string(),
                account: st.account,
                degraded: st.degraded,
                instances: st.instances,
            }
        })
        .collect();
    let kind = snap
        .providers
        .first()
        .map_or("in-process", |s| s.store.state().kind);
    StoreStatus {
        kind,
        shared: kind != "in-process",
        degraded: providers.iter().find_map(|p| p.degraded.clone()),
        instances: providers.iter().filter_map(|p| p.instances).max(),
        providers,
    }
}

/// A provider with several keys (see
/// [`RouterBuilder::provider_keys`](crate::RouterBuilder::provider_keys)).
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct KeyGroupStatus {
    /// The provider's name.
    pub name: String,
    /// Its keys, in configured order.
    pub keys: Vec<KeyStatus>,
}

/// One key of a provider with several keys.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct KeyStatus {
    /// The key's non-secret label (the environment variable's name in a config file).
    pub label: String,
    /// The entry of [`RouterStatus::providers`] this key is (`{name}/{label}`).
    pub provider: String,
    /// Whether the key can take requests now (not set aside, breaker not refusing).
    pub usable: bool,
    /// Why the key is set aside (a denial: invalid key, insufficient quota, no tier access,
    /// organization not verified), and for how long.
    pub set_aside: Option<CooldownStatus>,
    /// The key's circuit-breaker state.
    pub breaker: BreakerState,
    /// The key's rate-limit headroom.
    pub headroom: Headroom,
}

/// One provider's state.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ProviderStatus {
    /// Name (`{provider}/{label}` for one key of a provider with several).
    pub name: String,
    /// For one key of a provider with several: the provider's name.
    pub group: Option<String>,
    /// For one key of a provider with several: the key's non-secret label.
    pub key: Option<String>,
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
    let providers: Vec<ProviderStatus> = {
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
    };
    RouterStatus {
        key_groups: key_groups(snap, &providers),
        strategy: snap.settings.strategy,
        default_model: snap
            .settings
            .default_model
            .clone()
            .unwrap_or_else(|| snap.catalog.default_model().to_string()),
        spend: snap.budget.snapshot(),
        store: store_status(snap),
        providers,
    }
}

/// Each key set with its members' state, in the order the providers were configured.
fn key_groups(snap: &Snapshot, providers: &[ProviderStatus]) -> Vec<KeyGroupStatus> {
    let mut groups: Vec<KeyGroupStatus> = Vec::new();
    for (slot, status) in snap.providers.iter().zip(providers) {
        let Some(key) = &slot.key else { continue };
        let entry = KeyStatus {
            label: key.label.to_string(),
            provider: status.name.clone(),
            usable: status.cooldown.is_none() && !slot.store.breaker().is_blocking(),
            set_aside: status.cooldown.clone(),
            breaker: status.breaker.state,
            headroom: status.headroom.clone(),
        };
        match groups.iter_mut().find(|g| *g.name == *key.group) {
            Some(g) => g.keys.push(entry),
            None => groups.push(KeyGroupStatus {
                name: key.group.to_string(),
                keys: vec![entry],
            }),
        }
    }
    groups
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
        group: slot.key.as_ref().map(|k| k.group.to_string()),
        key: slot.key.as_ref().map(|k| k.label.to_string()),
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
