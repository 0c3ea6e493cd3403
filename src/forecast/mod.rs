//! A forecast before the bill: how long a workload takes and what it costs on the accounts a
//! router has, before one request is sent ([`Router::forecast`](crate::Router::forecast),
//! `image-router plan`).
//!
//! The answer comes from what the router itself knows: the catalog (token tables, prices,
//! per-model tier limits), each provider's configured limits, tier, safety margin and
//! budgets, and its state now (rate-limit headroom, blocks, denials and cool-downs, budget
//! spent). One concept per file:
//!
//! - [`workload`](Workload): what is to be sent — counts by model, size, quality and `n`, or a
//!   prompts file;
//! - `cost.rs`: what each request weighs (tokens, images) and costs, exactly as the router
//!   estimates it before sending, and the faithful alternatives (lower qualities);
//! - `drain.rs`: the model of drain time — a replay of the router's admission rules
//!   (sliding 60-second windows per provider and model in every limit dimension, failover in
//!   the configured order, budgets) on integer time; its module docs say why a replay and what
//!   it does not see;
//! - [`report`](Forecast): the answer, as data and in plain words.
//!
//! A provider takes none of a request when the router would skip it: it cannot serve the
//! request (capability, model), is reserved for request classes, is denied or cooling down
//! now, its breaker is open, or its tier gives no access. A workload nobody can serve is an
//! answer ([`Forecast::unserved`] says why), not an error.
//!
//! What was checked: token and price figures come from the catalog (the API facts the rest of
//! the crate uses); the limit arithmetic is the limiter's (`max(1, floor(limit × margin))`,
//! 60-second sliding windows). What is unsure: accounts shared with other clients (their use
//! shows only in the headroom now, not later), and images per minute, whose
//! remaining figures no provider reports (the replay uses the catalog's per-model figures and
//! the provider's `ipm` setting, as the router does).

mod cost;
mod drain;
mod report;
mod workload;

use std::collections::BTreeMap;

use serde::Serialize;

pub use report::{
    Alternative, Constraint, Dimension, Forecast, LaneLimits, ProviderShare, Unserved,
};
pub use workload::{
    WorkItem, Workload, WorkloadError, DEFAULT_PROMPT_CHARS, MAX_PROMPTS_FILE_BYTES,
};

use crate::catalog::Catalog;
use crate::config_error::ConfigError;
use crate::quota::budget::BudgetSnapshot;
use crate::quota::cost::CostEstimator;
use crate::quota::limiter::Headroom;
use crate::quota::limits::Limits;
use crate::request::ImageRequest;
use drain::{BudgetLine, Caps, KindPlan, Lane, LaneOwner, Ledger, ProviderPlan, Replay};

/// The most requests one forecast replays (each is one step of the replay: ten million take
/// seconds, not minutes).
pub const MAX_FORECAST_REQUESTS: u64 = 10_000_000;

/// Why no forecast could be made.
#[derive(Clone, Debug, PartialEq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ForecastError {
    /// The workload has more than [`MAX_FORECAST_REQUESTS`] requests.
    #[error("the workload has {requests} requests; a forecast covers at most {limit}: forecast a part and scale")]
    TooLarge {
        /// Requests in the workload.
        requests: u64,
        /// The limit.
        limit: u64,
    },
    /// A provider's limits cannot be resolved for a model.
    #[error("provider `{provider}`: {error}")]
    Limits {
        /// The provider.
        provider: String,
        /// The error, naming the field.
        error: ConfigError,
    },
}

/// Why a provider would not take a request (of the model given second) now, if it would not.
pub(crate) type Refusal<'a> = Box<dyn Fn(&ImageRequest, &str) -> Option<String> + 'a>;
/// A provider's rate-limit headroom now in the window of a model (with the margin in force).
pub(crate) type HeadroomFor<'a> = Box<dyn Fn(&str) -> Headroom + 'a>;
/// A provider's limits for a model, before the margin.
pub(crate) type LimitsFor<'a> = Box<dyn Fn(&str) -> Result<Limits, ConfigError> + 'a>;

/// What the forecast needs to know of one provider (built by the router).
pub(crate) struct ProviderInput<'a> {
    pub name: String,
    pub tier: Option<String>,
    /// Its headroom now in a model's window (the limiter's margin in force included).
    pub headroom: HeadroomFor<'a>,
    pub budgets: Vec<BudgetSnapshot>,
    /// Why it would not take `request` (whose model is the second argument) now, if it
    /// would not.
    pub refuses: Refusal<'a>,
    /// Its limits for a model, before the margin.
    pub limits: LimitsFor<'a>,
}

/// What the forecast needs to know of a router.
pub(crate) struct Inputs<'a> {
    pub catalog: &'a Catalog,
    pub costs: &'a CostEstimator,
    pub default_model: &'a str,
    pub providers: Vec<ProviderInput<'a>>,
    pub router_budgets: Vec<BudgetSnapshot>,
}

/// The forecast of `workload` (see the module docs).
pub(crate) fn forecast(
    inputs: &Inputs<'_>,
    workload: &Workload,
) -> Result<Forecast, ForecastError> {
    let requests = workload.requests();
    if requests > MAX_FORECAST_REQUESTS {
        return Err(ForecastError::TooLarge {
            requests,
            limit: MAX_FORECAST_REQUESTS,
        });
    }
    let mut base = replay(inputs, workload)?;
    let mut alternatives = Vec::new();
    for lowered in cost::lower_qualities(workload, inputs.catalog, inputs.default_model) {
        let f = replay(inputs, &lowered.workload)?;
        if f.cost_usd < base.cost_usd - 1e-9 {
            alternatives.push(Alternative {
                change: format!(
                    "quality {} for the {} request(s) above it",
                    lowered.quality, lowered.changed_requests
                ),
                quality: lowered.quality,
                changed_requests: lowered.changed_requests,
                cost_usd: f.cost_usd,
                drain_secs: f.drain_secs,
                served_requests: f.served_requests,
            });
        }
    }
    // Most faithful (most expensive) first, the cheapest last.
    alternatives.sort_by(|a, b| b.cost_usd.total_cmp(&a.cost_usd));
    base.alternatives = alternatives;
    Ok(base)
}

fn ledger(budgets: &[BudgetSnapshot]) -> Ledger {
    Ledger {
        lines: budgets
            .iter()
            .map(|b| BudgetLine {
                label: format!("${:.2}/{}", b.limit_usd, b.period),
                remaining: drain::nano(b.remaining_usd),
                resets_in_secs: b.resets_in.as_secs(),
            })
            .collect(),
    }
}

fn scaled(limit: u64, margin: f64) -> u64 {
    // The limiter's rule: max(1, floor(limit × margin)).
    ((limit as f64 * margin).floor() as u64).max(1)
}

/// The lane of `provider` for `model`: its effective limits, the capacity used now and its
/// block; `Err` when its tier gives no access.
fn lane_for(p: &ProviderInput<'_>, model: &str) -> Result<Result<Lane, String>, ForecastError> {
    let limits = (p.limits)(model).map_err(|error| ForecastError::Limits {
        provider: p.name.clone(),
        error,
    })?;
    if let Some(na) = &limits.no_access {
        return Ok(Err(format!("no access: {na}")));
    }
    let h = &(p.headroom)(model);
    if h.no_access {
        return Ok(Err("no access: its tier gives none".to_string()));
    }
    // A limit the provider reported lower than the configured one is what the limiter uses
    // (its effective figure, when no 429 back-off is lowering it for a while).
    let steady = |configured: Option<u64>, live: Option<u64>| -> Option<u64> {
        let c = configured.map(|l| scaled(l, h.margin));
        match (c, live) {
            (Some(c), Some(l)) if h.backoff_factor >= 1.0 => Some(c.min(l)),
            (c, _) => c,
        }
    };
    let caps = Caps([
        steady(limits.rpm.map(u64::from), h.effective_rpm),
        steady(limits.tpm, h.effective_tpm),
        steady(limits.ipm.map(u64::from), h.effective_ipm),
    ]);
    let used = |eff: Option<u64>, avail: Option<u64>| match (eff, avail) {
        (Some(e), Some(a)) => e.saturating_sub(a),
        _ => 0,
    };
    let occupied = [
        used(h.effective_rpm, h.requests),
        used(h.effective_tpm, h.tokens),
        used(h.effective_ipm, h.images),
    ];
    let blocked = h
        .retry_in
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    Ok(Ok(Lane::new(caps, occupied, blocked)))
}

/// Replays `workload` on fresh copies of the providers' state.
fn replay(inputs: &Inputs<'_>, workload: &Workload) -> Result<Forecast, ForecastError> {
    let mut lanes: Vec<Lane> = Vec::new();
    let mut owners: Vec<LaneOwner> = Vec::new();
    // (provider, model) → lane index, or why the provider has none for the model.
    let mut lane_of: BTreeMap<(usize, String), Result<usize, String>> = BTreeMap::new();
    let mut not_serving: Vec<Vec<String>> = vec![Vec::new(); inputs.providers.len()];
    let mut kinds: Vec<(KindPlan, u64)> = Vec::with_capacity(workload.items().len());
    for item in workload.items() {
        let priced = cost::price(item, inputs.catalog, inputs.costs, inputs.default_model);
        let mut routes = Vec::with_capacity(inputs.providers.len());
        for (i, p) in inputs.providers.iter().enumerate() {
            let key = (i, priced.model.clone());
            if !lane_of.contains_key(&key) {
                let entry = match lane_for(p, &priced.model)? {
                    Ok(lane) => {
                        lanes.push(lane);
                        owners.push(LaneOwner {
                            provider: i,
                            model: priced.model.clone(),
                        });
                        Ok(lanes.len() - 1)
                    }
                    Err(reason) => Err(reason),
                };
                lane_of.insert(key.clone(), entry);
            }
            let route = match (
                lane_of.get(&key),
                (p.refuses)(&priced.request, &priced.model),
            ) {
                (_, Some(reason)) => Err(reason),
                (Some(Ok(l)), None) => match lanes[*l].never_fits(&priced.weight) {
                    Some((d, cap)) => Err(format!(
                        "a request of {} {} can never fit its limit of {cap} {}",
                        priced.weight[d.index()],
                        match d {
                            Dimension::Requests => "requests",
                            Dimension::Tokens => "estimated tokens",
                            Dimension::Images => "images",
                        },
                        d.as_str()
                    )),
                    None => Ok(*l),
                },
                (Some(Err(reason)), None) => Err(reason.clone()),
                (None, None) => Err("no lane".to_string()),
            };
            if let Err(reason) = &route {
                let r = format!("{}: {reason}", priced.model);
                if priced.invalid.is_none() && !not_serving[i].contains(&r) {
                    not_serving[i].push(r);
                }
            }
            routes.push(route);
        }
        kinds.push((
            KindPlan {
                model: priced.model,
                weight: priced.weight,
                cost_usd: priced.cost_usd,
                routes,
                invalid: priced.invalid,
            },
            item.count,
        ));
    }
    let providers: Vec<ProviderPlan> = inputs
        .providers
        .iter()
        .map(|p| ProviderPlan {
            name: p.name.clone(),
            tier: p.tier.clone(),
            ledger: ledger(&p.budgets),
        })
        .collect();
    let mut r = Replay::new(
        lanes.clone(),
        owners.clone(),
        providers,
        ledger(&inputs.router_budgets),
    );
    for (kind, count) in &kinds {
        r.run(kind, *count);
    }
    let served_images = r.served_images;
    let shares = inputs
        .providers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let t = &r.tallies[i];
            ProviderShare {
                name: p.name.clone(),
                requests: t.requests,
                images: t.images,
                share: if served_images > 0 {
                    t.images as f64 / served_images as f64
                } else {
                    0.0
                },
                cost_usd: t.cost_usd,
                limits: owners
                    .iter()
                    .zip(&lanes)
                    .filter(|(o, _)| o.provider == i)
                    .map(|(o, l)| LaneLimits {
                        model: o.model.clone(),
                        rpm: l.caps().get(Dimension::Requests),
                        tpm: l.caps().get(Dimension::Tokens),
                        ipm: l.caps().get(Dimension::Images),
                    })
                    .collect(),
                not_serving: std::mem::take(&mut not_serving[i]),
            }
        })
        .collect();
    Ok(Forecast {
        requests: workload.requests(),
        images: workload.images(),
        served_requests: r.served_requests,
        served_images,
        drain_secs: r.drain_secs(),
        cost_usd: r.cost_usd,
        unknown_price_requests: r.unknown_price,
        providers: shares,
        constraints: r.constraints(),
        unserved: std::mem::take(&mut r.unserved),
        alternatives: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::limiter::{LimiterConfig, RateLimiter};
    use crate::request::Quality;
    use std::sync::Arc;

    fn headroom(limits: &Limits) -> Headroom {
        let clock: crate::clock::SharedClock = Arc::new(crate::clock::ManualClock::new());
        RateLimiter::with_config(LimiterConfig::new(limits.clone()).margin(0.9), clock)
            .unwrap()
            .headroom()
    }

    /// Images per minute weigh `n`: tier-1's 5 images a minute (4 after the margin) take two
    /// requests of `n = 2` a minute, and the forecast names the dimension and the tier.
    #[test]
    fn images_per_minute_bind_and_n_weighs_n() {
        let limits = Limits {
            ipm: Some(5),
            ..Limits::default()
        };
        let costs = CostEstimator::new();
        let inputs = Inputs {
            catalog: Catalog::builtin(),
            costs: &costs,
            default_model: "gpt-image-1",
            providers: vec![ProviderInput {
                name: "openai".into(),
                tier: Some("tier-1".into()),
                headroom: {
                    let h = headroom(&limits);
                    Box::new(move |_| h.clone())
                },
                budgets: Vec::new(),
                refuses: Box::new(|_, _| None),
                limits: Box::new(move |_| Ok(limits.clone())),
            }],
            router_budgets: Vec::new(),
        };
        let w = Workload::new().with(WorkItem::new(10).quality(Quality::Low).n(2));
        let f = forecast(&inputs, &w).unwrap();
        assert_eq!(f.drain_secs, Some(240.0));
        assert_eq!(f.providers[0].limits[0].ipm, Some(4));
        let binding = f.binding().unwrap().to_string();
        assert!(
            binding.starts_with(
                "images per minute of gpt-image-1 on `openai` at tier-1 (4 per minute)"
            ),
            "{binding}"
        );
        // n = 5 can never fit 4 images a minute: an answer, not a wait forever.
        let f = forecast(&inputs, &Workload::new().with(WorkItem::new(1).n(5))).unwrap();
        assert_eq!(f.served_requests, 0);
        assert!(
            f.unserved[0]
                .reason
                .contains("can never fit its limit of 4 images per minute"),
            "{f}"
        );
        // Too large a workload is refused before any work.
        let huge = Workload::new().with(WorkItem::new(MAX_FORECAST_REQUESTS + 1));
        assert!(matches!(
            forecast(&inputs, &huge),
            Err(ForecastError::TooLarge { .. })
        ));
    }
}
