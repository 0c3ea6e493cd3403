//! Routing across the keys of one provider on the simulator.

use super::*;
use image_router::clock::{ManualClock, SharedClock};
use image_router::providers::OpenAi;
use image_router::sim::{Fault, SimAccount, Times};
use image_router::{GenerateRequest, Outcome, ProviderOptions, Quality, Router, Size, Strategy};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

fn low() -> GenerateRequest {
    GenerateRequest::new("a fox")
        .model("gpt-image-1")
        .quality(Quality::Low)
        .size(Size::SQUARE)
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("request did not finish in 20 s")
}

/// Two keys at 6 RPM each, saturated for 5 simulated minutes (one request every 2 s, 30 a
/// minute offered): the keys together serve 12 a minute (at least 59 of the 60 allowed), with
/// no upstream 429 on either key, each key taking its share; the overflow goes to a spare
/// provider instead of waiting.
#[tokio::test]
async fn two_keys_at_6_rpm_serve_12_a_minute_without_a_429() {
    let manual = ManualClock::new();
    let clock: SharedClock = Arc::new(manual.clone());
    let sim = Simulator::builder()
        .clock(clock.clone())
        .account_keys(
            "openai",
            SimKeys::new()
                .key(key("a"), SimAccount::new().rpm(6))
                .key(key("b"), SimAccount::new().rpm(6)),
        )
        .account("spare", SimAccount::new())
        .start()
        .await
        .unwrap();
    let spare = OpenAi::builder()
        .name("spare")
        .api_key(key("c"))
        .base_url(sim.openai_base_url("spare"))
        .build()
        .unwrap();
    let router = Router::builder()
        .provider_keys(
            provider_keys(&sim),
            ProviderOptions::new().rpm(6).safety_margin(1.0),
        )
        .provider(spare)
        .strategy(Strategy::Ordered)
        .clock(clock)
        .max_wait(Duration::ZERO)
        .build()
        .unwrap();
    let mut served: HashMap<String, u32> = HashMap::new();
    let mut per_minute = [0u32; 5];
    for i in 0..150 {
        let resp = bounded(router.generate(low())).await.unwrap();
        assert_eq!(
            resp.attempts.len(),
            1,
            "no failed attempt: {:?}",
            resp.attempts
        );
        if resp.provider != "spare" {
            per_minute[i / 30] += 1;
        }
        *served.entry(resp.provider).or_default() += 1;
        manual.advance(Duration::from_secs(2));
    }
    let on_a = served.get(&member(LABEL_A)).copied().unwrap_or(0);
    let on_b = served.get(&member(LABEL_B)).copied().unwrap_or(0);
    let a_acct = sim.key_account("openai", 0).unwrap();
    let b_acct = sim.key_account("openai", 1).unwrap();
    assert_eq!(sim.stats(&a_acct).rate_limited, 0);
    assert_eq!(sim.stats(&b_acct).rate_limited, 0);
    assert_eq!(sim.stats(&a_acct).succeeded, u64::from(on_a));
    assert_eq!(sim.stats(&b_acct).succeeded, u64::from(on_b));
    assert!(on_a + on_b >= 59, "{on_a} + {on_b} of 60 allowed");
    assert!(on_a + on_b <= 60, "{on_a} + {on_b}");
    assert!(on_a >= 29 && on_b >= 29, "each key used: {on_a} / {on_b}");
    for (m, n) in per_minute.iter().enumerate() {
        assert!((11..=12).contains(n), "minute {m}: {n} on the keys");
    }
    sim.shutdown().await;
}

/// Requests go to the key with the most room: before every request the key that serves it
/// has at least as many requests left as the other, so a key with less room is never chosen
/// while another has more (under the default scored strategy); 24 requests on two keys of 12
/// use every slot of both.
#[tokio::test]
async fn requests_go_to_the_key_with_the_most_room() {
    let manual = ManualClock::new();
    let clock: SharedClock = Arc::new(manual.clone());
    let sim = two_keys(Some(clock.clone()), SimAccount::new(), SimAccount::new()).await;
    let router = Router::builder()
        .provider_keys(
            provider_keys(&sim),
            ProviderOptions::new().rpm(12).safety_margin(1.0),
        )
        .clock(clock)
        .max_wait(Duration::ZERO)
        .build()
        .unwrap();
    let room = |router: &Router| -> HashMap<String, u64> {
        router
            .headroom()
            .into_iter()
            .map(|(n, h)| (n, h.requests.unwrap()))
            .collect()
    };
    let mut sequence = Vec::new();
    for _ in 0..24 {
        let before = room(&router);
        let resp = bounded(router.generate(low())).await.unwrap();
        let other = if resp.provider == member(LABEL_A) {
            member(LABEL_B)
        } else {
            member(LABEL_A)
        };
        assert!(
            before[&resp.provider] >= before[&other],
            "{} chosen with {} left while {other} had {}",
            resp.provider,
            before[&resp.provider],
            before[&other]
        );
        sequence.push(resp.provider);
    }
    let a = sequence.iter().filter(|p| **p == member(LABEL_A)).count();
    assert_eq!(a, 12, "{sequence:?}");
    let after = room(&router);
    assert_eq!(after[&member(LABEL_A)], 0);
    assert_eq!(after[&member(LABEL_B)], 0);
    sim.shutdown().await;
}

/// Key A has less room after a burst only it served (key B is added by a reload, which keeps
/// A's state): the next requests all go to B until their room is equal, then they alternate.
#[tokio::test]
async fn a_key_with_less_room_waits_while_another_has_more() {
    let manual = ManualClock::new();
    let clock: SharedClock = Arc::new(manual.clone());
    let sim = two_keys(Some(clock.clone()), SimAccount::new(), SimAccount::new()).await;
    let only_a = OpenAi::builder()
        .name("openai")
        .base_url(sim.openai_base_url("openai"))
        .build_keys([(LABEL_A, key("a"))])
        .unwrap();
    let router = Router::builder()
        .provider_keys(only_a, ProviderOptions::new().rpm(10).safety_margin(1.0))
        .clock(clock)
        .max_wait(Duration::ZERO)
        .build()
        .unwrap();
    for _ in 0..6 {
        let resp = bounded(router.generate(low())).await.unwrap();
        assert_eq!(resp.provider, member(LABEL_A));
    }
    // Now both keys: A has 4 left, B 10; B takes the next 6 (down to 4), then they alternate.
    router
        .reload(Router::builder().provider_keys(
            provider_keys(&sim),
            ProviderOptions::new().rpm(10).safety_margin(1.0),
        ))
        .unwrap();
    let mut sequence = Vec::new();
    for _ in 0..8 {
        sequence.push(bounded(router.generate(low())).await.unwrap().provider);
    }
    assert!(
        sequence[..6].iter().all(|p| *p == member(LABEL_B)),
        "{sequence:?}"
    );
    assert_ne!(sequence[6], sequence[7], "{sequence:?}");
    sim.shutdown().await;
}

/// A revoked key (401 `invalid_api_key`) costs one attempt: the request that discovers it
/// fails over to the other key and is served; the key is set aside with its reason (status
/// shows it by label) and no later request is sent to it.
#[tokio::test]
async fn a_revoked_key_is_set_aside_and_the_other_carries_on() {
    let sim = two_keys(None, SimAccount::new(), SimAccount::new()).await;
    let router = Router::builder()
        .provider_keys(provider_keys(&sim), ProviderOptions::new())
        .strategy(Strategy::Ordered)
        .build()
        .unwrap();
    let first = bounded(router.generate(low())).await.unwrap();
    assert_eq!(first.provider, member(LABEL_A));
    assert!(sim.revoke_key("openai", 0));

    let resp = bounded(router.generate(low())).await.unwrap();
    assert_eq!(resp.provider, member(LABEL_B));
    assert_eq!(resp.attempts.len(), 2, "{:?}", resp.attempts);
    assert_eq!(resp.attempts[0].provider, member(LABEL_A));
    assert_eq!(resp.attempts[0].outcome, Outcome::Authentication);
    assert_eq!(resp.attempts[0].status, Some(401));

    for _ in 0..5 {
        let resp = bounded(router.generate(low())).await.unwrap();
        assert_eq!(resp.provider, member(LABEL_B));
        assert_eq!(resp.attempts.len(), 1);
    }
    let a_acct = sim.key_account("openai", 0).unwrap();
    assert_eq!(sim.stats(&a_acct).unauthorized, 1, "one attempt found it");

    let status = router.status();
    assert_eq!(status.key_groups.len(), 1);
    let group = &status.key_groups[0];
    assert_eq!(group.name, "openai");
    assert_eq!(group.keys[0].label, LABEL_A);
    assert!(!group.keys[0].usable);
    let aside = group.keys[0].set_aside.as_ref().expect("key A set aside");
    assert_eq!(aside.cause, Outcome::Authentication);
    assert!(
        aside.message.contains("Incorrect API key"),
        "{}",
        aside.message
    );
    assert!(aside.remaining_ms > 0);
    assert_eq!(group.keys[1].label, LABEL_B);
    assert!(group.keys[1].usable);
    assert!(group.keys[1].set_aside.is_none());
    let a = status
        .providers
        .iter()
        .find(|p| p.name == member(LABEL_A))
        .unwrap();
    assert_eq!(a.group.as_deref(), Some("openai"));
    assert_eq!(a.key.as_deref(), Some(LABEL_A));
    sim.shutdown().await;
}

/// A key out of quota (429 `insufficient_quota`) likewise: one attempt, then set aside with
/// the access-denied reason, while the other key serves.
#[tokio::test]
async fn an_insufficient_quota_key_is_set_aside_and_the_other_carries_on() {
    let sim = two_keys(None, SimAccount::new(), SimAccount::new()).await;
    let a_acct = sim.key_account("openai", 0).unwrap();
    sim.fail(&a_acct, Fault::InsufficientQuota, Times::Always);
    let router = Router::builder()
        .provider_keys(provider_keys(&sim), ProviderOptions::new())
        .strategy(Strategy::Ordered)
        .build()
        .unwrap();
    let resp = bounded(router.generate(low())).await.unwrap();
    assert_eq!(resp.provider, member(LABEL_B));
    assert_eq!(resp.attempts.len(), 2, "{:?}", resp.attempts);
    assert_eq!(resp.attempts[0].provider, member(LABEL_A));
    assert_eq!(resp.attempts[0].outcome, Outcome::AccessDenied);
    for _ in 0..5 {
        let resp = bounded(router.generate(low())).await.unwrap();
        assert_eq!(resp.provider, member(LABEL_B));
        assert_eq!(resp.attempts.len(), 1, "{:?}", resp.attempts);
    }
    assert_eq!(sim.stats(&a_acct).faults_served, 1, "one attempt found it");
    let status = router.status();
    let keys = &status.key_groups[0].keys;
    let aside = keys[0].set_aside.as_ref().expect("key A set aside");
    assert_eq!(aside.cause, Outcome::AccessDenied);
    assert!(aside.message.contains("quota"), "{}", aside.message);
    assert!(!keys[0].usable);
    assert!(keys[1].usable);
    sim.shutdown().await;
}

/// A key without tier access (the 429 "try again after 0.0 seconds") or of an unverified
/// organization (403) is set aside the same way: one attempt, then only the other key.
#[tokio::test]
async fn a_key_without_access_is_set_aside_whatever_the_denial() {
    for fault in [Fault::TierDenied, Fault::OrgNotVerified] {
        let sim = two_keys(None, SimAccount::new(), SimAccount::new()).await;
        let a_acct = sim.key_account("openai", 0).unwrap();
        sim.fail(&a_acct, fault.clone(), Times::Always);
        let router = Router::builder()
            .provider_keys(provider_keys(&sim), ProviderOptions::new())
            .strategy(Strategy::Ordered)
            .build()
            .unwrap();
        for i in 0..4 {
            let resp = bounded(router.generate(low())).await.unwrap();
            assert_eq!(resp.provider, member(LABEL_B), "{fault:?}");
            assert_eq!(resp.attempts.len(), if i == 0 { 2 } else { 1 }, "{fault:?}");
        }
        assert_eq!(sim.stats(&a_acct).faults_served, 1, "{fault:?}");
        let status = router.status();
        let aside = status.key_groups[0].keys[0]
            .set_aside
            .clone()
            .unwrap_or_else(|| panic!("{fault:?}: key A not set aside"));
        assert_eq!(aside.cause, Outcome::AccessDenied, "{fault:?}");
        sim.shutdown().await;
    }
}
