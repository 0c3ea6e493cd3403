//! Routing strategies: turn a candidate list into the order in which providers are tried.
//!
//! # Rules shared by every strategy
//!
//! * A candidate whose **breaker is open** (refusing: in its cool-down, or its probe is out) is
//!   **dropped** from the order and listed in [`Ranking::skipped`]: the breaker would refuse
//!   the call anyway, and the router records a skip for the attempt trace.
//! * A candidate **without headroom** is **moved last** (not dropped): the router's
//!   failover rule waits out `retry-after` only when no other provider can take the request,
//!   so the router still needs to know about it.
//! * Within those groups, candidates **preferred by the request's class** (see
//!   [`crate::request`]) come before the others.
//! * Inside each group the strategy decides:
//!   - [`Strategy::Ordered`]: strict configured priority (`ScoreInputs::priority`).
//!   - [`Strategy::Scored`] (default): best score first, the rest by score as fallbacks.
//!   - [`Strategy::Weighted`]: the first pick by *power of two choices*: two candidates are
//!     drawn at random with probability proportional to `weight × headroom`, and the one with
//!     more headroom (the less loaded; a tie keeps the first draw) wins. With equal headroom
//!     traffic splits exactly by weight; a busy provider is drawn less often *and* loses
//!     duels. The rest follow in score order as fallbacks. If every `weight × headroom` is 0
//!     it falls back to score order.
//!
//! Ties are broken by priority, then by candidate position, so rankings are deterministic
//! (the only randomness is `Weighted`'s draw, from the caller's RNG).
//!
//! # Cost
//!
//! [`Strategy::rank_into`] is a pure function that reuses the buffers of a [`Ranking`]: no
//! allocation once the buffers have grown to the provider count. Ranking 8 providers takes
//! well under a microsecond (see `benches/routing.rs`).

use std::cmp::Ordering;

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

use crate::score::{ScoreInputs, Scorer};

/// How to order the candidates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Strategy {
    /// Strict priority.
    Ordered,
    /// Best score first (the default).
    #[default]
    Scored,
    /// Power of two choices by weight × headroom for the first pick, then score order.
    Weighted,
}

/// One provider the request could go to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// The router's index of the provider (returned in the ranking).
    pub index: usize,
    /// Scoring inputs.
    pub inputs: ScoreInputs,
    /// The breaker refuses calls right now.
    pub breaker_open: bool,
    /// The limiter has no headroom for this request right now.
    pub no_headroom: bool,
    /// The request's class prefers this provider.
    pub preferred: bool,
}

impl Candidate {
    /// A candidate with default flags (breaker closed, headroom, not preferred).
    pub fn new(index: usize, inputs: ScoreInputs) -> Self {
        Self {
            index,
            inputs,
            breaker_open: false,
            no_headroom: false,
            preferred: false,
        }
    }
}

/// The order to try providers in, with reusable buffers.
#[derive(Clone, Debug, Default)]
pub struct Ranking {
    order: Vec<usize>,
    skipped: Vec<usize>,
    /// (group, key, priority, position) scratch per kept candidate.
    scratch: Vec<(u8, f64, usize, usize)>,
}

impl Ranking {
    /// An empty ranking.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty ranking with room for `n` providers.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            order: Vec::with_capacity(n),
            skipped: Vec::with_capacity(n),
            scratch: Vec::with_capacity(n),
        }
    }

    /// Provider indices in the order to try.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Provider indices dropped because their breaker is open.
    pub fn skipped(&self) -> &[usize] {
        &self.skipped
    }

    /// The first provider to try.
    pub fn first(&self) -> Option<usize> {
        self.order.first().copied()
    }

    /// The order to try providers in, taken out of the ranking (no copy).
    pub fn into_order(self) -> Vec<usize> {
        self.order
    }
}

fn sane(score: f64) -> f64 {
    if score.is_finite() && score > 0.0 {
        score
    } else {
        0.0
    }
}

impl Strategy {
    /// Ranks `candidates` into a new [`Ranking`].
    ///
    /// ```
    /// use image_router::score::{DefaultScorer, ScoreInputs};
    /// use image_router::{Candidate, Strategy};
    /// use rand::{rngs::SmallRng, SeedableRng};
    ///
    /// let slow = Candidate::new(0, ScoreInputs { latency_ms: 500.0, ..Default::default() });
    /// let fast = Candidate::new(1, ScoreInputs { latency_ms: 50.0, priority: 1, ..Default::default() });
    /// let mut rng = SmallRng::seed_from_u64(1);
    /// let ranking = Strategy::Scored.rank(&[slow, fast], &DefaultScorer::default(), &mut rng);
    /// assert_eq!(ranking.order(), &[1, 0]);
    /// ```
    pub fn rank(
        &self,
        candidates: &[Candidate],
        scorer: &dyn Scorer,
        rng: &mut dyn RngCore,
    ) -> Ranking {
        let mut out = Ranking::with_capacity(candidates.len());
        self.rank_into(candidates, scorer, rng, &mut out);
        out
    }

    /// Ranks `candidates` into `out`, reusing its buffers.
    pub fn rank_into(
        &self,
        candidates: &[Candidate],
        scorer: &dyn Scorer,
        rng: &mut dyn RngCore,
        out: &mut Ranking,
    ) {
        out.order.clear();
        out.skipped.clear();
        out.scratch.clear();
        // One candidate (a router with one provider): nothing to sort, whatever the strategy.
        if let [c] = candidates {
            if c.breaker_open {
                out.skipped.push(c.index);
            } else {
                out.order.push(c.index);
            }
            return;
        }
        let need_scores = !matches!(self, Strategy::Ordered);
        for (pos, c) in candidates.iter().enumerate() {
            if c.breaker_open {
                out.skipped.push(c.index);
                continue;
            }
            // Group: 0 preferred with headroom, 1 others with headroom, 2/3 the same without.
            let group = (u8::from(c.no_headroom) << 1) | u8::from(!c.preferred);
            let key = if need_scores {
                sane(scorer.score(&c.inputs).total)
            } else {
                0.0
            };
            out.scratch.push((group, key, c.inputs.priority, pos));
        }
        // Ordered: key is 0 for all, so this sorts by (group, priority, position).
        // Scored / Weighted: (group, score desc, priority, position).
        out.scratch.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| b.1.partial_cmp(&a.1).unwrap_or(Ordering::Equal))
                .then_with(|| a.2.cmp(&b.2))
                .then_with(|| a.3.cmp(&b.3))
        });
        if matches!(self, Strategy::Weighted) {
            if let Some(pick) = weighted_pick(candidates, &out.scratch, rng) {
                // Move the pick to the front; the others keep score order.
                out.scratch[..=pick].rotate_right(1);
            }
        }
        out.order.extend(
            out.scratch
                .iter()
                .map(|&(_, _, _, pos)| candidates[pos].index),
        );
    }
}

/// Power of two choices among the first group of `sorted`; returns a position in `sorted`.
fn weighted_pick(
    candidates: &[Candidate],
    sorted: &[(u8, f64, usize, usize)],
    rng: &mut dyn RngCore,
) -> Option<usize> {
    let first_group = sorted.first()?.0;
    let n = sorted.iter().take_while(|s| s.0 == first_group).count();
    let mass = |i: usize| -> f64 {
        let inputs = &candidates[sorted[i].3].inputs;
        let w = if inputs.weight.is_finite() {
            inputs.weight.max(0.0)
        } else {
            0.0
        };
        let h = if inputs.headroom.is_nan() {
            0.0
        } else {
            inputs.headroom.clamp(0.0, 1.0)
        };
        w * h
    };
    let total: f64 = (0..n).map(mass).sum();
    if !(total > 0.0 && total.is_finite()) {
        return None;
    }
    let mut draw = || -> usize {
        let mut x = rng.random::<f64>() * total;
        for i in 0..n {
            let m = mass(i);
            if x < m {
                return i;
            }
            x -= m;
        }
        // Rounding left a sliver: the last candidate with mass.
        (0..n).rev().find(|&i| mass(i) > 0.0).unwrap_or(0)
    };
    let a = draw();
    let b = draw();
    let headroom = |i: usize| candidates[sorted[i].3].inputs.headroom;
    Some(if headroom(b) > headroom(a) { b } else { a })
}
