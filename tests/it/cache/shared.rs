//! The Redis second tier: an answer stored by one router is served by another (no call of
//! its own), and a tier that cannot be reached is skipped without failing a request.
//! Uses the test Redis server (`support::redis::url`), each test under its own prefix.

use std::time::Duration;

use image_router::cache::{CacheConfig, RedisTier};
use image_router::Router;

use super::req;
use crate::support::redis::{self, Server};
use crate::support::{shared, Fake, Shared};

fn router_on(p: Shared, tier: RedisTier) -> Router {
    Router::builder()
        .provider(p)
        .cache(CacheConfig::new().redis(tier))
        .build()
        .unwrap()
}

async fn a_second_router_is_served_from_the_shared_tier(server: Server) {
    let Some(url) = server.url("a_second_router_is_served_from_the_shared_tier") else {
        return;
    };
    let prefix = redis::unique_prefix("cache-shared");
    let tier = RedisTier::new(url.clone())
        .cluster(server.is_cluster())
        .prefix(prefix.clone())
        .timeout(Duration::from_secs(2));
    let (pa, fa) = shared(Fake::new("openai"));
    let (pb, fb) = shared(Fake::new("openai"));
    let a = router_on(pa, tier.clone());
    let b = router_on(pb, tier);
    let first = a.generate(req()).await.unwrap();
    assert!(!first.cached);
    let second = b.generate(req()).await.unwrap();
    assert!(second.cached, "served from Redis");
    assert_eq!(second.images[0].bytes, first.images[0].bytes);
    assert_eq!(second.cost_usd, Some(0.0));
    assert_eq!((fa.calls(), fb.calls()), (1, 0));
    // Another request is a miss for both tiers.
    let other = b
        .generate(req().quality(image_router::Quality::Low))
        .await
        .unwrap();
    assert!(!other.cached);
    assert_eq!(fb.calls(), 1);

    // Nothing in Redis holds the prompt in clear.
    let mut con = server.plain(&url).await;
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{{{prefix}:cache}}*"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        keys.len(),
        2 + 3,
        "two entries, the index, sizes and total: {keys:?}"
    );
    for k in &keys {
        assert!(!k.contains("lighthouse"));
        let kind: String = ::redis::cmd("TYPE")
            .arg(k)
            .query_async(&mut con)
            .await
            .unwrap();
        if kind == "string" && k.contains(":e:") {
            let v: Vec<u8> = ::redis::cmd("GET")
                .arg(k)
                .query_async(&mut con)
                .await
                .unwrap();
            assert!(!String::from_utf8_lossy(&v).contains("lighthouse"));
            let ttl: i64 = ::redis::cmd("PTTL")
                .arg(k)
                .query_async(&mut con)
                .await
                .unwrap();
            assert!(ttl > 0, "every entry expires");
        }
    }
}

async fn the_shared_tier_evicts_the_oldest_past_its_bound(server: Server) {
    let Some(url) = server.url("the_shared_tier_evicts_the_oldest_past_its_bound") else {
        return;
    };
    let prefix = redis::unique_prefix("cache-bound");
    // The fake's 1×1 PNG is a few hundred bytes stored: room for about three.
    let tier = RedisTier::new(url.clone())
        .cluster(server.is_cluster())
        .prefix(prefix.clone())
        .timeout(Duration::from_secs(2))
        .max_bytes(1_000);
    let (p, _) = shared(Fake::new("openai"));
    let a = router_on(p, tier);
    for i in 0..20 {
        a.generate(
            super::req()
                .n(1)
                .size(image_router::Size::SQUARE)
                .quality([image_router::Quality::Low, image_router::Quality::Medium][i % 2])
                .output_compression(i as u8 % 100)
                .output_format(image_router::OutputFormat::Jpeg),
        )
        .await
        .unwrap();
    }
    let mut con = server.plain(&url).await;
    let total: i64 = ::redis::cmd("GET")
        .arg(format!("{{{prefix}:cache}}:total"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(total > 0 && total <= 1_000, "total {total}");
    let entries: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{{{prefix}:cache}}:e:*"))
        .query_async(&mut con)
        .await
        .unwrap();
    let count: i64 = ::redis::cmd("ZCARD")
        .arg(format!("{{{prefix}:cache}}:idx"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        !entries.is_empty() && entries.len() < 20,
        "{} entries",
        entries.len()
    );
    assert_eq!(count as usize, entries.len());
}

#[tokio::test]
async fn an_unreachable_shared_tier_is_skipped() {
    // Port 9 on loopback (discard): nothing listens, the connection is refused.
    let tier = RedisTier::new("redis://127.0.0.1:9/").timeout(Duration::from_millis(500));
    let (p, fake) = shared(Fake::new("openai"));
    let router = router_on(p, tier);
    let first = router.generate(req()).await.unwrap();
    assert!(!first.cached);
    // The memory tier still works.
    assert!(router.generate(req()).await.unwrap().cached);
    assert_eq!(fake.calls(), 1);
    let other = router.generate(req().n(2)).await.unwrap();
    assert!(!other.cached);
    assert_eq!(fake.calls(), 2);
}

// The tests above that take a `Server` run on the single server and on the cluster.
crate::on_each_server!(
    a_second_router_is_served_from_the_shared_tier,
    the_shared_tier_evicts_the_oldest_past_its_bound,
);
