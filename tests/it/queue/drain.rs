//! What the crash tests share about the drain: random faults in proportion to the traffic,
//! and the share of the account's limit used in each full minute while work was queued.
//!
//! # Why faults per request, not per tick
//!
//! The crash tests used to queue one fault on a timer (every 40 or 400 ms) whatever the
//! traffic. With a limit that binds, the workers send the minute's room in the first seconds
//! and then nothing until it comes back; the timer keeps queueing faults meanwhile, so the
//! next minute's first requests meet a run of a hundred and more faults in a row: an outage,
//! on which a circuit breaker opens, as it should. Measured (2,000 jobs at 1,200 RPM, faults
//! every 400 ms): 1,188 requests in the first 4 s, then 61 in the 33 s after the room came
//! back at 60 s, no 429; the same run without faults sent its remaining 811 jobs within 4 s
//! of the room coming back. The trickle, about one request a second across the three
//! processes, matches the breakers' half-open probes (one per process per 2–4 s cool-down),
//! each taking one queued fault while the timer queues more (inferred from the rates, not
//! traced). Queueing faults from outside per observed request still hands them to whichever
//! requests come next, several in a row when several were drawn in one look. So the
//! simulator draws them itself, for each request independently ([`RandomFaults`]): the fault
//! *rate* the tests mean (about one request in seven), never a run longer than chance makes.
//!
//! # How the share is measured
//!
//! From the simulator's own record of every request it received (`Simulator::received`,
//! timestamps on its clock), faults and refusals included: the windows are the full 60-second
//! windows `[t0 + 60 k, t0 + 60 (k + 1))` from the first request `t0` that end before the
//! last moment a job was still `queued` (polled every 200 ms by the parent; the simulator's
//! clock read then). Each window's share is the requests received in it ÷ the account's RPM.
//! The tests assert every such window at 97 % or more, and at no more than the RPM: every
//! request the simulator received counts (the router keeps the room of a request the
//! provider received, whatever the answer), so a router that gave room back for a reset or
//! a refusal would show here as more than 100 %.

use std::time::Duration;

use image_router::sim::{Fault, RandomFaults};

/// One request in this many gets a fault (on average).
pub(crate) const FAULT_ONE_IN: u32 = 7;

/// The crash tests' random faults: transient 5xx, resets and slow answers (retried), now and
/// then a content-policy refusal (fails at once) or a hang (possibly billed), one request in
/// [`FAULT_ONE_IN`].
pub(crate) fn crash_test_faults() -> RandomFaults {
    RandomFaults::new(
        FAULT_ONE_IN,
        [
            (Fault::Status(500), 35),
            (Fault::Status(503), 25),
            (Fault::Reset, 20),
            (Fault::Slow(Duration::from_millis(300)), 15),
            (Fault::ContentPolicy, 3),
            (Fault::Hang, 2),
        ],
    )
    .expect("a non-empty mix with a rate")
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
