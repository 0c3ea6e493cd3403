//! What the breaker shows the outside: its public state, the reasons it opened, the
//! transitions it reports and the rejections and snapshots it hands out. These are plain data
//! (serializable for the status page), kept apart from the state machine that produces them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::error::{AccessDenial, NotFoundKind};
use crate::serde_ms::{ser_ms, ser_opt_ms};

/// The breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BreakerState {
    /// Normal operation.
    Closed,
    /// Refusing all traffic until the cool-down ends.
    Open,
    /// Cool-down over: one probe is (or may be) out; everybody else is refused.
    HalfOpen,
    /// The probe succeeded; a growing share of traffic is admitted.
    Recovering,
}

impl BreakerState {
    /// Stable snake_case name for metrics labels and JSON.
    pub const fn as_str(&self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Recovering => "recovering",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An account or configuration problem that opens the breaker for the long cool-down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DenyReason {
    /// Access denied (tier, quota, verification, region, …).
    AccessDenied(AccessDenial),
    /// The key was rejected (401).
    Authentication,
    /// Model, deployment or endpoint not found.
    NotFound(NotFoundKind),
}

impl From<AccessDenial> for DenyReason {
    fn from(d: AccessDenial) -> Self {
        DenyReason::AccessDenied(d)
    }
}

impl From<NotFoundKind> for DenyReason {
    fn from(k: NotFoundKind) -> Self {
        DenyReason::NotFound(k)
    }
}

/// Why the breaker is (or was last) open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum OpenReason {
    /// This many consecutive provider faults.
    ConsecutiveFailures(u32),
    /// Failure ratio over the window reached the threshold.
    FailureRatio,
    /// The half-open probe failed (or was dropped without reporting).
    ProbeFailed,
    /// A provider fault during the recovery ramp.
    FailedWhileRecovering,
    /// An account or configuration problem (long cool-down).
    Denied(DenyReason),
}

/// A state change, returned to the caller that caused it and passed to the listener.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Transition {
    /// State before.
    pub from: BreakerState,
    /// State after.
    pub to: BreakerState,
    /// Clock time of the change.
    #[serde(serialize_with = "ser_ms")]
    pub at: Duration,
    /// When opening: why.
    pub reason: Option<OpenReason>,
}

/// Why a call was refused.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rejection {
    /// The breaker's state when refusing.
    pub state: BreakerState,
    /// Time until the breaker will consider traffic again (`None` when it depends on an
    /// outstanding probe, or when the ramp held this call back).
    #[serde(rename = "retry_in_ms", serialize_with = "ser_opt_ms")]
    pub retry_in: Option<Duration>,
    /// Why it was opened.
    pub reason: Option<OpenReason>,
    /// The provider's message for a [`DenyReason`] opening.
    pub message: Option<String>,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker {}", self.state)?;
        if let Some(r) = &self.reason {
            write!(f, " ({r:?})")?;
        }
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        if let Some(d) = self.retry_in {
            write!(f, "; retry in {:.1}s", d.as_secs_f64())?;
        }
        Ok(())
    }
}

/// Serializable breaker view.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BreakerSnapshot {
    /// Current state (open → half-open is reported as soon as the cool-down is over).
    pub state: BreakerState,
    /// Why it is / was last opened.
    pub reason: Option<OpenReason>,
    /// The provider's message for a deny opening.
    pub message: Option<String>,
    /// Time until the cool-down ends (open only).
    #[serde(rename = "retry_in_ms", serialize_with = "ser_opt_ms")]
    pub retry_in: Option<Duration>,
    /// Genuinely consecutive provider faults so far (faults of calls in flight together
    /// count once; see the module docs).
    pub consecutive_failures: u32,
    /// The cool-down in force for the current / next opening.
    #[serde(rename = "cool_down_ms", serialize_with = "ser_ms")]
    pub cool_down: Duration,
    /// Share of traffic currently admitted (0 open, 1 closed, the ramp value recovering).
    pub admitted_fraction: f64,
}

/// Listener for transitions.
pub type TransitionListener = Arc<dyn Fn(&Transition) + Send + Sync>;
