//! What the crash tests share about the drain: random faults in proportion to the traffic,
//! and the share of the account's limit used in each full minute while work was queued.
//!
//! # Why faults per request, not per tick
//!
//! The crash tests used to queue one fault on a timer (every 40 or 400 ms) whatever the
//! traffic. With a limit that binds, the workers send the minute's room in the first seconds
//! and then nothing until it comes back; a timer keeps queueing faults meanwhile, so the
//! minute's first requests met a run of a hundred and more faults in a row. That is an outage,
//! and every worker's circuit breaker opened on it, as it should; the half-open probes (one
//! per process per cool-down) then took one queued fault each while the timer queued more,
//! and the drain slowed to about a request a second without a 429 (measured: 2,000 jobs at
//! 1,200 RPM, faults every 400 ms — 1,188 requests in the first 4 s, then 60 in the next
//! 35 s; without faults the same run sent the second minute's room at once). Faults drawn for
//! each request the simulator received keep the fault *rate* the tests mean (about one
//! request in seven) and never turn a pause into an outage.
//!
//! # How the share is measured
//!
//! From the simulator's own record of every request it received (`Simulator::received`,
//! timestamps on its clock), faults and refusals included: the windows are the full 60-second
//! windows `[t0 + 60 k, t0 + 60 (k + 1))` from the first request `t0` that end before the
//! last moment a job was still `queued` (polled every 200 ms by the parent; the simulator's
//! clock read then). Each window's share is the requests received in it ÷ the account's RPM.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use image_router::sim::{Fault, Simulator, Times};

/// One request in this many gets a fault (on average).
pub(crate) const FAULT_ONE_IN: u32 = 7;

/// A random fault of the crash tests' mix: transient 5xx, resets and slow answers (retried),
/// now and then a content-policy refusal (fails at once) or a hang (possibly billed).
fn random_fault(rng: &mut impl Rng) -> Fault {
    match rng.random_range(0..100) {
        0..=34 => Fault::Status(500),
        35..=59 => Fault::Status(503),
        60..=79 => Fault::Reset,
        80..=94 => Fault::Slow(Duration::from_millis(300)),
        95..=97 => Fault::ContentPolicy,
        _ => Fault::Hang,
    }
}

/// Queues faults on `account` in proportion to the requests it receives: every 10 ms, each
/// request received since the last look draws a fault with probability 1 / [`FAULT_ONE_IN`].
/// Abort the handle to stop.
pub(crate) fn faults_per_request(
    sim: Arc<Simulator>,
    account: &str,
) -> tokio::task::JoinHandle<()> {
    let account = account.to_string();
    tokio::spawn(async move {
        let mut seen = sim.stats(&account).requests;
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = sim.stats(&account).requests;
            let faults: Vec<Fault> = {
                let mut rng = rand::rng();
                let mut faults = Vec::new();
                for _ in seen..now {
                    if rng.random_range(0..FAULT_ONE_IN) == 0 {
                        faults.push(random_fault(&mut rng));
                    }
                }
                faults
            };
            for f in faults {
                sim.fail(&account, f, Times::Once);
            }
            seen = now;
        }
    })
}

/// The requests received in each full 60-second window from the first request that ends
/// at or before `queued_until` (see the module docs), given every request's arrival time.
pub(crate) fn requests_per_full_minute(arrivals: &[Duration], queued_until: Duration) -> Vec<u64> {
    let Some(&t0) = arrivals.iter().min() else {
        return Vec::new();
    };
    let minute = Duration::from_secs(60);
    let mut out = Vec::new();
    let mut start = t0;
    while start + minute <= queued_until {
        let end = start + minute;
        out.push(arrivals.iter().filter(|&&t| t >= start && t < end).count() as u64);
        start = end;
    }
    out
}

#[test]
fn full_minutes_only_while_queued() {
    let s = Duration::from_secs;
    let arrivals = [s(10), s(11), s(69), s(70), s(129), s(131)];
    // Windows [10, 70), [70, 130); [130, 190) does not end by 150.
    assert_eq!(requests_per_full_minute(&arrivals, s(150)), vec![3, 2]);
    assert_eq!(
        requests_per_full_minute(&arrivals, s(69)),
        Vec::<u64>::new()
    );
    assert_eq!(requests_per_full_minute(&[], s(500)), Vec::<u64>::new());
}
