//! One `validate()` per settings type, called by both [`RouterBuilder::build`] and the
//! configuration file loader, so a setting the file refuses is refused by the builder too and
//! the other way round.
//!
//! Why here and as inherent impls: the rules were written twice (the file loader and the
//! builder) and had drifted apart (the file demanded `cool_down_multiplier >= 1`, the builder
//! took any finite value). Where the two differed the stricter rule was kept, except where a
//! value is documented as meaningful: `default_latency = 0` (optimistic, the default) and
//! `latency_slack = 0` (compare raw latencies) are accepted by both.
//!
//! Every error names the field as the file spells it *within its table*
//! (`cool_down_multiplier`, `latency_slack`, `safety_margin`); the caller adds the table:
//! the builder scopes with `breaker`, `health`, `providers[i]`, the file loader with
//! `router.breaker`, `router.health`, `provider[i]`, and adds the line.
//!
//! [`RouterBuilder::build`]: crate::router::RouterBuilder::build

use std::time::Duration;

use super::ProviderOptions;
use crate::breaker::BreakerConfig;
use crate::config_error::ConfigError;
use crate::health::HealthConfig;
use crate::score::ScoreWeights;

/// Most attempts a request may be given: more only multiplies the bill of a request that
/// fails everywhere.
pub(crate) const MAX_ATTEMPTS: u32 = 100;
/// Most buckets of the health window's ring.
pub(crate) const MAX_HEALTH_BUCKETS: u32 = 1024;

fn above_zero(field: &str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        Err(ConfigError::new(field, "must be above zero"))
    } else {
        Ok(())
    }
}

impl BreakerConfig {
    /// Rejects settings that cannot mean anything: a ratio that is NaN or not above 0, a
    /// ramp share outside 0..=1, a multiplier below 1 or not finite, a zero cool-down or
    /// window.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(self.failure_ratio.is_finite() && self.failure_ratio > 0.0) {
            return Err(ConfigError::new(
                "failure_ratio",
                format!(
                    "must be above 0 (above 1 disables it), got {}",
                    self.failure_ratio
                ),
            ));
        }
        if !(self.ramp_start.is_finite() && (0.0..=1.0).contains(&self.ramp_start)) {
            return Err(ConfigError::new(
                "ramp_start",
                format!(
                    "must be from 0 to 1 (a share of traffic), got {}",
                    self.ramp_start
                ),
            ));
        }
        if !(self.cool_down_multiplier.is_finite() && self.cool_down_multiplier >= 1.0) {
            return Err(ConfigError::new(
                "cool_down_multiplier",
                format!(
                    "must be 1 or more (1 keeps the cool-down fixed), got {}",
                    self.cool_down_multiplier
                ),
            ));
        }
        above_zero("cool_down", self.cool_down)?;
        above_zero("max_cool_down", self.max_cool_down)?;
        above_zero("long_cool_down", self.long_cool_down)?;
        above_zero("window", self.window)
    }
}

impl HealthConfig {
    /// Rejects a zero window or latency decay, a bucket count outside 1..=1024 and a zero
    /// idle decay (`None` turns it off). `default_latency` may be zero: that is the
    /// documented optimistic default.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        above_zero("window", self.window)?;
        if !(1..=MAX_HEALTH_BUCKETS).contains(&self.buckets) {
            return Err(ConfigError::new(
                "buckets",
                format!(
                    "must be from 1 to {MAX_HEALTH_BUCKETS}, got {}",
                    self.buckets
                ),
            ));
        }
        above_zero("latency_decay", self.latency_decay)?;
        if let Some(d) = self.idle_decay {
            above_zero("idle_decay", d)?;
        }
        Ok(())
    }
}

impl ScoreWeights {
    /// Rejects exponents that are negative or not finite, a negative or non-finite latency
    /// slack (0 compares raw latencies) and a headroom knee outside (0, 1].
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (k, x) in [
            ("availability", self.availability),
            ("latency", self.latency),
            ("headroom", self.headroom),
            ("budget", self.budget),
            ("priority", self.priority),
        ] {
            if !(x.is_finite() && x >= 0.0) {
                return Err(ConfigError::new(
                    k,
                    format!("must be an exponent of 0 or more, got {x}"),
                ));
            }
        }
        if !(self.latency_slack_ms.is_finite() && self.latency_slack_ms >= 0.0) {
            return Err(ConfigError::new(
                "latency_slack",
                format!(
                    "must be a duration of 0 or more, got {} ms",
                    self.latency_slack_ms
                ),
            ));
        }
        if !(self.headroom_knee > 0.0 && self.headroom_knee <= 1.0) {
            return Err(ConfigError::new(
                "headroom_knee",
                format!("must be above 0 and at most 1, got {}", self.headroom_knee),
            ));
        }
        Ok(())
    }
}

impl ProviderOptions {
    /// Rejects a zero `rpm`, `tpm` or `ipm`, a safety margin outside (0, 1] and a weight that is not
    /// a positive number. Budgets are checked when they are made ([`crate::Budget::new`]);
    /// the tier name against the catalog when the limits are resolved.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.rpm == Some(0) {
            return Err(ConfigError::new(
                "rpm",
                "must be a positive number of requests per minute, got 0 (leave it unset for no limit)",
            ));
        }
        if self.tpm == Some(0) {
            return Err(ConfigError::new(
                "tpm",
                "must be a positive number of tokens per minute, got 0 (leave it unset for no limit)",
            ));
        }
        if self.ipm == Some(0) {
            return Err(ConfigError::new(
                "ipm",
                "must be a positive number of images per minute, got 0 (leave it unset for no limit)",
            ));
        }
        if let Some(m) = self.safety_margin {
            if !(m > 0.0 && m <= 1.0) {
                return Err(ConfigError::new(
                    "safety_margin",
                    format!("must be above 0 and at most 1, got {m}"),
                ));
            }
        }
        if let Some(w) = self.weight {
            if !(w.is_finite() && w > 0.0) {
                return Err(ConfigError::new(
                    "weight",
                    format!("must be a positive number, got {w}"),
                ));
            }
        }
        Ok(())
    }
}

/// The request-level settings of the `[router]` table / the builder, as one value to check.
/// Field names in errors are the builder's (`attempt_timeout`); the file calls that one
/// `timeout` (see [`RequestSettings::file_key`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestSettings<'a> {
    /// Time one attempt may take.
    pub attempt_timeout: Duration,
    /// Time a whole request may take.
    pub deadline: Duration,
    /// Most provider calls per request.
    pub max_attempts: u32,
    /// Cool-down after denials.
    pub cooldown: Duration,
    /// Base of the retry backoff.
    pub retry_backoff: Duration,
    /// Wait after a 429 without `retry-after`.
    pub rate_limit_wait: Duration,
    /// Model used when a request names none.
    pub default_model: Option<&'a str>,
    /// Price per image for models without a catalog price.
    pub fallback_usd_per_image: Option<f64>,
}

impl RequestSettings<'_> {
    /// Rejects zero durations, `max_attempts` outside 1..=100, an empty default model and a
    /// fallback price that is not a positive number.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        above_zero("attempt_timeout", self.attempt_timeout)?;
        above_zero("deadline", self.deadline)?;
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(ConfigError::new(
                "max_attempts",
                format!(
                    "must be between 1 and {MAX_ATTEMPTS}, got {}",
                    self.max_attempts
                ),
            ));
        }
        above_zero("cooldown", self.cooldown)?;
        above_zero("retry_backoff", self.retry_backoff)?;
        above_zero("rate_limit_wait", self.rate_limit_wait)?;
        if self.default_model.is_some_and(|m| m.trim().is_empty()) {
            return Err(ConfigError::new("default_model", "must not be empty"));
        }
        if let Some(v) = self.fallback_usd_per_image {
            if !(v.is_finite() && v > 0.0) {
                return Err(ConfigError::new(
                    "fallback_usd_per_image",
                    format!("must be above 0, got {v}"),
                ));
            }
        }
        Ok(())
    }

    /// The `[router]` key for a field named in an error of [`validate`](Self::validate).
    pub(crate) fn file_key(field: &str) -> &str {
        match field {
            "attempt_timeout" => "timeout",
            other => other,
        }
    }
}
