//! The pass a caller holds for one call ([`BreakerPass`]) and what it reports back: apart
//! from the state machine because its drop rule (a lost probe is a failed probe) is the
//! caller-facing contract.

use std::fmt;

use serde::Serialize;

use super::{CircuitBreaker, DenyReason, Transition};

pub(super) enum Report {
    Effect(BreakerEffect),
    Dropped,
}

/// What a pass tells the breaker about its call when reporting.
#[derive(Clone, Copy)]
pub(super) struct PassReport {
    pub(super) probe: bool,
    /// The breaker's epoch when the pass was granted (stale reports are ignored).
    pub(super) epoch: u64,
    /// `Inner::counted` when the pass was granted: the call started after that many counted
    /// outcomes, so it overlapped any counted since.
    pub(super) seen: u64,
}

/// How one call counts for the breaker. The router's policy table
/// ([`crate::router::policy`]) computes it for each error kind; an [`Outcome`](crate::Outcome) converts into
/// it through the same table, so the breaker keeps no table of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerEffect {
    /// The provider served the call.
    Success,
    /// A provider fault.
    Failure,
    /// Says nothing about the provider (for a probe: the provider answered, a success).
    Neutral,
}

/// call says nothing about the provider).
#[must_use = "report the call's outcome with record() or open_for()"]
pub struct BreakerPass {
    pub(super) breaker: CircuitBreaker,
    pub(super) probe: bool,
    pub(super) epoch: u64,
    /// Outcomes counted into the consecutive run when this pass was granted.
    pub(super) seen: u64,
    pub(super) transition: Option<Transition>,
    pub(super) reported: bool,
}

impl fmt::Debug for BreakerPass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerPass")
            .field("probe", &self.probe)
            .finish_non_exhaustive()
    }
}

impl BreakerPass {
    /// Whether this is the single half-open probe. The router may send a cheap probe call
    /// (one that generates no image) instead of the real request, and must report it.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The transition that granting this pass caused (open → half-open for a probe), if any.
    pub fn transition(&self) -> Option<&Transition> {
        self.transition.as_ref()
    }

    /// Reports the call's outcome (an [`Outcome`](crate::Outcome) or the [`BreakerEffect`] the router's
    /// policy computed); returns the transition it caused, if any.
    pub fn record(mut self, outcome: impl Into<BreakerEffect>) -> Option<Transition> {
        self.reported = true;
        self.breaker
            .report(self.as_report(), Report::Effect(outcome.into()))
    }

    fn as_report(&self) -> PassReport {
        PassReport {
            probe: self.probe,
            epoch: self.epoch,
            seen: self.seen,
        }
    }

    /// Reports an account or configuration problem: opens the breaker with the long cool-down
    /// and keeps the reason and message (see [`CircuitBreaker::open_for`]).
    pub fn open_for(
        mut self,
        reason: impl Into<DenyReason>,
        message: impl Into<String>,
    ) -> Option<Transition> {
        self.reported = true;
        self.breaker.open_for_inner(reason.into(), message.into())
    }
}

impl Drop for BreakerPass {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.reported = true;
            let _ = self.breaker.report(self.as_report(), Report::Dropped);
        }
    }
}
