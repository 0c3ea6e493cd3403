//! One explainable score per provider.
//!
//! # Why a weighted product
//!
//! The score is a product of factors, each raised to a configurable exponent:
//!
//! ```text
//! score = availability^a × (1000 / latency_ms)^l × headroom^h × budget_left^b
//!       × (1 / (1 + priority))^p × weight
//! ```
//!
//! * A product lets one bad factor veto a provider (no headroom, dead availability) whatever
//!   the others say, which a weighted sum cannot do without special cases.
//! * Exponents are the weights: 0 switches a factor off (`x^0 = 1`), 1 takes it as is, 2
//!   makes it count double (in log space the score *is* a weighted sum, so the exponents
//!   compose like ordinary weights).
//! * The source material's region formula `availability × 1000 / latency_ms` is exactly
//!   [`ScoreWeights::REGION`] (`a = 1, l = 1`, everything else 0) with the user weight 1.
//! * Every factor is kept in a [`ScoreBreakdown`] so a ranking can be explained
//!   ("B won: 3.1× faster, same availability").
//!
//! Inputs are sanitized, never trusted: availability, headroom and budget are clamped to
//! `0..=1` (NaN → 0), latency to at least 1 ms, the weight to `>= 0`.
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

/// Exponents of the score's factors (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScoreWeights {
    /// Exponent of availability.
    pub availability: f64,
    /// Exponent of `1000 / latency_ms`.
    pub latency: f64,
    /// Exponent of headroom.
    pub headroom: f64,
    /// Exponent of the budget left.
    pub budget: f64,
    /// Exponent of `1 / (1 + priority)`.
    pub priority: f64,
}

impl ScoreWeights {
    /// The defaults: availability 2 (reliability matters most: 90 % availability costs 19 %
    /// of the score), latency 1, headroom 1, budget 0.5, priority 0.25 (the configured order
    /// breaks near-ties: second place needs ~19 % better latency to win).
    pub const DEFAULT: ScoreWeights = ScoreWeights {
        availability: 2.0,
        latency: 1.0,
        headroom: 1.0,
        budget: 0.5,
        priority: 0.25,
    };

    /// The source material's region formula: `availability × 1000 / latency_ms`.
    pub const REGION: ScoreWeights = ScoreWeights {
        availability: 1.0,
        latency: 1.0,
        headroom: 0.0,
        budget: 0.0,
        priority: 0.0,
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
    /// `(1000 / latency_ms)^l`.
    pub latency: f64,
    /// `headroom^h`.
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
        let latency = pow(1000.0 / latency_ms, w.latency);
        let headroom = pow(clean.headroom, w.headroom);
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
