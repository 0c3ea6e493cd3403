//! Planning and ranking: which providers may take a request and in which order.
//!
//! A provider is left out, with the reason in the skip list, when it cannot serve the
//! request (capabilities), is reserved for other request classes, or is unavailable (a denial
//! held by its breaker, or a cool-down of this model); the rest are scored and ranked by the
//! strategy (providers without headroom last, open breakers left out).
//!
//! The keys of one provider (see `RouterBuilder::provider_keys`) are ranked by the strategy
//! like any provider, and then, among the places the strategy gave them, ordered by their
//! rate-limit room ([`keys_by_room`]): requests go to the key with the most room, while the
//! strategy still decides where the provider as a whole stands against the others.

use std::time::Duration;

use super::slot::Slot;
use super::snapshot::Snapshot;
use crate::breaker::BreakerState;
use crate::error::{Skip, SkipReason};
use crate::request::ImageRequest;
use crate::request::RequestClass;
use crate::score::{ScoreBreakdown, ScoreInputs};
use crate::strategy::{Candidate, Ranking};

/// The providers a request may go to, best first with their scores, and those left out.
pub(crate) struct Plan {
    /// Provider indices in the order to try.
    pub order: Vec<usize>,
    /// Every candidate with its score inputs.
    pub candidates: Vec<Candidate>,
    pub skipped: Vec<Skip>,
}

impl Plan {
    /// The score of provider `index` as ranked (`None` if it was no candidate).
    pub fn score(&self, snap: &Snapshot, index: usize) -> Option<ScoreBreakdown> {
        self.candidates
            .iter()
            .find(|c| c.index == index)
            .map(|c| snap.scorer.score(&c.inputs))
    }

    /// Logs the ranking at debug level (computed only when that level is on).
    pub fn log(&self, snap: &Snapshot) {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        let ranking: Vec<String> = self
            .order
            .iter()
            .map(|&i| {
                let s = self.score(snap, i).unwrap_or_default();
                format!(
                    "{} total={:.4} availability={:.3} latency={:.3} headroom={:.3} budget={:.3} priority={:.3} weight={:.3}",
                    snap.providers[i].name(),
                    s.total,
                    s.availability,
                    s.latency,
                    s.headroom,
                    s.budget,
                    s.priority,
                    s.weight
                )
            })
            .collect();
        tracing::debug!(ranking = ?ranking, skipped = self.skipped.len(), "ranked providers");
    }
}

fn skip(skipped: &mut Vec<Skip>, slot: &Slot, reason: SkipReason) {
    tracing::debug!(provider = slot.name(), reason = %reason, "skipped");
    skipped.push(Skip::new(slot.name(), reason));
}

/// Which latency a request is scored on: the image latency, or (a streamed request that
/// asks for partial images) the time to the first partial image (see `crate::health`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Latency {
    /// The whole answer's latency: plain requests, and streams without partial images.
    Image,
    /// Time to the first partial image: streams that ask for partials.
    FirstPartial,
}

/// Filters by capability, class and availability, then ranks with the strategy.
pub(crate) fn plan(
    snap: &Snapshot,
    req: &ImageRequest,
    model: &str,
    class: Option<&RequestClass>,
    now: Duration,
    latency: Latency,
) -> Plan {
    let mut skipped = Vec::new();
    // Every provider that passed the filters, scored except for its latency, which needs
    // the floor of all of them (below).
    let mut candidates: Vec<Candidate> = Vec::with_capacity(snap.providers.len());
    for (i, slot) in snap.providers.iter().enumerate() {
        if let Err(detail) = slot.provider.supports(req) {
            skip(&mut skipped, slot, SkipReason::Unsupported { detail });
            continue;
        }
        if !slot.options.classes.admits(class) {
            let message = format!(
                "reserved for request classes {}",
                slot.options
                    .classes
                    .reserved_for
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            skip(&mut skipped, slot, SkipReason::Reserved { message });
            continue;
        }
        if let Some(u) = slot.store.unavailable(model, now) {
            let reason = SkipReason::CoolingDown {
                cause: u.cause,
                message: u.message,
                remaining: u.remaining,
            };
            skip(&mut skipped, slot, reason);
            continue;
        }
        let breaker = slot.store.breaker();
        let headroom = slot.store.headroom(model).fraction;
        let half_open = breaker.state() == BreakerState::HalfOpen;
        let mut c = Candidate::new(i, inputs_but_latency(slot, i, headroom, half_open, now));
        c.breaker_open = breaker.is_blocking();
        c.no_headroom = headroom <= 0.0;
        c.preferred = slot.options.classes.prefers(class);
        candidates.push(c);
    }
    // Idle estimates decay no lower than the best measured latency among the candidates
    // that can take the request (see `Health::cost_ms_floored`), so the floor is known
    // before any candidate's latency is read.
    let able = candidates
        .iter()
        .filter(|c| !c.breaker_open)
        .map(|c| &snap.providers[c.index]);
    let floor = match latency {
        Latency::Image => latency_floor(able),
        Latency::FirstPartial => able.filter_map(|s| s.health.measured_first_partial()).min(),
    };
    for c in &mut candidates {
        let health = &snap.providers[c.index].health;
        c.inputs.latency_ms = match latency {
            Latency::Image => health.cost_ms_floored_at(floor, now),
            Latency::FirstPartial => health.first_partial_cost_ms_floored(floor),
        };
    }

    // Buffers grow as the ranking fills them: one provider needs no sorting space.
    let mut ranking = Ranking::new();
    snap.settings.strategy.rank_into(
        &candidates,
        snap.scorer.as_ref(),
        &mut rand::rng(),
        &mut ranking,
    );
    for &i in ranking.skipped() {
        let slot = &snap.providers[i];
        let message = breaker_message(&slot.store.breaker().snapshot());
        skip(&mut skipped, slot, SkipReason::CircuitOpen { message });
    }
    Plan {
        order: keys_by_room(snap, model, ranking.into_order()),
        candidates,
        skipped,
    }
}

/// Reorders the members of each key set among their own places in `order`, most room first
/// in the window of `model` (requests or images admissible now, whichever is fewer, unlimited counting as the most; then the free share of the
/// limits); providers of their own stay where they are. Stable: keys with equal room keep
/// the strategy's order.
pub(crate) fn keys_by_room(snap: &Snapshot, model: &str, mut order: Vec<usize>) -> Vec<usize> {
    let mut done: Vec<&str> = Vec::new();
    for pos in 0..order.len() {
        let Some(key) = &snap.providers[order[pos]].key else {
            continue;
        };
        if done.contains(&&*key.group) {
            continue;
        }
        done.push(&key.group);
        let places: Vec<usize> = (pos..order.len())
            .filter(|&p| {
                snap.providers[order[p]]
                    .key
                    .as_ref()
                    .is_some_and(|k| k.group == key.group)
            })
            .collect();
        if places.len() < 2 {
            continue;
        }
        let mut members: Vec<(usize, (u64, f64))> = places
            .iter()
            .map(|&p| {
                // The window of the request's model; room counts requests or images,
                // whichever is fewer (a tier may limit only images).
                let h = snap.providers[order[p]].store.headroom(model);
                let room = h
                    .requests
                    .unwrap_or(u64::MAX)
                    .min(h.images.unwrap_or(u64::MAX));
                (order[p], (room, h.fraction))
            })
            .collect();
        members.sort_by(|a, b| {
            b.1 .0.cmp(&a.1 .0).then(
                b.1 .1
                    .partial_cmp(&a.1 .1)
                    .unwrap_or(std::cmp::Ordering::Equal),
            )
        });
        for (&place, (index, _)) in places.iter().zip(members) {
            order[place] = index;
        }
    }
    order
}

/// The request's model, or the router's default.
pub(crate) fn resolve_model(snap: &Snapshot, req: &ImageRequest) -> String {
    match req.model() {
        Some(m) => m.to_string(),
        None => snap
            .settings
            .default_model
            .clone()
            .unwrap_or_else(|| snap.catalog.default_model().to_string()),
    }
}

/// The lowest measured (undecayed) latency among `slots`: the floor of the idle decay.
pub(crate) fn latency_floor<'a>(slots: impl Iterator<Item = &'a Slot>) -> Option<Duration> {
    slots.filter_map(|s| s.health.measured_latency()).min()
}

/// Score inputs of one provider now; `floor` as for [`Health::cost_ms_floored`].
///
/// [`Health::cost_ms_floored`]: crate::health::Health::cost_ms_floored
pub(crate) fn score_inputs(
    slot: &Slot,
    priority: usize,
    headroom: f64,
    floor: Option<Duration>,
    half_open: bool,
) -> ScoreInputs {
    let now = slot.health.now();
    ScoreInputs {
        latency_ms: slot.health.cost_ms_floored_at(floor, now),
        ..inputs_but_latency(slot, priority, headroom, half_open, now)
    }
}

/// As [`score_inputs`] with `latency_ms` left at 0, for a caller that reads the latency
/// later (once the floor is known); `now` on the router's clock, which health reads too.
fn inputs_but_latency(
    slot: &Slot,
    priority: usize,
    headroom: f64,
    half_open: bool,
    now: Duration,
) -> ScoreInputs {
    // A breaker past its cool-down waits for one probe: the failures that opened it are
    // what the cool-down already paid for, and counting them again would rank the provider
    // last so the probe never happens while any other provider answers.
    let availability = if half_open {
        1.0
    } else {
        slot.health.availability_at(now)
    };
    ScoreInputs {
        availability,
        latency_ms: 0.0,
        headroom,
        budget_left: slot.budget_left(),
        priority,
        weight: slot.options.weight.unwrap_or(1.0),
    }
}

/// A breaker snapshot as a skip message.
pub(crate) fn breaker_message(b: &crate::breaker::BreakerSnapshot) -> String {
    let mut m = format!("breaker {}", b.state.as_str());
    if let Some(r) = &b.reason {
        m.push_str(&format!(" ({r:?})"));
    }
    if let Some(d) = b.retry_in {
        m.push_str(&format!(", retry in {} ms", d.as_millis()));
    }
    if let Some(msg) = &b.message {
        m.push_str(&format!(": {msg}"));
    }
    m
}
