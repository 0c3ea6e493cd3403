//! The model of drain time: the router's admission replayed on paper.
//!
//! # Why a replay, not a division
//!
//! "Requests ÷ requests per minute" is wrong in the ways that matter here: the limiter is a
//! sliding-window log, so a burst of a whole minute's limit goes at once and the next one
//! exactly 60 s after it (200 requests at 20 per minute drain in 9 minutes, not 10); requests
//! are weighted differently in each dimension (a high-quality image weighs 15 times a low one
//! in tokens, `n = 4` weighs 4 images); failover sends what one provider cannot take to the
//! next; and a budget stops a provider in the middle of the run. A closed formula for all of
//! that together would be an approximation of an approximation. So the forecast replays the
//! admission rules of the router on integer nanoseconds, request by request in the workload's
//! order: each request goes to the first provider, in the configured order, that can serve
//! it, whose budgets (and the router's) can pay its estimated cost and whose window has room
//! now; when none has room, time moves to the earliest moment one has. That is the rule the
//! router follows under a saturating load (providers without room are tried last, a provider
//! whose budget cannot pay is skipped), so the replay is the router's schedule, at the cost of
//! one small loop per request (10,000 requests take milliseconds).
//!
//! # A lane per provider and model
//!
//! Each `(provider, model)` pair is a lane with its own window in each dimension — requests,
//! tokens, images per minute — at the effective limits the limiter uses
//! (`max(1, floor(limit × margin))`). The per-model windows are the state store's (one window per
//! model, each at `Limits::resolve_for_model`'s figures, the margin in force read from that
//! window's headroom). Capacity the provider has already used when the forecast
//! is made (its headroom) is counted as used until a full window has passed: its entries
//! leave the window within 60 s, and assuming the latest moment errs towards a longer drain.
//!
//! The order is the configured one: that is what the default scorer keeps while providers
//! are comparable (and what `Ordered` does strictly). Under a saturating load every window
//! fills whatever the order, so the drain time holds for `Weighted` too; its shares and, when
//! prices differ, its cost follow the weights instead. Likewise the keys of one provider
//! (which the router tries by room left) are replayed in their configured order: the drain
//! time and cost hold, the split between the keys may differ.
//!
//! Checked before writing it (docs search): the limiter crates (`limitr`, `rate_limiters`,
//! `volga-rate-limiter`, `throttle-net`) enforce limits on a live clock, one weight per
//! request; none replays a log weighted in several dimensions, with budgets, on virtual time.
//! The crate's own [`RateLimiter`](crate::quota::limiter::RateLimiter) keeps its state
//! behind the injected clock and admits on the live clock, so the replay keeps its own small
//! window (the same arithmetic: entries leave 60 s after admission, the limit is
//! `max(1, floor(limit × margin))`).
//!
//! # What the replay does not see
//!
//! Generation latency (the last request's image arrives that much after it was admitted),
//! 429 back-off from other clients of the same key, and budget period resets (a request the
//! budgets cannot pay fails at once in the router too; it is reported as not served, with the
//! budget and when it resets).

use std::collections::VecDeque;

pub(crate) use super::report::Dimension;

/// Nanoseconds of one rate-limit window (60 s).
pub(crate) const WINDOW_NS: u64 = 60_000_000_000;

/// The effective limit of each dimension (`None`: unlimited), in units per 60 s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Caps(pub [Option<u64>; 3]);

impl Caps {
    pub fn get(&self, d: Dimension) -> Option<u64> {
        self.0[d.index()]
    }
}

/// A request's weight in each dimension: `[1, tokens, images]`.
pub(crate) type Weight = [u64; 3];

#[derive(Clone, Copy, Debug)]
struct Entry {
    at: u64,
    w: Weight,
}

/// One `(provider, model)` window (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct Lane {
    caps: Caps,
    log: VecDeque<Entry>,
    used: Weight,
    /// No admission before this time (a block from a 429 or `remaining: 0` headers).
    blocked_until: u64,
}

impl Lane {
    /// A lane at `caps`, with `occupied` already used now (leaving the window at 60 s) and no
    /// admission before `blocked_until`.
    pub fn new(caps: Caps, occupied: Weight, blocked_until: u64) -> Self {
        let mut lane = Self {
            caps,
            log: VecDeque::new(),
            used: [0; 3],
            blocked_until,
        };
        if occupied.iter().any(|&v| v > 0) {
            lane.log.push_back(Entry { at: 0, w: occupied });
            lane.used = occupied;
        }
        lane
    }

    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// The dimension in which `w` exceeds the whole limit: it can never be admitted.
    pub fn never_fits(&self, w: &Weight) -> Option<(Dimension, u64)> {
        // One request always fits an empty requests window (limits are at least 1).
        Dimension::ALL.into_iter().skip(1).find_map(|d| {
            self.caps
                .get(d)
                .filter(|&c| w[d.index()] > c)
                .map(|c| (d, c))
        })
    }

    fn prune(&mut self, now: u64) {
        while let Some(e) = self.log.front() {
            if e.at.saturating_add(WINDOW_NS) <= now {
                for (u, v) in self.used.iter_mut().zip(e.w) {
                    *u = u.saturating_sub(v);
                }
                self.log.pop_front();
            } else {
                break;
            }
        }
    }

    fn full_in(caps: &Caps, used: &Weight, w: &Weight) -> Vec<Dimension> {
        Dimension::ALL
            .into_iter()
            .filter(|&d| {
                caps.get(d)
                    .is_some_and(|c| used[d.index()].saturating_add(w[d.index()]) > c)
            })
            .collect()
    }

    /// The dimensions without room for `w` at `now` (empty: it fits).
    pub fn full(&mut self, now: u64, w: &Weight) -> Vec<Dimension> {
        self.prune(now);
        Self::full_in(&self.caps, &self.used, w)
    }

    /// When `w` fits, at or after `now` (call after [`Lane::full`] said it does not and
    /// [`Lane::never_fits`] said it can). Entries leave the window 60 s after admission.
    pub fn room_at(&self, now: u64, w: &Weight) -> u64 {
        let mut used = self.used;
        let mut at = now.max(self.blocked_until);
        for e in &self.log {
            if Self::full_in(&self.caps, &used, w).is_empty() {
                break;
            }
            for (u, v) in used.iter_mut().zip(e.w) {
                *u = u.saturating_sub(v);
            }
            at = at.max(e.at.saturating_add(WINDOW_NS));
        }
        at
    }

    pub fn blocked_until(&self) -> u64 {
        self.blocked_until
    }

    pub fn admit(&mut self, now: u64, w: Weight) {
        // A lane without any limit never refuses: keeping its log would only grow memory by
        // one entry per request (all admitted at the same instant, none ever pruned).
        if self.caps.0.iter().all(Option::is_none) {
            return;
        }
        self.log.push_back(Entry { at: now, w });
        for (u, v) in self.used.iter_mut().zip(w) {
            *u = u.saturating_add(v);
        }
    }
}

/// One budget as the replay spends it, in integer nano-dollars like the ledger.
#[derive(Clone, Debug)]
pub(crate) struct BudgetLine {
    /// What the budget is called in the report ("$20.00/day").
    pub label: String,
    /// Left in the current period.
    pub remaining: u64,
    /// When its period resets, seconds from now.
    pub resets_in_secs: u64,
}

/// The budgets of one ledger (a provider's, or the router's).
#[derive(Clone, Debug, Default)]
pub(crate) struct Ledger {
    pub lines: Vec<BudgetLine>,
}

impl Ledger {
    /// The first budget that cannot pay `nano`, if any.
    pub fn refuses(&self, nano: u64) -> Option<&BudgetLine> {
        self.lines.iter().find(|b| b.remaining < nano)
    }

    pub fn charge(&mut self, nano: u64) {
        for b in &mut self.lines {
            b.remaining = b.remaining.saturating_sub(nano);
        }
    }

    pub fn has_budgets(&self) -> bool {
        !self.lines.is_empty()
    }
}

/// USD as integer nano-dollars (the ledger's unit), rounded.
pub(crate) fn nano(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e9).round() as u64
    } else {
        0
    }
}

/// One request shape as the replay needs it.
#[derive(Clone, Debug)]
pub(crate) struct KindPlan {
    pub model: String,
    pub weight: Weight,
    /// Estimated cost, USD (`None`: the price is unknown).
    pub cost_usd: Option<f64>,
    /// Per provider: its lane, or why it takes none of these requests.
    pub routes: Vec<Result<usize, String>>,
    /// Why no provider may take it (the request is invalid for the model).
    pub invalid: Option<String>,
}

/// What a provider is in the replay.
#[derive(Clone, Debug)]
pub(crate) struct ProviderPlan {
    pub name: String,
    pub tier: Option<String>,
    pub ledger: Ledger,
}

/// Which provider and model a lane belongs to.
#[derive(Clone, Debug)]
pub(crate) struct LaneOwner {
    pub provider: usize,
    pub model: String,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Tally {
    pub requests: u64,
    pub images: u64,
    pub cost_usd: f64,
    /// Serial number of its last admission (0: none).
    last_serial: u64,
}

#[derive(Clone, Debug)]
struct RateStat {
    lane: usize,
    dim: Dimension,
    first_at: u64,
    waited: u64,
}

#[derive(Clone, Debug)]
struct BudgetEvent {
    /// `None`: the router's ledger.
    provider: Option<usize>,
    label: String,
    at: u64,
    resets_in_secs: u64,
    serial: u64,
}

/// The replay of one workload (see the module docs).
#[derive(Debug)]
pub(crate) struct Replay {
    lanes: Vec<Lane>,
    owners: Vec<LaneOwner>,
    providers: Vec<ProviderPlan>,
    router: Ledger,
    now: u64,
    last_admit: Option<u64>,
    serial: u64,
    pub tallies: Vec<Tally>,
    pub served_requests: u64,
    pub served_images: u64,
    pub cost_usd: f64,
    pub unknown_price: u64,
    rates: Vec<RateStat>,
    budgets: Vec<BudgetEvent>,
    pub unserved: Vec<super::report::Unserved>,
}

const NS: f64 = 1e9;

impl Replay {
    pub fn new(
        lanes: Vec<Lane>,
        owners: Vec<LaneOwner>,
        providers: Vec<ProviderPlan>,
        router: Ledger,
    ) -> Self {
        let tallies = vec![Tally::default(); providers.len()];
        Self {
            lanes,
            owners,
            providers,
            router,
            now: 0,
            last_admit: None,
            serial: 0,
            tallies,
            served_requests: 0,
            served_images: 0,
            cost_usd: 0.0,
            unknown_price: 0,
            rates: Vec::new(),
            budgets: Vec::new(),
            unserved: Vec::new(),
        }
    }

    /// Seconds until the last admission (`None`: nothing was admitted).
    pub fn drain_secs(&self) -> Option<f64> {
        self.last_admit.map(|t| t as f64 / NS)
    }

    fn not_served(&mut self, kind: &KindPlan, requests: u64, reason: String) {
        let images = requests.saturating_mul(kind.weight[2]);
        if let Some(u) = self
            .unserved
            .iter_mut()
            .find(|u| u.model == kind.model && u.reason == reason)
        {
            u.requests = u.requests.saturating_add(requests);
            u.images = u.images.saturating_add(images);
            return;
        }
        self.unserved.push(super::report::Unserved {
            requests,
            images,
            model: kind.model.clone(),
            reason,
        });
    }

    fn note_full(&mut self, lane: usize, dims: &[Dimension]) {
        for &dim in dims {
            if !self.rates.iter().any(|r| r.lane == lane && r.dim == dim) {
                self.rates.push(RateStat {
                    lane,
                    dim,
                    first_at: self.now,
                    waited: 0,
                });
            }
        }
    }

    fn note_budget(&mut self, provider: Option<usize>, line: &BudgetLine) {
        if self
            .budgets
            .iter()
            .any(|b| b.provider == provider && b.label == line.label)
        {
            return;
        }
        self.budgets.push(BudgetEvent {
            provider,
            label: line.label.clone(),
            at: self.now,
            resets_in_secs: line.resets_in_secs,
            serial: self.serial,
        });
    }

    /// Replays `count` requests of `kind`, in order.
    pub fn run(&mut self, kind: &KindPlan, count: u64) {
        if let Some(reason) = &kind.invalid {
            self.not_served(kind, count, reason.clone());
            return;
        }
        if kind.routes.iter().all(Result::is_err) {
            let reason = kind
                .routes
                .iter()
                .zip(&self.providers)
                .map(|(r, p)| format!("`{}`: {}", p.name, r.as_ref().err().map_or("", |s| s)))
                .collect::<Vec<_>>()
                .join("; ");
            self.not_served(kind, count, format!("no provider can serve it ({reason})"));
            return;
        }
        for _ in 0..count {
            self.one(kind);
        }
    }

    fn one(&mut self, kind: &KindPlan) {
        let w = kind.weight;
        let cost = kind.cost_usd.map(nano);
        loop {
            // (time, lane, full dimensions) of the earliest room.
            let mut earliest: Option<(u64, usize, Vec<Dimension>)> = None;
            let mut money: Vec<String> = Vec::new();
            for p in 0..self.providers.len() {
                let Ok(lane) = kind.routes[p] else { continue };
                match cost {
                    Some(c) => {
                        if let Some(line) = self.router.refuses(c).cloned() {
                            self.note_budget(None, &line);
                            money.push(format!(
                                "the router's {} budget (resets in {})",
                                line.label,
                                super::report::duration(line.resets_in_secs as f64)
                            ));
                            continue;
                        }
                        if let Some(line) = self.providers[p].ledger.refuses(c).cloned() {
                            self.note_budget(Some(p), &line);
                            money.push(format!(
                                "`{}`'s {} budget (resets in {})",
                                self.providers[p].name,
                                line.label,
                                super::report::duration(line.resets_in_secs as f64)
                            ));
                            continue;
                        }
                    }
                    None if self.router.has_budgets() || self.providers[p].ledger.has_budgets() => {
                        money.push(format!(
                            "`{}` has a budget and the price of {} is unknown",
                            self.providers[p].name, kind.model
                        ));
                        continue;
                    }
                    None => {}
                }
                let now = self.now;
                let l = &mut self.lanes[lane];
                if l.blocked_until() > now {
                    let t = l.blocked_until();
                    if earliest.as_ref().is_none_or(|e| t < e.0) {
                        earliest = Some((t, lane, Vec::new()));
                    }
                    continue;
                }
                let full = l.full(now, &w);
                if full.is_empty() {
                    l.admit(now, w);
                    self.admitted(p, kind, cost);
                    return;
                }
                let t = l.room_at(now, &w);
                self.note_full(lane, &full);
                if earliest.as_ref().is_none_or(|e| t < e.0) {
                    earliest = Some((t, lane, full));
                }
            }
            match earliest {
                Some((t, lane, dims)) => {
                    let waited = t.saturating_sub(self.now);
                    if let Some(d) = dims.first() {
                        if let Some(r) = self
                            .rates
                            .iter_mut()
                            .find(|r| r.lane == lane && r.dim == *d)
                        {
                            r.waited = r.waited.saturating_add(waited);
                        }
                    }
                    self.now = t;
                }
                None => {
                    let reason = if money.is_empty() {
                        "no provider can take it".to_string()
                    } else {
                        format!("no budget can pay it: {}", money.join("; "))
                    };
                    self.not_served(kind, 1, reason);
                    return;
                }
            }
        }
    }

    fn admitted(&mut self, p: usize, kind: &KindPlan, cost: Option<u64>) {
        self.serial += 1;
        self.last_admit = Some(self.now);
        let images = kind.weight[2];
        if let Some(c) = cost {
            self.router.charge(c);
            self.providers[p].ledger.charge(c);
        }
        let usd = kind.cost_usd.unwrap_or(0.0);
        let t = &mut self.tallies[p];
        t.requests += 1;
        t.images = t.images.saturating_add(images);
        t.cost_usd += usd;
        t.last_serial = self.serial;
        self.served_requests += 1;
        self.served_images = self.served_images.saturating_add(images);
        self.cost_usd += usd;
        if kind.cost_usd.is_none() {
            self.unknown_price += 1;
        }
    }

    /// The limits and budgets that bound, in the order they started to.
    pub fn constraints(&self) -> Vec<super::report::Constraint> {
        use super::report::Constraint;
        let mut out: Vec<(u64, u64, Constraint)> = Vec::new();
        for b in &self.budgets {
            let then = self
                .providers
                .iter()
                .zip(&self.tallies)
                .enumerate()
                .filter(|(i, (_, t))| t.last_serial > b.serial && Some(*i) != b.provider)
                .map(|(_, (p, _))| p.name.clone())
                .collect();
            // What the budget buys: every image paid through the ledger in the whole run
            // (after the first refusal, a cheaper request may still fit what is left).
            let (ledger, after_images) = match b.provider {
                Some(p) => (self.providers[p].name.clone(), self.tallies[p].images),
                None => ("router".to_string(), self.served_images),
            };
            out.push((
                b.at,
                0,
                Constraint::Budget {
                    ledger,
                    budget: b.label.clone(),
                    after_images,
                    at_secs: b.at as f64 / NS,
                    resets_in_secs: b.resets_in_secs,
                    then,
                },
            ));
        }
        for r in &self.rates {
            let owner = &self.owners[r.lane];
            let provider = &self.providers[owner.provider];
            out.push((
                r.first_at,
                1,
                Constraint::RateLimit {
                    provider: provider.name.clone(),
                    model: owner.model.clone(),
                    tier: provider.tier.clone(),
                    dimension: r.dim,
                    limit: self.lanes[r.lane].caps().get(r.dim).unwrap_or(0),
                    at_secs: r.first_at as f64 / NS,
                    waited_secs: r.waited as f64 / NS,
                },
            ));
        }
        // Stable: at the same moment, a budget before a rate limit (it decides who serves).
        out.sort_by_key(|(at, order, _)| (*at, *order));
        out.into_iter().map(|(_, _, c)| c).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_window_takes_a_burst_then_opens_exactly_sixty_seconds_later() {
        let mut lane = Lane::new(Caps([Some(2), Some(1000), None]), [0; 3], 0);
        let w = [1, 400, 1];
        assert!(lane.full(0, &w).is_empty());
        lane.admit(0, w);
        lane.admit(5 * S, w);
        assert_eq!(
            lane.full(6 * S, &w),
            vec![Dimension::Requests, Dimension::Tokens]
        );
        assert_eq!(lane.full(6 * S, &[1, 100, 1]), vec![Dimension::Requests]);
        assert_eq!(lane.room_at(6 * S, &w), 60 * S);
        // After the first entry leaves, tokens bind: 400 + 700 > 1000 until the second leaves.
        let big = [1, 700, 1];
        assert_eq!(lane.full(60 * S, &big), vec![Dimension::Tokens]);
        assert_eq!(lane.room_at(60 * S, &big), 65 * S);
        assert_eq!(
            lane.never_fits(&[1, 1001, 1]),
            Some((Dimension::Tokens, 1000))
        );
        assert_eq!(lane.never_fits(&[1, 1000, 9]), None);
    }

    #[test]
    fn an_unlimited_lane_keeps_no_log() {
        let mut lane = Lane::new(Caps::default(), [0; 3], 0);
        for _ in 0..1000 {
            assert!(lane.full(0, &[1, 5000, 10]).is_empty());
            lane.admit(0, [1, 5000, 10]);
        }
        assert!(lane.log.is_empty());
        assert_eq!(lane.never_fits(&[1, u64::MAX, 10]), None);
    }

    #[test]
    fn used_capacity_and_blocks_delay_the_first_admission() {
        let lane = Lane::new(Caps([Some(3), None, Some(4)]), [3, 0, 3], 10 * S);
        assert_eq!(lane.room_at(0, &[1, 0, 1]), 60 * S);
        let lane = Lane::new(Caps([Some(3), None, Some(4)]), [0; 3], 10 * S);
        assert_eq!(lane.room_at(0, &[1, 0, 1]), 10 * S);
        assert_eq!(lane.blocked_until(), 10 * S);
    }

    #[test]
    fn ledgers_name_the_budget_that_cannot_pay() {
        let mut l = Ledger {
            lines: vec![
                BudgetLine {
                    label: "a".into(),
                    remaining: nano(1.0),
                    resets_in_secs: 5,
                },
                BudgetLine {
                    label: "b".into(),
                    remaining: nano(0.5),
                    resets_in_secs: 5,
                },
            ],
        };
        assert!(l.refuses(nano(0.5)).is_none());
        l.charge(nano(0.3));
        assert_eq!(l.refuses(nano(0.3)).map(|b| b.label.as_str()), Some("b"));
        assert_eq!(nano(f64::NAN), 0);
    }
}
