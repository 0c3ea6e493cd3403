//! The breaker's settings and their defaults, apart from the state machine so the knobs
//! and their documented bounds can be read (and validated by the config loader) on their own.

use std::time::Duration;

/// Breaker settings. `Default` gives the documented defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    /// Genuinely consecutive provider faults that open the breaker: a fault counts only if
    /// its call was admitted after the previous counted outcome was reported (faults of
    /// calls in flight together count once; see the module docs). Default 5. 0 disables
    /// this trigger. Any value is meaningful.
    pub consecutive_failures: u32,
    /// Failure ratio over `window` that opens the breaker (every fault counts here, also
    /// overlapping ones, but at least two of the faults must be independent; see the module
    /// docs). Default 0.5. Bounds: a finite number > 0; values > 1 disable it.
    pub failure_ratio: f64,
    /// Window for the failure ratio. Default 60 s. Bounds: > 0.
    pub window: Duration,
    /// Minimum outcomes in the window before the ratio can open the closed breaker (not
    /// used while recovering, see the module docs). Default 10. Any value (0 acts as 1).
    pub min_samples: u32,
    /// First cool-down after opening. Default 2 s (was 10 s): a blip of a few seconds costs
    /// a few seconds of detours. Bounds: > 0.
    pub cool_down: Duration,
    /// Cool-down multiplier after a failed probe. Default 2.0. Bounds: finite; values < 1
    /// are treated as 1 (no growth).
    pub cool_down_multiplier: f64,
    /// Cap of the growing cool-down: the longest a recovered provider waits for its next
    /// probe, and so how late recovery is noticed; a long outage costs one failed probe per
    /// this interval. Default 4 s (was 5 min), so traffic returns within about 5 s under a
    /// trickle of one request per second. Bounds: any duration; a cap below `cool_down` is
    /// read as `cool_down`.
    pub max_cool_down: Duration,
    /// Cool-down for access denied / authentication / not found. Default 10 min. Bounds: > 0.
    pub long_cool_down: Duration,
    /// Time for admitted traffic to ramp from `ramp_start` to 100 % after a good probe.
    /// Default 10 s (was 30 s: at a trickle of requests that kept most of a recovered
    /// provider's traffic on the fallback for half a minute). Zero closes the breaker
    /// straight after the probe. Bounds: any duration.
    pub ramp: Duration,
    /// Share of traffic admitted at the start of the ramp. Default 0.1. Bounds: 0..=1.
    pub ramp_start: f64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_ratio: 0.5,
            window: Duration::from_secs(60),
            min_samples: 10,
            cool_down: Duration::from_secs(2),
            cool_down_multiplier: 2.0,
            max_cool_down: Duration::from_secs(4),
            long_cool_down: Duration::from_secs(600),
            ramp: Duration::from_secs(10),
            ramp_start: 0.1,
        }
    }
}
