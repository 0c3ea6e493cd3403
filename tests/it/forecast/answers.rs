//! What a forecast answers: a workload nobody can serve, the binding limit or budget named,
//! the cheaper alternative, requests that can never fit and prices nobody knows.

use std::time::Duration;

use image_router::budget::{Budget, BudgetPeriod};
use image_router::forecast::{Constraint, Dimension, WorkItem, Workload};
use image_router::providers::{Azure, OpenAi};
use image_router::{ProviderOptions, Quality, Router, Size};

fn openai(name: &str) -> OpenAi {
    OpenAi::builder()
        .name(name)
        .api_key("k")
        .base_url("http://127.0.0.1:9/v1")
        .build()
        .unwrap()
}

fn azure() -> Azure {
    Azure::builder()
        .name("azure")
        .endpoint("http://127.0.0.1:9")
        .api_key("k")
        .deployment("gpt-image-1", "img")
        .build()
        .unwrap()
}

#[test]
fn a_workload_nobody_can_serve_is_an_answer_saying_why() {
    let router = Router::builder()
        .provider_with(openai("openai"), ProviderOptions::new().tier("free"))
        .provider(azure())
        .build()
        .unwrap();
    let work = Workload::new()
        .with(
            WorkItem::new(3)
                .model("dall-e-3")
                .quality(Quality::Standard),
        )
        .with(WorkItem::new(2).model("dall-e-3").n(2));
    let f = router.forecast(&work).unwrap();
    assert_eq!(
        (f.served_requests, f.drain_secs, f.cost_usd),
        (0, None, 0.0)
    );
    assert!(!f.serves_everything());
    assert_eq!(f.unserved.len(), 2, "{:?}", f.unserved);
    let nobody = &f.unserved[0];
    assert_eq!((nobody.requests, nobody.images), (3, 3));
    assert!(
        nobody.reason.contains("`openai`: no access")
            && nobody.reason.contains("tier-1")
            && nobody.reason.contains("`azure`: cannot serve it"),
        "{}",
        nobody.reason
    );
    // dall-e-3 makes one image per request: the field is named.
    assert!(
        f.unserved[1].reason.starts_with("invalid request: `n`"),
        "{}",
        f.unserved[1].reason
    );
    assert_eq!(f.unserved[1].images, 4);
    // Each provider says what it takes none of.
    assert!(f.providers[1].not_serving[0].starts_with("dall-e-3: cannot serve it"));
    let text = f.to_string();
    assert!(
        text.contains("nothing can be served") && text.contains("not served: 3 request(s)"),
        "{text}"
    );
    serde_json::to_string(&f).unwrap();
}

#[test]
fn the_binding_limit_is_named_with_the_tier_and_the_wait() {
    let router = Router::builder()
        .provider_with(openai("openai"), ProviderOptions::new().tier("tier-1"))
        .build()
        .unwrap();
    // OpenAI's tier-1 gives gpt-image-1 5 images per minute (the whole limit is used): 20
    // one-image requests take 4 windows.
    let f = router
        .forecast(&Workload::new().with(WorkItem::new(20).quality(Quality::Low)))
        .unwrap();
    assert_eq!(f.drain_secs, Some(180.0));
    match f.binding() {
        Some(Constraint::RateLimit {
            provider,
            tier,
            dimension,
            limit,
            waited_secs,
            ..
        }) => {
            assert_eq!(provider, "openai");
            assert_eq!(tier.as_deref(), Some("tier-1"));
            assert_eq!((*dimension, *limit), (Dimension::Images, 5));
            assert_eq!(*waited_secs, 180.0);
        }
        other => panic!("{other:?}"),
    }
    let text = f.binding().unwrap().to_string();
    assert!(
        text.starts_with("images per minute of gpt-image-1 on `openai` at tier-1 (5 per minute)"),
        "{text}"
    );
    // High-quality portraits weigh 6240 tokens: the guide preset's 250,000 TPM binds before
    // its 6 requests per minute when n = 10 (tier-1's 5 images per minute would never fit
    // n = 10).
    let router = Router::builder()
        .provider_with(
            openai("openai"),
            ProviderOptions::new().tier("guide-tier-1"),
        )
        .build()
        .unwrap();
    let heavy = Workload::new().with(
        WorkItem::new(8)
            .quality(Quality::High)
            .size(Size::PORTRAIT)
            .n(10),
    );
    let f = router.forecast(&heavy).unwrap();
    assert!(
        matches!(
            f.binding(),
            Some(Constraint::RateLimit {
                dimension: Dimension::Tokens,
                limit: 250_000,
                ..
            })
        ),
        "{f}"
    );
    // 62,400 tokens a request: 4 per window; 8 requests take 2 windows.
    assert_eq!(f.drain_secs, Some(60.0));
}

#[test]
fn a_router_budget_stops_the_run_and_says_when_it_resets() {
    let budget = Budget::new(0.10, BudgetPeriod::Custom(Duration::from_secs(3600))).unwrap();
    let router = Router::builder()
        .provider(openai("a"))
        .provider(openai("b"))
        .budget(budget)
        .build()
        .unwrap();
    // Low squares cost about $0.0110 each (272 output tokens at $40 / 1M plus the prompt).
    let f = router
        .forecast(&Workload::new().with(WorkItem::new(20).quality(Quality::Low).size(Size::SQUARE)))
        .unwrap();
    assert_eq!(f.served_requests, 9, "{f}");
    assert!(f.cost_usd <= 0.10, "{f}");
    match f.binding() {
        Some(Constraint::Budget {
            ledger,
            budget,
            after_images,
            then,
            resets_in_secs,
            ..
        }) => {
            assert_eq!(ledger, "router");
            assert_eq!(budget, "$0.10/1h0m0s");
            assert_eq!(*after_images, 9);
            assert!(then.is_empty());
            assert!(*resets_in_secs <= 3600);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.unserved[0].requests, 11);
    assert!(
        f.unserved[0]
            .reason
            .contains("the router's $0.10/1h0m0s budget"),
        "{}",
        f.unserved[0].reason
    );
}

#[test]
fn the_cheapest_faithful_alternative_lowers_only_the_quality() {
    let router = Router::builder()
        .provider_with(openai("openai"), ProviderOptions::new().rpm(60))
        .build()
        .unwrap();
    let work = Workload::new()
        .with(
            WorkItem::new(30)
                .quality(Quality::High)
                .size(Size::LANDSCAPE)
                .n(2),
        )
        .with(
            WorkItem::new(10)
                .quality(Quality::Low)
                .size(Size::LANDSCAPE),
        );
    let f = router.forecast(&work).unwrap();
    let qualities: Vec<Quality> = f.alternatives.iter().map(|a| a.quality).collect();
    assert_eq!(qualities, vec![Quality::Medium, Quality::Low]);
    let cheapest = f.cheapest_alternative().unwrap();
    assert_eq!(cheapest.quality, Quality::Low);
    assert_eq!(cheapest.changed_requests, 30);
    // 1536x1024: high 6208, medium 1568, low 400 output tokens an image, at $40 / 1M.
    let prompt = 25.0 * 5.0 / 1e6;
    let expect_low = 30.0 * (prompt + 2.0 * 400.0 * 40.0 / 1e6);
    let low_part = 10.0 * (prompt + 400.0 * 40.0 / 1e6);
    assert!(
        (cheapest.cost_usd - (expect_low + low_part)).abs() < 1e-6,
        "{} vs {}",
        cheapest.cost_usd,
        expect_low + low_part
    );
    assert!(f.alternatives[0].cost_usd < f.cost_usd);
    assert!(
        f.to_string()
            .contains("cheaper: quality low for the 30 request(s) above it"),
        "{f}"
    );
}

#[test]
fn requests_that_can_never_fit_and_unknown_prices_are_explained() {
    let day = Budget::new(5.0, BudgetPeriod::Day).unwrap();
    // A model the catalog knows without a price (`like` never copies prices).
    let cat = std::sync::Arc::new(
        image_router::catalog::Catalog::builtin()
            .with_overrides("[models.\"unpriced\"]\nlike = \"gpt-image-1\"\n", "x.toml")
            .unwrap(),
    );
    let priced = |name: &str| {
        OpenAi::builder()
            .name(name)
            .api_key("k")
            .base_url("http://127.0.0.1:9/v1")
            .catalog(cat.clone())
            .build()
            .unwrap()
    };
    let router = Router::builder()
        .catalog(cat.clone())
        .provider_with(priced("small"), ProviderOptions::new().rpm(10).tpm(5_000))
        .provider_with(priced("paid"), ProviderOptions::new().budget(day))
        .build()
        .unwrap();
    // 4160 × 2 tokens never fit a 5,000-token window; `unpriced` has no price in the catalog.
    let work = Workload::new()
        .with(
            WorkItem::new(2)
                .quality(Quality::High)
                .size(Size::SQUARE)
                .n(2),
        )
        .with(WorkItem::new(1).model("unpriced"));
    let f = router.forecast(&work).unwrap();
    assert!(
        f.providers[0].not_serving[0].contains("can never fit its limit of 5000 tokens per minute"),
        "{:?}",
        f.providers[0].not_serving
    );
    // The big requests go to `paid`; `unpriced` to `small` (no budget: price unknown is fine).
    assert_eq!((f.providers[0].requests, f.providers[1].requests), (1, 2));
    assert_eq!(f.unknown_price_requests, 1);
    assert!(
        f.to_string().contains("1 request(s) of unknown price"),
        "{f}"
    );
}
