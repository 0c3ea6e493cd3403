//! One explainable score per provider.
//!
//! # Why a weighted product
//!
//! The score is a product of factors, each raised to a configurable exponent:
//!
//! ```text
//! score = availability^a × (1000 / (latency_ms + slack))^l × min(1, headroom / knee)^h
//!       × budget_left^b × (1 / (1 + priority))^p × weight
//! ```
//!
//! * A product lets one bad factor veto a provider (no headroom, dead availability) whatever
//!   the others say, which a weighted sum cannot do without special cases.
//! * Exponents are the weights: 0 switches a factor off (`x^0 = 1`), 1 takes it as is, 2
//!   makes it count double (in log space the score *is* a weighted sum, so the exponents
//!   compose like ordinary weights).
//! * The region-routing formula `availability × 1000 / latency_ms` (a provider's availability
//!   per millisecond of latency) is exactly
//!   [`ScoreWeights::REGION`] (`a = 1, l = 1`, everything else 0, no slack, knee 1) with the
//!   user weight 1.
//! * Every factor is kept in a [`ScoreBreakdown`] so a ranking can be explained
//!   ("B won: 3.1× faster, same availability").
//!
//! # Why the defaults keep the configured order unless another provider is clearly better
//!
//! `Scored` is the router's default strategy, so its defaults must keep the router's
//! promise: providers are tried in the order they were configured while they are comparably
//! good. Three choices make that hold without a special case:
//!
//! * **Priority counts fully** (`p = 1`): the second provider's score is halved, the third's
//!   divided by three. A fallback overtakes the primary only when it is about twice as good:
//!   twice as fast, or the primary's availability fell below ~70 %, or the primary is within
//!   ~10 % of its rate limit.
//! * **Latency slack** (`latency_slack_ms`, default 100 ms) is added to every latency before
//!   comparing. Image generation takes seconds, so differences of a few milliseconds are
//!   noise (a scheduler hiccup, a pause in a proxy), and the peak-EWMA adopts any slow
//!   observation at once. Without slack a 3 ms blip would reorder two providers that answer
//!   in 1 ms; with it only differences that matter against ~100 ms move traffic, while real
//!   differences (50 ms vs 500 ms, 8 s vs 20 s) keep nearly their full weight.
//! * **Headroom knee** (`headroom_knee`, default 0.05): headroom above the knee counts as
//!   full; below it the factor falls linearly to 0 at exhaustion. Low headroom predicts 429s
//!   and queueing, which only happen at the very end of a window; spreading load while a
//!   provider is at 60 % of its limit is load balancing, the job of
//!   [`Weighted`](crate::strategy::Strategy::Weighted), and would send work to a fallback
//!   while the account the user put first still has room. With the knee at 5 % and priority
//!   halving the second provider's score, a primary with a limit of up to 40 requests per
//!   minute (every published image tier up to tier 3) serves all of them before the next
//!   provider takes over; on larger limits the hand-over starts in the last 2.5 %.
//!
//! An unmeasured provider is assumed fast (see
//! [`HealthConfig::default_latency`](crate::health::HealthConfig::default_latency)): it is
//! tried once early (one of the first requests goes to it even while the providers before it
//! are fine), measured, and from then on judged on data, instead of being starved forever
//! behind a provider that happens to have been measured first. Set `default_latency` to a
//! realistic value (e.g. the primary's typical latency) to keep unmeasured providers
//! behind comparable measured ones instead. An *idle*
//! provider's estimate decays (so it gets re-measured) but never below the best latency
//! measured among the candidates, so staleness alone never reorders comparable providers.
//!
//! Inputs are sanitized, never trusted: availability, headroom and budget are clamped to
//! `0..=1` (NaN → 0), latency to at least 1 ms, the weight to `>= 0`; a negative or
//! non-finite slack counts as 0, a knee outside `(0, 1]` as 1.
//!
//! Speed: exponents 0, 1, 2, 0.5 and 0.25 are computed without `powf`, so the default
//! weights cost a few multiplications and square roots per provider.

use serde::{Deserialize, Serialize};

/// What the scorer knows about one provider for one request.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreInputs {
    /// Success ratio over the health window, 0..=1 (1 when unknown).
    pub availability: f64,
    /// Latency estimate in ms, including the in-flight penalty: pass
    /// [`Health::cost_ms`](crate::health::Health::cost_ms).
    pub latency_ms: f64,
    /// Rate-limit headroom from the limiter and live headers, 0..=1 (1 = idle).
    pub headroom: f64,
    /// Share of the spend budget left, 0..=1; `None` = no budget configured.
    pub budget_left: Option<f64>,
    /// Position in the configured provider order (0 = first).
    pub priority: usize,
    /// User weight (default 1.0).
    pub weight: f64,
}

impl Default for ScoreInputs {
    fn default() -> Self {
        Self {
            availability: 1.0,
            latency_ms: 1000.0,
            headroom: 1.0,
            budget_left: None,
            priority: 0,
            weight: 1.0,
        }
    }
}

/// Exponents of the score's factors and the two shape parameters (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScoreWeights {
    /// Exponent of availability.
    pub availability: f64,
    /// Exponent of `1000 / (latency_ms + latency_slack_ms)`.
    pub latency: f64,
    /// Exponent of the headroom factor `min(1, headroom / headroom_knee)`.
    pub headroom: f64,
    /// Exponent of the budget left.
    pub budget: f64,
    /// Exponent of `1 / (1 + priority)`.
    pub priority: f64,
    /// Milliseconds added to every latency before comparing, so differences that are small
    /// against it (measurement noise) do not reorder providers. 0 compares raw latencies.
    pub latency_slack_ms: f64,
    /// Headroom at or above this counts as full; below it the factor falls linearly to 0.
    /// 1 makes the factor the raw headroom.
    pub headroom_knee: f64,
}

impl ScoreWeights {
    /// The defaults: availability 2 (reliability matters most: 90 % availability costs 19 %
    /// of the score), latency 1 with 100 ms slack, headroom 1 with knee 0.05, budget 0.5,
    /// priority 1 (a fallback must be about twice as good to overtake the provider before
    /// it; see the module docs for why).
    pub const DEFAULT: ScoreWeights = ScoreWeights {
        availability: 2.0,
        latency: 1.0,
        headroom: 1.0,
        budget: 0.5,
        priority: 1.0,
        latency_slack_ms: 100.0,
        headroom_knee: 0.05,
    };

    /// The region-routing formula: `availability × 1000 / latency_ms`.
    pub const REGION: ScoreWeights = ScoreWeights {
        availability: 1.0,
        latency: 1.0,
        headroom: 0.0,
        budget: 0.0,
        priority: 0.0,
        latency_slack_ms: 0.0,
        headroom_knee: 1.0,
    };
}

impl Default for ScoreWeights {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Every component of a score, and the total. Factors are after the exponent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ScoreBreakdown {
    /// The (sanitized) inputs.
    pub inputs: ScoreInputs,
    /// `availability^a`.
    pub availability: f64,
    /// `(1000 / (latency_ms + slack))^l`.
    pub latency: f64,
    /// `min(1, headroom / knee)^h`.
    pub headroom: f64,
    /// `budget_left^b` (1 without a budget).
    pub budget: f64,
    /// `(1 / (1 + priority))^p`.
    pub priority: f64,
    /// The user weight.
    pub weight: f64,
    /// The product: higher is better.
    pub total: f64,
}

/// Turns [`ScoreInputs`] into a score. Object safe: use `&dyn Scorer` / `Arc<dyn Scorer>`
/// to plug in your own.
///
/// ```
/// use image_router::score::{ScoreBreakdown, ScoreInputs, Scorer};
///
/// /// Cheapest-first: only the budget left matters.
/// struct BudgetFirst;
/// impl Scorer for BudgetFirst {
///     fn score(&self, inputs: &ScoreInputs) -> ScoreBreakdown {
///         let budget = inputs.budget_left.unwrap_or(1.0);
///         ScoreBreakdown { inputs: *inputs, budget, total: budget, ..Default::default() }
///     }
/// }
/// let s: &dyn Scorer = &BudgetFirst;
/// assert_eq!(s.score(&ScoreInputs { budget_left: Some(0.5), ..Default::default() }).total, 0.5);
/// ```
pub trait Scorer: Send + Sync {
    /// The score and its components for one provider. Higher total is better; must be finite
    /// and `>= 0` (the strategies treat anything else as 0).
    fn score(&self, inputs: &ScoreInputs) -> ScoreBreakdown;
}

/// The weighted-product scorer described in the module docs.
///
/// ```
/// use image_router::score::{DefaultScorer, ScoreInputs, ScoreWeights, Scorer};
///
/// let region = DefaultScorer::new(ScoreWeights::REGION);
/// let s = region.score(&ScoreInputs { availability: 0.9, latency_ms: 250.0, ..Default::default() });
/// assert!((s.total - 0.9 * 1000.0 / 250.0).abs() < 1e-9);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DefaultScorer {
    /// The exponents.
    pub weights: ScoreWeights,
}

impl DefaultScorer {
    /// A scorer with these exponents.
    pub const fn new(weights: ScoreWeights) -> Self {
        Self { weights }
    }
}

fn unit(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

/// `x^e` with fast paths for the common exponents. `x >= 0`.
fn pow(x: f64, e: f64) -> f64 {
    if e == 0.0 {
        1.0
    } else if e == 1.0 {
        x
    } else if e == 2.0 {
        x * x
    } else if e == 0.5 {
        x.sqrt()
    } else if e == 0.25 {
        x.sqrt().sqrt()
    } else if e.is_finite() {
        x.powf(e)
    } else {
        1.0
    }
}

impl Scorer for DefaultScorer {
    fn score(&self, inputs: &ScoreInputs) -> ScoreBreakdown {
        let w = &self.weights;
        let latency_ms = if inputs.latency_ms.is_nan() {
            f64::MAX
        } else {
            inputs.latency_ms.max(1.0)
        };
        let clean = ScoreInputs {
            availability: unit(inputs.availability),
            latency_ms,
            headroom: unit(inputs.headroom),
            budget_left: inputs.budget_left.map(unit),
            priority: inputs.priority,
            weight: if inputs.weight.is_finite() {
                inputs.weight.max(0.0)
            } else {
                0.0
            },
        };
        let availability = pow(clean.availability, w.availability);
        let slack = if w.latency_slack_ms.is_finite() {
            w.latency_slack_ms.max(0.0)
        } else {
            0.0
        };
        let knee = if w.headroom_knee > 0.0 && w.headroom_knee <= 1.0 {
            w.headroom_knee
        } else {
            1.0
        };
        let latency = pow(1000.0 / (latency_ms + slack), w.latency);
        let headroom = pow((clean.headroom / knee).min(1.0), w.headroom);
        let budget = clean.budget_left.map_or(1.0, |b| pow(b, w.budget));
        let priority = pow(1.0 / (1.0 + clean.priority as f64), w.priority);
        let total = availability * latency * headroom * budget * priority * clean.weight;
        ScoreBreakdown {
            inputs: clean,
            availability,
            latency,
            headroom,
            budget,
            priority,
            weight: clean.weight,
            total: if total.is_finite() { total } else { 0.0 },
        }
    }
}
