//! The state machine behind [`CircuitBreaker`]: the private state, how an outcome moves it
//! (`record_locked`), opening, closing and the recovery ramp. Apart from the public API in
//! the module root so the transitions can be read in one place.

use std::time::Duration;

use super::pass::{PassReport, Report};
use super::{
    BreakerConfig, BreakerEffect, BreakerState, CircuitBreaker, OpenReason, Rejection, Transition,
};
use crate::health::WindowCounter;

#[derive(Debug, Clone, Copy)]
pub(super) enum State {
    Closed,
    Open { until: Duration },
    HalfOpen { probe_out: bool },
    Recovering { since: Duration },
}

impl State {
    pub(super) fn public(&self) -> BreakerState {
        match self {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
            State::Recovering { .. } => BreakerState::Recovering,
        }
    }
}

pub(super) struct Inner {
    pub(super) state: State,
    /// Bumped on every transition; passes remember it so stale reports are ignored.
    pub(super) epoch: u64,
    pub(super) consecutive: u32,
    /// Outcomes counted into the consecutive run so far (successes and counted failures).
    /// A pass remembers it when granted; a failure whose pass saw an older value overlapped
    /// a counted outcome and does not extend the run (see the module docs).
    pub(super) counted: u64,
    pub(super) window: WindowCounter,
    /// The failures in `window` that were counted into a run (did not overlap a counted
    /// outcome): the ratio needs two of them, so one stall is never enough on its own.
    pub(super) independent: WindowCounter,
    /// Cool-down used for the current opening.
    pub(super) cool_down: Duration,
    /// Cool-down a failed probe would use next (grows, reset on close).
    pub(super) next_cool_down: Duration,
    pub(super) reason: Option<OpenReason>,
    pub(super) message: Option<String>,
    /// Admission credit while recovering: each asking call adds the current share, a call
    /// is admitted when a whole unit has built up (see the module docs).
    pub(super) ramp_credit: f64,
}

impl CircuitBreaker {
    pub(super) fn notify(&self, transitions: &Transitions) {
        if transitions.is_empty() {
            return;
        }
        let listener = self.shared.listener.lock().clone();
        if let Some(listener) = listener {
            for t in transitions.iter() {
                listener(t);
            }
        }
    }

    pub(super) fn go(
        &self,
        inner: &mut Inner,
        to: State,
        now: Duration,
        reason: Option<OpenReason>,
        transitions: &mut Transitions,
    ) {
        let from = inner.state.public();
        if matches!(to, State::Recovering { .. }) {
            // Half a unit: the first call is admitted once the share reaches 50 %, rounding
            // the admitted count to the nearest whole instead of always down.
            inner.ramp_credit = 0.5;
        }
        inner.state = to;
        inner.epoch = inner.epoch.wrapping_add(1);
        if to.public() != from {
            transitions.push(Transition {
                from,
                to: to.public(),
                at: now,
                reason,
            });
        }
    }

    pub(super) fn open(
        &self,
        inner: &mut Inner,
        now: Duration,
        cool_down: Duration,
        reason: OpenReason,
        transitions: &mut Transitions,
    ) {
        if !matches!(reason, OpenReason::Denied(_)) {
            inner.message = None;
        }
        inner.reason = Some(reason);
        inner.cool_down = cool_down;
        inner.window.clear();
        inner.independent.clear();
        let until = now.saturating_add(cool_down);
        self.go(inner, State::Open { until }, now, Some(reason), transitions);
    }

    /// The cool-down after a failed probe: the growing one, capped.
    pub(super) fn grow_cool_down(&self, inner: &mut Inner) -> Duration {
        let config = &self.shared.config;
        let cap = config.max_cool_down.max(inner.cool_down);
        let current = inner.next_cool_down.max(inner.cool_down);
        let mult = if config.cool_down_multiplier.is_finite() {
            config.cool_down_multiplier.max(1.0)
        } else {
            1.0
        };
        let grown = Duration::try_from_secs_f64(current.as_secs_f64() * mult).unwrap_or(cap);
        let next = grown.min(cap);
        inner.next_cool_down = next;
        next
    }

    /// A probe's report: a failure re-opens with a grown cool-down, anything else starts the
    /// recovery ramp (or closes at once when there is no ramp). Stale probes are ignored.
    fn record_probe(
        &self,
        inner: &mut Inner,
        now: Duration,
        verdict: BreakerEffect,
        pass: PassReport,
        transitions: &mut Transitions,
    ) {
        let config = &self.shared.config;
        // A report from a probe of an earlier half-open period is stale.
        if pass.epoch != inner.epoch || !matches!(inner.state, State::HalfOpen { .. }) {
            return;
        }
        if verdict == BreakerEffect::Failure {
            let cool = self.grow_cool_down(inner);
            self.open(inner, now, cool, OpenReason::ProbeFailed, transitions);
        } else {
            inner.consecutive = 0;
            inner.counted = inner.counted.wrapping_add(1);
            inner.reason = None;
            inner.message = None;
            if config.ramp.is_zero() {
                self.close(inner, now, transitions);
            } else {
                self.go(
                    inner,
                    State::Recovering { since: now },
                    now,
                    None,
                    transitions,
                );
                // The ramp's failure ratio is taken over the outcomes since this probe,
                // the probe being the first success (see the module docs).
                inner.window.clear();
                inner.independent.clear();
                inner.window.record(now, true);
            }
        }
    }

    pub(super) fn record_locked(
        &self,
        inner: &mut Inner,
        now: Duration,
        verdict: BreakerEffect,
        pass: PassReport,
        transitions: &mut Transitions,
    ) {
        if pass.probe {
            self.record_probe(inner, now, verdict, pass, transitions);
            return;
        }
        let config = &self.shared.config;
        // A call admitted in an earlier state (e.g. before an outage opened the breaker)
        // reporting late only counts once the breaker is closed again: it must not re-open a
        // recovering breaker or touch the bookkeeping of an open one.
        if pass.epoch != inner.epoch && !matches!(inner.state, State::Closed) {
            return;
        }
        match verdict {
            BreakerEffect::Neutral => {}
            BreakerEffect::Success => {
                inner.consecutive = 0;
                inner.counted = inner.counted.wrapping_add(1);
                inner.window.record(now, true);
            }
            BreakerEffect::Failure => {
                // Genuinely consecutive only if no outcome was counted while this call was
                // in flight; otherwise it overlapped that outcome and adds nothing to the run.
                if pass.seen == inner.counted {
                    inner.consecutive = inner.consecutive.saturating_add(1);
                    inner.counted = inner.counted.wrapping_add(1);
                    inner.independent.record(now, false);
                }
                inner.window.record(now, false);
                let run = config.consecutive_failures > 0
                    && inner.consecutive >= config.consecutive_failures;
                let (s, f) = inner.window.counts(now);
                let total = s.saturating_add(f);
                let ratio = total > 0 && f64::from(f) / f64::from(total) >= config.failure_ratio;
                match inner.state {
                    State::Closed => {
                        if run {
                            let reason = OpenReason::ConsecutiveFailures(inner.consecutive);
                            let cool = config.cool_down;
                            self.open(inner, now, cool, reason, transitions);
                        } else if ratio
                            && total >= config.min_samples.max(1)
                            && inner.independent.counts(now).1 >= 2
                        {
                            let cool = config.cool_down;
                            self.open(inner, now, cool, OpenReason::FailureRatio, transitions);
                        }
                    }
                    // While ramping the ratio needs no minimum volume: the window holds only
                    // the outcomes since the good probe.
                    State::Recovering { .. } if run || ratio => {
                        let cool = self.grow_cool_down(inner);
                        let reason = OpenReason::FailedWhileRecovering;
                        self.open(inner, now, cool, reason, transitions);
                    }
                    // A healthy provider's occasional fault while ramping; or a late report
                    // of a call admitted before the breaker opened.
                    State::Recovering { .. } | State::Open { .. } | State::HalfOpen { .. } => {}
                }
            }
        }
    }

    pub(super) fn close(&self, inner: &mut Inner, now: Duration, transitions: &mut Transitions) {
        inner.next_cool_down = self.shared.config.cool_down;
        inner.cool_down = self.shared.config.cool_down;
        inner.consecutive = 0;
        inner.window.clear();
        inner.independent.clear();
        self.go(inner, State::Closed, now, None, transitions);
    }

    pub(super) fn report(&self, pass: PassReport, report: Report) -> Option<Transition> {
        let now = self.shared.clock.now();
        let mut transitions = Transitions::default();
        {
            let mut inner = self.shared.inner.lock();
            match report {
                Report::Effect(effect) => {
                    self.record_locked(&mut inner, now, effect, pass, &mut transitions)
                }
                Report::Dropped => {
                    if pass.probe {
                        self.record_locked(
                            &mut inner,
                            now,
                            BreakerEffect::Failure,
                            pass,
                            &mut transitions,
                        )
                    }
                }
            }
            // Ramp complete: close on the next report too, not only on acquire.
            if let State::Recovering { since } = inner.state {
                if now.saturating_sub(since) >= self.shared.config.ramp {
                    self.close(&mut inner, now, &mut transitions);
                }
            }
        }
        self.notify(&transitions);
        transitions.last()
    }
}

pub(super) fn ramp_share(config: &BreakerConfig, elapsed: Duration) -> f64 {
    if config.ramp.is_zero() {
        return 1.0;
    }
    let start = if config.ramp_start.is_finite() {
        config.ramp_start.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let progress = (elapsed.as_secs_f64() / config.ramp.as_secs_f64()).clamp(0.0, 1.0);
    start + (1.0 - start) * progress
}

pub(super) fn rejection(inner: &Inner, retry_in: Option<Duration>) -> Rejection {
    Rejection {
        state: inner.state.public(),
        retry_in,
        reason: inner.reason,
        message: inner.message.clone(),
    }
}

/// At most two transitions happen in one step (e.g. open → half-open on acquire); a tiny
/// inline buffer avoids allocating on the hot path.
#[derive(Default)]
pub(super) struct Transitions {
    items: [Option<Transition>; 2],
}

impl Transitions {
    pub(super) fn push(&mut self, t: Transition) {
        if let Some(slot) = self.items.iter_mut().find(|s| s.is_none()) {
            *slot = Some(t);
        } else {
            // Keep the latest when more than two happen (not expected).
            self.items[1] = Some(t);
        }
    }
    pub(super) fn is_empty(&self) -> bool {
        self.items[0].is_none()
    }
    pub(super) fn iter(&self) -> impl Iterator<Item = &Transition> {
        self.items.iter().flatten()
    }
    pub(super) fn last(&self) -> Option<Transition> {
        self.iter().last().cloned()
    }
}
