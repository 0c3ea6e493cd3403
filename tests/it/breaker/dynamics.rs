//! The breaker and health chain end to end on the simulator: a recovered provider gets its
//! traffic back within seconds with every default, and stalls under concurrent load do not
//! open healthy providers' breakers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use image_router::breaker::BreakerState;
use image_router::clock::{ManualClock, SharedClock};
use image_router::providers::OpenAi;
use image_router::sim::{Fault, SimAccount, Simulator, Times};
use image_router::{Error, GenerateRequest, Outcome, Quality, Router, SkipReason};

fn openai(name: &str, base: String) -> OpenAi {
    OpenAi::builder()
        .name(name)
        .base_url(base)
        .api_key(format!("sk-{}", "d".repeat(8)))
        .client(reqwest::Client::new())
        .build()
        .unwrap()
}

fn req() -> GenerateRequest {
    GenerateRequest::new("a lighthouse")
        .model("gpt-image-1")
        .quality(Quality::Low)
}

/// A provider failing for 30 s, with a request every second, gets traffic back within 5 s
/// of recovering, with a healthy second provider serving meanwhile and every setting at
/// its default (only the clock is injected: simulated seconds, a few real seconds of retry
/// back-offs). The whole chain is checked: the probe schedule (2 s, then 4 s), the probe,
/// the ramp, the health window cleared by the good probe, and the scorer putting the
/// primary first again until it serves everything.
#[tokio::test]
async fn outage_of_30s_traffic_back_within_5s_of_recovery_with_all_defaults() {
    let clock = ManualClock::new();
    let shared: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::builder()
        .account("primary", SimAccount::new())
        .account("fallback", SimAccount::new())
        .clock(shared.clone())
        .start()
        .await
        .unwrap();
    let router = Router::builder()
        .provider(openai("primary", sim.openai_base_url("primary")))
        .provider(openai("fallback", sim.openai_base_url("fallback")))
        .clock(shared)
        .build()
        .unwrap();
    let (down_at, up_at, end) = (10u64, 40u64, 70u64);
    let mut served: Vec<String> = Vec::new();
    for t in 0..end {
        if t == down_at {
            sim.fail("primary", Fault::Status(503), Times::Always);
        }
        if t == up_at {
            sim.clear_faults("primary");
        }
        let res = router
            .generate(req())
            .await
            .unwrap_or_else(|e| panic!("t={t}: every request is served: {e}"));
        served.push(res.provider);
        clock.advance(Duration::from_secs(1));
    }
    let on = |range: std::ops::Range<u64>| -> Vec<&str> {
        served[range.start as usize..range.end as usize]
            .iter()
            .map(String::as_str)
            .collect()
    };
    assert!(
        on(0..down_at).iter().all(|p| *p == "primary"),
        "{:?}",
        on(0..down_at)
    );
    assert!(
        on(down_at..up_at).iter().all(|p| *p == "fallback"),
        "{:?}",
        on(down_at..up_at)
    );
    let back = (up_at..end)
        .find(|&t| served[t as usize] == "primary")
        .expect("traffic returned to the primary");
    assert!(
        back <= up_at + 5,
        "primary back {} s after recovering: {:?}",
        back - up_at,
        on(up_at..end)
    );
    // The ramp (10 s) admits a growing share, then everything goes to the primary again.
    let ramp_over = back + 10;
    assert!(
        on(ramp_over + 1..end).iter().all(|p| *p == "primary"),
        "after the ramp: {:?}",
        on(up_at..end)
    );
    let primary_in_ramp = on(back..ramp_over + 1)
        .iter()
        .filter(|p| **p == "primary")
        .count();
    assert!(primary_in_ramp >= 4, "{:?}", on(back..ramp_over + 1));
    let status = router.status();
    let p = &status.providers[0];
    assert_eq!(p.breaker.state, BreakerState::Closed);
    assert_eq!(
        p.health.failures, 0,
        "the outage is forgotten: {:?}",
        p.health
    );
    assert_eq!(p.health.availability, 1.0);
    // During the outage the primary saw the five failures that opened it and then one
    // probe per cool-down (2 s, then every 4 s): no more than 5 + 8 requests in 30 s.
    let during = sim
        .received("primary")
        .iter()
        .filter(|r| r.at >= Duration::from_secs(down_at) && r.at < Duration::from_secs(up_at))
        .count();
    assert!(
        during <= 5 + 8,
        "primary got {during} requests during the outage"
    );
}

/// A load-like run: 16 requests always in flight over two healthy providers, each of
/// which now and then stalls for a moment (every request that arrives during the stall
/// answers after the attempt timeout), about 3 % of all answers. Each stall times out
/// every call in flight on that provider at once. Counted one by one those were "consecutive" failures
/// that opened both breakers, and then every request failed with "all breakers open";
/// counted as one piece of evidence, both providers stay closed and every request is
/// served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalls_under_load_leave_both_healthy_providers_closed() {
    let fast = Duration::from_millis(2);
    let sim = Simulator::builder()
        .account("a", SimAccount::new().latency(fast))
        .account("b", SimAccount::new().latency(fast))
        .start()
        .await
        .unwrap();
    let sim = Arc::new(sim);
    let router = Router::builder()
        .provider(openai("a", sim.openai_base_url("a")))
        .provider(openai("b", sim.openai_base_url("b")))
        // Slow answers (5 s) must end as timeouts within the test; everything else is
        // default. A timeout after sending fails over to the other provider (it is not sent
        // to the stalled one again), so stalls are spaced by more than this timeout: the
        // other provider is never stalling when the failed-over request reaches it.
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    // At least this many requests, and at least three stalls each followed by a quiet time.
    let min_total = 2_000usize;
    let stall_every = 480usize;
    let quiet = Duration::from_millis(1_500);
    let started = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));

    // The stall injector: after every `stall_every` finished requests, and no sooner than
    // `quiet` after the previous stall, one provider answers slowly for 50 ms (each in turn:
    // a, then b, ...). After the third stall has had its quiet time, and once `min_total`
    // requests are done, it stops the workers.
    let injector = {
        let sim = Arc::clone(&sim);
        let done = Arc::clone(&done);
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut next = stall_every;
            let mut stalls = 0u32;
            let mut last: Option<std::time::Instant> = None;
            loop {
                let settled = last.is_none_or(|t| t.elapsed() >= quiet);
                let finished = done.load(Ordering::SeqCst);
                if stalls >= 3 && settled && finished >= min_total {
                    stop.store(true, Ordering::SeqCst);
                    break;
                }
                if stalls < 3 && settled && finished >= next {
                    let acct = ["a", "b"][stalls as usize % 2];
                    sim.set_latency(acct, Duration::from_secs(5));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    sim.set_latency(acct, fast);
                    last = Some(std::time::Instant::now());
                    stalls += 1;
                    next = finished + stall_every;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            stalls
        })
    };

    let mut workers = Vec::new();
    for _ in 0..16 {
        let router = router.clone();
        let started = Arc::clone(&started);
        let stop = Arc::clone(&stop);
        let done = Arc::clone(&done);
        workers.push(tokio::spawn(async move {
            // (served, attempts, timed-out attempts, circuit-open skips, errors)
            let mut tally = (0usize, 0usize, 0usize, 0usize, Vec::<String>::new());
            while !stop.load(Ordering::SeqCst) {
                started.fetch_add(1, Ordering::SeqCst);
                let result = tokio::time::timeout(Duration::from_secs(30), router.generate(req()))
                    .await
                    .expect("bounded");
                let (attempts, skipped) = match &result {
                    Ok(res) => (res.attempts.clone(), res.skipped.clone()),
                    Err(Error::Exhausted {
                        attempts, skipped, ..
                    }) => (attempts.clone(), skipped.clone()),
                    Err(_) => (Vec::new(), Vec::new()),
                };
                tally.1 += attempts.len();
                tally.2 += attempts
                    .iter()
                    .filter(|a| a.outcome == Outcome::Timeout)
                    .count();
                tally.3 += skipped
                    .iter()
                    .filter(|s| matches!(s.reason, SkipReason::CircuitOpen { .. }))
                    .count();
                match result {
                    Ok(_) => tally.0 += 1,
                    Err(e) => tally.4.push(e.to_string()),
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
            tally
        }));
    }
    let (mut served, mut attempts, mut timeouts, mut open_skips) = (0, 0, 0, 0);
    let mut errors = Vec::new();
    for w in workers {
        let t = w.await.unwrap();
        served += t.0;
        attempts += t.1;
        timeouts += t.2;
        open_skips += t.3;
        errors.extend(t.4);
    }
    let stalls = tokio::time::timeout(Duration::from_secs(5), injector)
        .await
        .expect("the injector ends with the workers")
        .unwrap();
    let status = router.status();
    let summary = format!(
        "{stalls} stalls, {served} served, {attempts} attempts, {timeouts} timeouts, \
         {open_skips} circuit-open skips, errors {:?}, breakers {:?}",
        errors.iter().take(3).collect::<Vec<_>>(),
        status
            .providers
            .iter()
            .map(|p| (
                &p.name,
                p.breaker.state,
                p.breaker.reason,
                p.health.successes
            ))
            .collect::<Vec<_>>()
    );
    // The premise: stalls happened and made a few percent of the answers slow.
    assert!(stalls >= 3, "{summary}");
    let share = timeouts as f64 / attempts as f64;
    assert!(
        timeouts >= stalls as usize && share <= 0.06,
        "slow share {share:.3}: {summary}"
    );
    // Both providers took part in the load.
    assert!(
        status.providers.iter().all(|p| p.health.successes >= 50),
        "{summary}"
    );
    // And no breaker opened: every request served, none skipped a provider as open.
    let total = started.load(Ordering::SeqCst);
    assert!(total >= min_total, "{summary}");
    assert_eq!(served, total, "{summary}");
    assert_eq!(open_skips, 0, "{summary}");
    for p in &status.providers {
        assert_eq!(p.breaker.state, BreakerState::Closed, "{summary}");
    }
}
