//! Circuit breaker: opening, the single probe, the recovery ramp, growing cool-downs,
//! long cool-downs for account problems, and a simulated flap.

use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use image_router::breaker::{
    BreakerConfig, BreakerState, CircuitBreaker, DenyReason, OpenReason, Transition,
};
use image_router::clock::{ManualClock, SharedClock};
use image_router::{AccessDenial, Outcome};

const S: fn(u64) -> Duration = Duration::from_secs;

fn setup(config: BreakerConfig) -> (ManualClock, CircuitBreaker) {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new(config, Arc::new(clock.clone()) as SharedClock);
    (clock, b)
}

/// The cool-downs and ramp these mechanics tests were written against (10 s doubling up to
/// 5 min, 30 s ramp); the defaults are shorter (see `defaults_notice_recovery_in_seconds`).
fn slow_probing() -> BreakerConfig {
    BreakerConfig {
        cool_down: S(10),
        max_cool_down: S(300),
        ramp: S(30),
        ..BreakerConfig::default()
    }
}

fn fail(b: &CircuitBreaker, n: usize) {
    for _ in 0..n {
        let _ = b.acquire().expect("admitted").record(Outcome::Server);
    }
}

#[test]
fn opens_after_n_consecutive_failures_and_success_resets_the_count() {
    let (_c, b) = setup(BreakerConfig {
        consecutive_failures: 3,
        failure_ratio: 2.0,
        ..slow_probing()
    });
    fail(&b, 2);
    let _ = b.acquire().unwrap().record(Outcome::Success);
    fail(&b, 2);
    assert_eq!(b.state(), BreakerState::Closed);
    let t = b
        .acquire()
        .unwrap()
        .record(Outcome::Timeout)
        .expect("transition");
    assert_eq!((t.from, t.to), (BreakerState::Closed, BreakerState::Open));
    assert_eq!(t.reason, Some(OpenReason::ConsecutiveFailures(3)));
    let rej = b.acquire().unwrap_err();
    assert_eq!(rej.state, BreakerState::Open);
    assert_eq!(rej.retry_in, Some(S(10)));
}

#[test]
fn opens_on_failure_ratio_after_min_samples() {
    let (_c, b) = setup(BreakerConfig {
        consecutive_failures: 0,
        failure_ratio: 0.5,
        min_samples: 10,
        ..BreakerConfig::default()
    });
    for i in 0..9 {
        let o = if i % 2 == 0 {
            Outcome::Success
        } else {
            Outcome::Connect
        };
        let _ = b.acquire().unwrap().record(o);
        assert_eq!(b.state(), BreakerState::Closed, "after {} samples", i + 1);
    }
    // 10th sample: 5 failures of 10.
    let t = b.acquire().unwrap().record(Outcome::Decode).expect("opens");
    assert_eq!(t.reason, Some(OpenReason::FailureRatio));
}

#[test]
fn caller_faults_and_rate_limits_do_not_open() {
    let (_c, b) = setup(BreakerConfig {
        consecutive_failures: 2,
        min_samples: 2,
        ..BreakerConfig::default()
    });
    for o in [
        Outcome::RateLimited,
        Outcome::InvalidRequest,
        Outcome::ContentPolicy,
    ] {
        for _ in 0..5 {
            assert!(b.acquire().unwrap().record(o).is_none());
        }
    }
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.snapshot().consecutive_failures, 0);
}

#[test]
fn exactly_one_probe_after_the_cool_down_even_under_concurrency() {
    let (clock, b) = setup(BreakerConfig {
        consecutive_failures: 1,
        ..slow_probing()
    });
    fail(&b, 1);
    clock.advance(S(10) - Duration::from_millis(1));
    assert!(b.acquire().is_err(), "still cooling down");
    clock.advance(Duration::from_millis(1));
    assert_eq!(b.state(), BreakerState::HalfOpen);

    let threads = 8;
    let barrier = Barrier::new(threads);
    let passes: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    b.acquire().ok()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let granted: Vec<_> = passes.into_iter().flatten().collect();
    assert_eq!(granted.len(), 1, "one probe only");
    assert!(granted[0].is_probe());
    let t = granted[0].transition().expect("open -> half-open");
    assert_eq!((t.from, t.to), (BreakerState::Open, BreakerState::HalfOpen));
    // Still refused while the probe is out, however long it takes.
    clock.advance(S(120));
    let rej = b.acquire().unwrap_err();
    assert_eq!(rej.state, BreakerState::HalfOpen);
    assert_eq!(rej.retry_in, None);
}

#[test]
fn probe_success_ramps_traffic_back_gradually_then_closes() {
    let (clock, b) = setup(BreakerConfig {
        consecutive_failures: 1,
        ramp: S(100),
        ramp_start: 0.1,
        ..BreakerConfig::default()
    });
    fail(&b, 1);
    clock.advance(S(10));
    let probe = b.acquire().unwrap();
    let t = probe.record(Outcome::Success).unwrap();
    assert_eq!(t.to, BreakerState::Recovering);

    let calls = 4000;
    let mut previous = 0.0;
    clock.advance(S(5));
    for step in 0..10u32 {
        // Measure in the middle of each tenth of the ramp.
        let elapsed = f64::from(step) * 10.0 + 5.0;
        let admitted = (0..calls)
            .filter(|_| match b.acquire() {
                Ok(pass) => {
                    let _ = pass.record(Outcome::Success);
                    true
                }
                Err(rej) => {
                    assert_eq!(rej.state, BreakerState::Recovering);
                    false
                }
            })
            .count();
        let share = admitted as f64 / f64::from(calls);
        let expected = 0.1 + 0.9 * elapsed / 100.0;
        // Counted, not drawn: the share is exact up to one call.
        assert!(
            (share - expected).abs() <= 1.0 / f64::from(calls),
            "step {step}: admitted {share:.3}, expected {expected:.3}"
        );
        assert!(share > previous, "admitted share rises");
        previous = share;
        clock.advance(S(10));
        let snap = b.snapshot();
        if step < 9 {
            assert_eq!(snap.state, BreakerState::Recovering);
        }
    }
    // Ramp over (105 s after the probe): closed, everything admitted.
    let pass = b.acquire().unwrap();
    assert_eq!(pass.transition().map(|t| t.to), Some(BreakerState::Closed));
    let _ = pass.record(Outcome::Success);
    assert!((0..1000).all(|_| b.acquire().is_ok()));
    assert_eq!(b.snapshot().admitted_fraction, 1.0);
}

#[test]
fn failed_probes_grow_the_cool_down_up_to_the_cap_and_close_resets_it() {
    let (clock, b) = setup(BreakerConfig {
        consecutive_failures: 1,
        cool_down: S(10),
        cool_down_multiplier: 2.0,
        max_cool_down: S(35),
        ramp: Duration::ZERO,
        ..BreakerConfig::default()
    });
    fail(&b, 1);
    // Each failed probe: 10 → 20 → 35 (capped) → 35.
    for (cool, next) in [
        (S(10), S(20)),
        (S(20), S(35)),
        (S(35), S(35)),
        (S(35), S(35)),
    ] {
        assert_eq!(b.snapshot().retry_in, Some(cool));
        clock.advance(cool - Duration::from_millis(1));
        assert!(b.acquire().is_err(), "refused until the cool-down ends");
        clock.advance(Duration::from_millis(1));
        let probe = b.acquire().unwrap();
        assert!(probe.is_probe());
        let t = probe.record(Outcome::Timeout).unwrap();
        assert_eq!(t.reason, Some(OpenReason::ProbeFailed));
        assert_eq!(b.snapshot().cool_down, next);
    }
    // Recover (ramp zero: the good probe closes straight away); the cool-down resets.
    clock.advance(S(35));
    let t = b.acquire().unwrap().record(Outcome::Success).unwrap();
    assert_eq!(t.to, BreakerState::Closed);
    assert_eq!(b.snapshot().cool_down, S(10));
}

#[test]
fn dropped_probe_counts_as_failure() {
    let (clock, b) = setup(BreakerConfig {
        consecutive_failures: 1,
        ..slow_probing()
    });
    fail(&b, 1);
    clock.advance(S(10));
    let probe = b.acquire().unwrap();
    drop(probe);
    let snap = b.snapshot();
    assert_eq!(snap.state, BreakerState::Open);
    assert_eq!(snap.reason, Some(OpenReason::ProbeFailed));
    assert_eq!(snap.retry_in, Some(S(20)));
}

#[test]
fn dropped_normal_pass_records_nothing() {
    let (_c, b) = setup(BreakerConfig {
        consecutive_failures: 1,
        ..BreakerConfig::default()
    });
    for _ in 0..10 {
        drop(b.acquire().unwrap());
    }
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn access_denied_opens_with_the_long_cool_down_and_keeps_the_reason() {
    let (clock, b) = setup(BreakerConfig::default());
    let pass = b.acquire().unwrap();
    let msg = "Your organization must be verified to use the model `gpt-image-1`.";
    let t = pass
        .open_for(AccessDenial::OrganizationNotVerified, msg)
        .unwrap();
    let reason = OpenReason::Denied(DenyReason::AccessDenied(
        AccessDenial::OrganizationNotVerified,
    ));
    assert_eq!(t.reason, Some(reason));
    clock.advance(S(300));
    let rej = b.acquire().unwrap_err();
    assert_eq!(rej.reason, Some(reason));
    assert_eq!(rej.message.as_deref(), Some(msg));
    assert_eq!(rej.retry_in, Some(S(300)));
    assert!(rej.to_string().contains("verified"));
    let json = serde_json::to_value(b.snapshot()).unwrap();
    assert_eq!(json["state"], "open");
    assert_eq!(json["retry_in_ms"], 300_000);
    assert_eq!(json["reason"]["kind"], "denied");
    assert_eq!(json["message"], msg);
    clock.advance(S(300));
    assert!(b.acquire().unwrap().is_probe());
}

#[test]
fn transitions_reach_the_listener_in_order() {
    let (clock, b) = setup(BreakerConfig {
        consecutive_failures: 1,
        ramp: S(10),
        ..BreakerConfig::default()
    });
    let seen: Arc<Mutex<Vec<Transition>>> = Arc::default();
    let sink = Arc::clone(&seen);
    b.set_listener(Arc::new(move |t| sink.lock().unwrap().push(t.clone())));
    fail(&b, 1);
    clock.advance(S(10));
    let _ = b.acquire().unwrap().record(Outcome::Success);
    clock.advance(S(10));
    let _ = b.acquire().unwrap().record(Outcome::Success);
    let states: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|t| (t.from, t.to))
        .collect();
    use BreakerState::*;
    assert_eq!(
        states,
        vec![
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Recovering),
            (Recovering, Closed)
        ]
    );
}

#[test]
fn failure_while_recovering_reopens_with_a_longer_cool_down() {
    let (clock, b) = setup(BreakerConfig {
        consecutive_failures: 1,
        ramp: S(30),
        ramp_start: 1.0,
        ..slow_probing()
    });
    fail(&b, 1);
    clock.advance(S(10));
    let _ = b.acquire().unwrap().record(Outcome::Success);
    let t = b.acquire().unwrap().record(Outcome::Server).unwrap();
    assert_eq!(t.reason, Some(OpenReason::FailedWhileRecovering));
    assert_eq!(b.snapshot().retry_in, Some(S(20)));
}

/// Failures for 30 s, then success; one call per second for 60 s.
#[test]
fn flap_one_attempt_per_cool_down_and_back_to_closed_after_recovery() {
    let config = BreakerConfig {
        consecutive_failures: 5,
        cool_down: S(10),
        cool_down_multiplier: 2.0,
        max_cool_down: S(60),
        ramp: S(10),
        ramp_start: 0.2,
        ..BreakerConfig::default()
    };
    let (clock, b) = setup(config);
    let recovered_at = 30u64;
    let mut attempts = Vec::new(); // (second, state before, was probe)
    let mut closed_again_at = None;
    let mut opened_at = None;
    for second in 0..60u64 {
        let state = b.state();
        if let Ok(pass) = b.acquire() {
            attempts.push((second, state, pass.is_probe()));
            let outcome = if second < recovered_at {
                Outcome::Server
            } else {
                Outcome::Success
            };
            if let Some(t) = pass.record(outcome) {
                if t.to == BreakerState::Open && opened_at.is_none() {
                    opened_at = Some(second);
                }
            }
        }
        if second > recovered_at && closed_again_at.is_none() && b.state() == BreakerState::Closed {
            closed_again_at = Some(second);
        }
        clock.advance(S(1));
    }
    let opened_at = opened_at.expect("opened during the outage");
    assert_eq!(opened_at, 4, "5 consecutive failures");
    // While not closed, only probes went through, spaced by at least the cool-down in force.
    let probes: Vec<u64> = attempts
        .iter()
        .filter(|(_, _, probe)| *probe)
        .map(|(s, _, _)| *s)
        .collect();
    assert_eq!(
        probes,
        vec![14, 34],
        "probes at cool-down ends (10 s, then 20 s)"
    );
    let during_outage = attempts
        .iter()
        .filter(|(s, state, _)| *s > opened_at && *s < 34 && *state != BreakerState::Closed)
        .count();
    assert_eq!(
        during_outage, 1,
        "one attempt in the 10 s cool-down, none in the 20 s one"
    );
    // Back within one cool-down (20 s) + ramp (10 s) of the recovery.
    let closed = closed_again_at.expect("closed again");
    assert!(closed <= recovered_at + 20 + 10, "closed at {closed}");
    // And from then on every call goes through.
    assert!(attempts.iter().filter(|(s, _, _)| *s >= closed).count() as u64 >= 60 - closed - 1);
}

#[test]
fn late_report_from_before_the_outage_does_not_reopen_a_recovering_breaker() {
    let (clock, b) = setup(BreakerConfig {
        consecutive_failures: 1,
        ramp_start: 1.0,
        ..BreakerConfig::default()
    });
    let slow_call = b.acquire().unwrap(); // admitted while closed, answers much later
    fail(&b, 1);
    clock.advance(S(10));
    let _ = b.acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Recovering);
    assert!(slow_call.record(Outcome::Timeout).is_none());
    assert_eq!(b.state(), BreakerState::Recovering);
}

#[test]
fn closing_after_the_ramp_resets_the_grown_cool_down() {
    let (clock, b) = setup(BreakerConfig {
        consecutive_failures: 1,
        ramp: S(10),
        ramp_start: 1.0,
        ..slow_probing()
    });
    fail(&b, 1);
    clock.advance(S(10));
    let _ = b.acquire().unwrap().record(Outcome::Server); // probe fails: 20 s
    clock.advance(S(20));
    let _ = b.acquire().unwrap().record(Outcome::Success);
    clock.advance(S(10));
    let pass = b.acquire().unwrap(); // ramp over: closes on acquire
    assert_eq!(pass.transition().map(|t| t.to), Some(BreakerState::Closed));
    assert_eq!(b.snapshot().cool_down, S(10));
    let _ = pass.record(Outcome::Server);
    assert_eq!(
        b.snapshot().retry_in,
        Some(S(10)),
        "fresh opening uses the base cool-down"
    );
}

// ---------------------------------------------------------------------------------------
// Overlapping failures are one piece of evidence
// ---------------------------------------------------------------------------------------

/// Grants `n` passes at once from `n` threads (all before any reports).
fn admit_together(b: &CircuitBreaker, n: usize) -> Vec<image_router::breaker::BreakerPass> {
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    b.acquire().expect("closed")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn concurrent_timeouts_count_once_toward_consecutive_failures() {
    let (clock, b) = setup(BreakerConfig {
        consecutive_failures: 5,
        ..BreakerConfig::default()
    });
    // Five calls in flight together; the provider stalls and all of them time out.
    let passes = admit_together(&b, 5);
    clock.advance(S(120));
    let transitions: Vec<_> = passes
        .into_iter()
        .filter_map(|p| p.record(Outcome::Timeout))
        .collect();
    assert!(transitions.is_empty(), "{transitions:?}");
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(
        b.snapshot().consecutive_failures,
        1,
        "one piece of evidence"
    );
    // The next call started after that evidence: its failure is the second in the run.
    let _ = b.acquire().unwrap().record(Outcome::Timeout);
    assert_eq!(b.snapshot().consecutive_failures, 2);
}

#[test]
fn concurrent_failures_open_by_the_ratio_once_a_second_round_fails() {
    let (clock, b) = setup(BreakerConfig {
        consecutive_failures: 5,
        failure_ratio: 0.5,
        min_samples: 10,
        ..BreakerConfig::default()
    });
    // Ten calls in flight together, all failing: ten of ten outcomes in the window, the
    // minimum volume, but one piece of evidence (one stall can do that to a healthy
    // provider with no other traffic).
    let passes = admit_together(&b, 10);
    clock.advance(S(1));
    for p in passes {
        assert!(p.record(Outcome::Server).is_none());
    }
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.snapshot().consecutive_failures, 1);
    // A provider that is really down fails the next round too: the ratio opens it.
    let mut round = admit_together(&b, 3).into_iter();
    let t = round
        .next()
        .unwrap()
        .record(Outcome::Server)
        .expect("opens");
    assert_eq!(t.reason, Some(OpenReason::FailureRatio));
    assert_eq!(b.snapshot().consecutive_failures, 2);
    for p in round {
        assert!(p.record(Outcome::Server).is_none(), "already open");
    }
}

#[test]
fn sequential_failures_still_open_and_rounds_of_overlapping_calls_count_one_each() {
    // Strictly one call after another: the classic run.
    let (_c, b) = setup(BreakerConfig {
        consecutive_failures: 5,
        ..BreakerConfig::default()
    });
    for i in 1..5 {
        assert!(b.acquire().unwrap().record(Outcome::Timeout).is_none());
        assert_eq!(b.snapshot().consecutive_failures, i);
    }
    let t = b
        .acquire()
        .unwrap()
        .record(Outcome::Timeout)
        .expect("opens");
    assert_eq!(t.reason, Some(OpenReason::ConsecutiveFailures(5)));

    // Rounds of four concurrent calls, each round started after the previous one failed:
    // a provider that stays down under concurrency opens after five rounds.
    let (clock, b) = setup(BreakerConfig {
        consecutive_failures: 5,
        failure_ratio: 2.0, // ratio off: only the run can open it
        ..BreakerConfig::default()
    });
    for round in 1..=5u32 {
        let passes = admit_together(&b, 4);
        clock.advance(S(1));
        let opened = passes
            .into_iter()
            .filter_map(|p| p.record(Outcome::Connect))
            .next_back();
        assert_eq!(b.snapshot().consecutive_failures.min(5), round);
        assert_eq!(opened.is_some(), round == 5, "round {round}");
    }
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn a_success_ends_the_run_even_from_an_overlapping_call() {
    let (_c, b) = setup(BreakerConfig {
        consecutive_failures: 3,
        failure_ratio: 2.0,
        ..BreakerConfig::default()
    });
    // A call admitted before two failures answers well after them: the provider works.
    let slow_good = b.acquire().unwrap();
    fail(&b, 2);
    assert_eq!(b.snapshot().consecutive_failures, 2);
    assert!(slow_good.record(Outcome::Success).is_none());
    assert_eq!(b.snapshot().consecutive_failures, 0);
    fail(&b, 2);
    assert_eq!(b.state(), BreakerState::Closed);
    let t = b.acquire().unwrap().record(Outcome::Server).expect("opens");
    assert_eq!(t.reason, Some(OpenReason::ConsecutiveFailures(3)));
}

/// A deterministic load model: 32 calls always in flight on a healthy provider that stalls
/// now and then (every call in flight at that moment times out together, 3 % of all
/// calls). Counted one by one, each stall was 32 "consecutive" failures and opened the
/// breaker; counted as overlapping evidence, it never opens.
#[test]
fn stalls_under_load_leave_a_healthy_provider_closed() {
    let (clock, b) = setup(BreakerConfig::default());
    let in_flight_target = 32;
    let mut in_flight: std::collections::VecDeque<_> = (0..in_flight_target)
        .map(|_| b.acquire().expect("closed"))
        .collect();
    let (mut calls, mut failures) = (0u32, 0u32);
    for tick in 0..30_000u32 {
        clock.advance(Duration::from_millis(10));
        if tick % 1_000 == 999 {
            // A stall: everything in flight times out, then the slots are refilled.
            while let Some(p) = in_flight.pop_front() {
                assert!(p.record(Outcome::Timeout).is_none(), "tick {tick}");
                calls += 1;
                failures += 1;
            }
        } else if let Some(p) = in_flight.pop_front() {
            assert!(p.record(Outcome::Success).is_none(), "tick {tick}");
            calls += 1;
        }
        while in_flight.len() < in_flight_target {
            in_flight.push_back(b.acquire().expect("stays closed"));
        }
    }
    let share = f64::from(failures) / f64::from(calls);
    assert!((0.02..=0.04).contains(&share), "slow share {share:.3}");
    assert_eq!(b.state(), BreakerState::Closed);
}

// ---------------------------------------------------------------------------------------
// Ramp: a probe that was a fluke re-opens at once, a healthy provider's noise does not
// ---------------------------------------------------------------------------------------

#[test]
fn a_failure_right_after_the_probe_reopens_the_ramp() {
    let (clock, b) = setup(BreakerConfig {
        ramp_start: 1.0,
        ..BreakerConfig::default()
    });
    fail(&b, 5);
    clock.advance(S(2));
    let _ = b.acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Recovering);
    // The probe (a success) and this failure: half the outcomes since the probe failed.
    let t = b
        .acquire()
        .unwrap()
        .record(Outcome::Server)
        .expect("re-opens");
    assert_eq!(t.reason, Some(OpenReason::FailedWhileRecovering));
    assert_eq!(b.snapshot().retry_in, Some(S(4)), "grown cool-down");
}

#[test]
fn an_occasional_failure_late_in_the_ramp_does_not_reopen() {
    let (clock, b) = setup(BreakerConfig {
        ramp_start: 1.0,
        ..BreakerConfig::default()
    });
    fail(&b, 5);
    clock.advance(S(2));
    let _ = b.acquire().unwrap().record(Outcome::Success);
    for i in 0..200 {
        let outcome = if i % 33 == 32 {
            Outcome::Timeout
        } else {
            Outcome::Success
        };
        assert!(b.acquire().unwrap().record(outcome).is_none(), "call {i}");
        clock.advance(Duration::from_millis(40));
    }
    // 8 s of the 10 s ramp with 3 % failures: still ramping, then closed.
    assert_eq!(b.state(), BreakerState::Recovering);
    clock.advance(S(2));
    let pass = b.acquire().unwrap();
    assert_eq!(pass.transition().map(|t| t.to), Some(BreakerState::Closed));
    let _ = pass.record(Outcome::Success);
}

// ---------------------------------------------------------------------------------------
// Defaults
// ---------------------------------------------------------------------------------------

#[test]
fn defaults_notice_recovery_in_seconds() {
    let d = BreakerConfig::default();
    assert_eq!(d.consecutive_failures, 5);
    assert_eq!((d.failure_ratio, d.min_samples, d.window), (0.5, 10, S(60)));
    assert_eq!((d.cool_down, d.cool_down_multiplier), (S(2), 2.0));
    assert_eq!(d.max_cool_down, S(4));
    assert_eq!((d.ramp, d.ramp_start), (S(10), 0.1));
    assert_eq!(d.long_cool_down, S(600));

    // Down for an hour with a call every second: one probe per 4 s once the cool-down has
    // grown, and the probe after recovery comes within 4 s.
    let (clock, b) = setup(d);
    let recovered_at = 3_600u64;
    let (mut probes, mut first_good) = (0u32, None);
    for second in 0..3_700u64 {
        if let Ok(pass) = b.acquire() {
            let up = second >= recovered_at;
            if pass.is_probe() && !up {
                probes += 1;
            }
            if up && first_good.is_none() {
                first_good = Some(second);
            }
            let _ = pass.record(if up {
                Outcome::Success
            } else {
                Outcome::Server
            });
        }
        clock.advance(S(1));
    }
    // 2 s, then 4 s: 1 + (3600 - 5 - 2) / 4 probes.
    assert!((898..=900).contains(&probes), "{probes} probes in the hour");
    let back = first_good.expect("traffic came back");
    assert!(back <= recovered_at + 4, "back at {back}");
    assert_eq!(b.state(), BreakerState::Closed);
}
