//! Spend budgets and cost accounting.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use image_router::budget::{
    reserve_cost, try_reserve_all, Budget, BudgetError, BudgetLedger, BudgetPeriod, WallClock,
};
use image_router::catalog::Catalog;
use image_router::clock::ManualClock;
use image_router::quota::cost::{self, CostBasis, CostEstimator, PriceUnknown};
use image_router::quota::tokens;
use image_router::{GenerateRequest, ImageRequest, Quality, Size};
use image_router::{TokenDetails, Usage};

/// 2026-01-31T23:59:00Z
const JAN_31_2359: u64 = 1_769_903_940;

fn at(unix: u64) -> (ManualClock, WallClock) {
    let clock = ManualClock::new();
    let wall = WallClock::new(
        UNIX_EPOCH + Duration::from_secs(unix),
        Arc::new(clock.clone()),
    );
    (clock, wall)
}

fn ledger(name: &str, budgets: &[(f64, BudgetPeriod)], wall: &WallClock) -> BudgetLedger {
    BudgetLedger::new(
        name,
        budgets
            .iter()
            .map(|&(l, p)| Budget::new(l, p).unwrap())
            .collect(),
        wall.clone(),
    )
    .unwrap()
}

#[test]
fn epoch_constant_is_right() {
    // Guard for the test's own date arithmetic: 2026-02-01T00:00:00Z is 60 s later.
    let feb1 = httpdate::parse_http_date("Sun, 01 Feb 2026 00:00:00 GMT").unwrap();
    assert_eq!(feb1, UNIX_EPOCH + Duration::from_secs(JAN_31_2359 + 60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_requests_never_exceed_one_dollar() {
    let (_clock, wall) = at(JAN_31_2359 - 3600);
    let router = ledger("router", &[(1.00, BudgetPeriod::Day)], &wall);
    let mut tasks = Vec::new();
    for i in 0..1000u64 {
        let router = router.clone();
        tasks.push(tokio::spawn(async move {
            // Estimates between $0.011 and $0.167; actual cost 80–100 % of the estimate;
            // every seventh request fails and releases.
            let est = 0.011 + (i % 13) as f64 * 0.013;
            match router.try_reserve(est) {
                Ok(r) => {
                    tokio::task::yield_now().await;
                    if i % 7 == 0 {
                        r.release();
                        None
                    } else {
                        let actual = est * (0.8 + (i % 5) as f64 * 0.05);
                        r.commit(actual);
                        Some(actual)
                    }
                }
                Err(BudgetError::Exhausted(e)) => {
                    assert_eq!(e.ledger, "router");
                    assert!(e.spent_usd + e.reserved_usd + est > 1.0);
                    None
                }
                Err(other) => panic!("{other}"),
            }
        }));
    }
    let mut committed = Vec::new();
    for t in tasks {
        if let Some(c) = t.await.unwrap() {
            committed.push(c);
        }
    }
    let snap = router.snapshot();
    let sum: f64 = committed.iter().sum();
    assert!(!committed.is_empty());
    assert!(
        snap.lifetime_spent_usd <= 1.0 + 1e-12,
        "{}",
        snap.lifetime_spent_usd
    );
    assert!(snap.budgets[0].spent_usd <= 1.0 + 1e-12);
    // The ledger's total is the sum of the committed costs (nano-dollar rounding per commit).
    assert!(
        (snap.lifetime_spent_usd - sum).abs() <= committed.len() as f64 * 1e-9,
        "{} vs {sum}",
        snap.lifetime_spent_usd
    );
    assert_eq!(snap.committed, committed.len() as u64);
    assert_eq!(snap.reserved_usd, 0.0);
    // The budget was actually used: the refusals were real. Every refusal saw spent +
    // reserved above $0.83, but reservations then commit at only 80-100 % of their estimate
    // and every seventh is released, so the final spend depends on the interleaving; $0.60
    // is well below any interleaving seen (~$0.80-0.95) and far above a broken ledger's.
    assert!(snap.lifetime_spent_usd > 0.6, "{}", snap.lifetime_spent_usd);
}

#[test]
fn day_budget_resets_at_utc_midnight() {
    let (clock, wall) = at(JAN_31_2359);
    let l = ledger("openai", &[(1.0, BudgetPeriod::Day)], &wall);
    l.try_reserve(0.9).unwrap().commit(0.9);
    let e = match l.try_reserve(0.2).unwrap_err() {
        BudgetError::Exhausted(e) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(e.ledger, "openai");
    assert_eq!(e.period, BudgetPeriod::Day);
    assert_eq!(e.resets_at_unix, JAN_31_2359 + 60);
    assert_eq!(e.resets_in, Duration::from_secs(60));
    let msg = e.to_string();
    assert!(
        msg.contains("openai") && msg.contains("day") && msg.contains("01 Feb 2026"),
        "{msg}"
    );
    clock.advance(Duration::from_secs(59));
    assert!(l.try_reserve(0.2).is_err());
    clock.advance(Duration::from_secs(1));
    l.try_reserve(0.2).unwrap().commit(0.2);
    let snap = l.snapshot();
    assert!((snap.budgets[0].spent_usd - 0.2).abs() < 1e-9);
    assert!((snap.lifetime_spent_usd - 1.1).abs() < 1e-9);
}

#[test]
fn month_budget_resets_on_the_first_and_day_budget_daily() {
    // 2026-02-27T12:00:00Z: February 2026 has 28 days.
    let feb27_noon = JAN_31_2359 + 60 + 26 * 86_400 + 12 * 3600;
    let (clock, wall) = at(feb27_noon);
    let l = ledger(
        "router",
        &[(2.0, BudgetPeriod::Day), (3.0, BudgetPeriod::Month)],
        &wall,
    );
    l.try_reserve(2.0).unwrap().commit(2.0);
    // The day budget is full; next day the month budget has $1 left.
    clock.advance(Duration::from_secs(12 * 3600));
    l.try_reserve(1.0).unwrap().commit(1.0);
    let e = match l.try_reserve(0.5).unwrap_err() {
        BudgetError::Exhausted(e) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(e.period, BudgetPeriod::Month);
    let mar1 = httpdate::parse_http_date("Sun, 01 Mar 2026 00:00:00 GMT").unwrap();
    assert_eq!(UNIX_EPOCH + Duration::from_secs(e.resets_at_unix), mar1);
    assert_eq!(e.resets_in, Duration::from_secs(86_400));
    // A month in milliseconds: on March 1st both reset.
    clock.advance(Duration::from_secs(86_400));
    l.try_reserve(2.0).unwrap().commit(2.0);
    let snap = l.snapshot();
    assert_eq!(snap.budgets[1].spent_usd, 2.0);
    assert_eq!(snap.lifetime_spent_usd, 5.0);
    // December → January rolls the year.
    let dec31 = httpdate::parse_http_date("Thu, 31 Dec 2026 23:00:00 GMT").unwrap();
    let c2 = ManualClock::new();
    let l2 = BudgetLedger::new(
        "x",
        vec![Budget::new(1.0, BudgetPeriod::Month).unwrap()],
        WallClock::new(dec31, Arc::new(c2.clone())),
    )
    .unwrap();
    let r = l2.snapshot().budgets[0].resets_at_unix;
    let jan1 = httpdate::parse_http_date("Fri, 01 Jan 2027 00:00:00 GMT").unwrap();
    assert_eq!(UNIX_EPOCH + Duration::from_secs(r), jan1);
}

#[test]
fn custom_window_repeats_from_creation() {
    let (clock, wall) = at(1_000_000);
    let l = ledger(
        "p",
        &[(0.5, BudgetPeriod::Custom(Duration::from_secs(3600)))],
        &wall,
    );
    l.try_reserve(0.5).unwrap().commit(0.5);
    assert!(l.try_reserve(0.01).is_err());
    clock.advance(Duration::from_secs(3599));
    assert!(l.try_reserve(0.01).is_err());
    clock.advance(Duration::from_secs(1));
    assert!(l.try_reserve(0.5).is_ok());
}

#[test]
fn in_flight_reservations_carry_over_a_period_change() {
    let (clock, wall) = at(JAN_31_2359);
    let l = ledger("p", &[(1.0, BudgetPeriod::Day)], &wall);
    let r = l.try_reserve(0.6).unwrap();
    clock.advance(Duration::from_secs(120));
    // New day: spent is 0 but the $0.60 in flight still counts.
    assert!(l.try_reserve(0.5).is_err());
    r.commit(0.6);
    assert!((l.snapshot().budgets[0].spent_usd - 0.6).abs() < 1e-9);
}

#[test]
fn release_and_drop_refund() {
    let (_c, wall) = at(JAN_31_2359);
    let l = ledger("p", &[(1.0, BudgetPeriod::Day)], &wall);
    let r = l.try_reserve(1.0).unwrap();
    assert!(l.try_reserve(0.01).is_err());
    r.release();
    let r = l.try_reserve(1.0).unwrap();
    assert_eq!(l.snapshot().budgets[0].remaining_usd, 0.0);
    drop(r);
    assert_eq!(l.snapshot().budgets[0].remaining_usd, 1.0);
    assert_eq!(l.snapshot().lifetime_spent_usd, 0.0);
    assert_eq!(l.snapshot().committed, 0);
}

#[test]
fn two_ledgers_reserve_together_or_not_at_all() {
    let (_c, wall) = at(JAN_31_2359);
    let provider = ledger("openai", &[(5.0, BudgetPeriod::Day)], &wall);
    let router = ledger("router", &[(1.0, BudgetPeriod::Month)], &wall);
    let r = try_reserve_all(&[&provider, &router], 0.7).unwrap();
    assert!((provider.snapshot().reserved_usd - 0.7).abs() < 1e-9);
    assert!((router.snapshot().reserved_usd - 0.7).abs() < 1e-9);
    // The router refuses the second: the provider's part is released.
    let e = try_reserve_all(&[&provider, &router], 0.5).unwrap_err();
    assert!(
        matches!(&e, BudgetError::Exhausted(x) if x.ledger == "router"),
        "{e}"
    );
    assert!((provider.snapshot().reserved_usd - 0.7).abs() < 1e-9);
    r.commit(0.65);
    for l in [&provider, &router] {
        let s = l.snapshot();
        assert_eq!(s.reserved_usd, 0.0);
        assert!((s.lifetime_spent_usd - 0.65).abs() < 1e-9);
    }
    // Serializable snapshot.
    let json = serde_json::to_value(router.snapshot()).unwrap();
    assert_eq!(json["name"], "router");
    assert_eq!(json["budgets"][0]["period"], "month");
}

#[test]
fn bad_budgets_are_config_errors_naming_the_field() {
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(
            Budget::new(bad, BudgetPeriod::Day).unwrap_err().field,
            "limit_usd"
        );
    }
    assert_eq!(
        Budget::new(1.0, BudgetPeriod::Custom(Duration::ZERO))
            .unwrap_err()
            .field,
        "period"
    );
    let (_c, wall) = at(0);
    let e = BudgetLedger::new(
        "p",
        vec![
            Budget::new(1.0, BudgetPeriod::Day).unwrap(),
            Budget {
                limit_usd: -2.0,
                period: BudgetPeriod::Month,
            },
        ],
        wall,
    )
    .unwrap_err();
    assert_eq!(e.field, "budgets[1].limit_usd");
}

#[test]
fn invalid_amounts_are_refused() {
    let (_c, wall) = at(0);
    let l = ledger("p", &[], &wall);
    assert!(matches!(
        l.try_reserve(f64::NAN),
        Err(BudgetError::InvalidAmount { .. })
    ));
    assert!(l.try_reserve(-0.1).is_err());
    // No budgets: anything valid is accepted and counted.
    l.try_reserve(1e6).unwrap().commit(3.0);
    assert_eq!(l.snapshot().lifetime_spent_usd, 3.0);
}

fn req(model: &str, quality: Quality, size: Size, n: u8) -> ImageRequest {
    GenerateRequest::new("a red fox in the snow, watercolour")
        .model(model)
        .quality(quality)
        .size(size)
        .n(n)
        .into()
}

#[test]
fn gpt_image_1_high_square_costs_about_0_167() {
    let cat = Catalog::builtin();
    let m = cat.model("gpt-image-1").unwrap();
    let r = req("gpt-image-1", Quality::High, Size::SQUARE, 1);
    let est = tokens::estimate(&r, Some(m), cat.default_output_tokens_per_image());
    assert_eq!(est.image_output, 4160);
    let usd = cost::estimate_usd(m, &r, &est).unwrap();
    // 4160 × $40 / 1M = $0.1664, plus 9 prompt tokens × $5 / 1M.
    assert!((usd - (0.1664 + 9.0 * 5e-6)).abs() < 1e-12, "{usd}");
    assert!((usd - 0.167).abs() < 0.001);
    // n multiplies; low is far cheaper.
    let r4 = req("gpt-image-1", Quality::Low, Size::PORTRAIT, 4);
    let est4 = tokens::estimate(&r4, Some(m), 4160);
    let usd4 = cost::estimate_usd(m, &r4, &est4).unwrap();
    assert!((usd4 - (4.0 * 408.0 * 40e-6 + 9.0 * 5e-6)).abs() < 1e-12);
}

#[test]
fn usage_reconciles_the_cost() {
    let cat = Catalog::builtin();
    let m = cat.model("gpt-image-1").unwrap();
    let r = req("gpt-image-1", Quality::High, Size::SQUARE, 1);
    let est = tokens::estimate(&r, Some(m), 4160);
    let usage = Usage::new(50, 4160)
        .with_input_tokens_details(TokenDetails::new(50, 0))
        .with_output_tokens_details(None)
        .with_total_tokens(4210);
    let usd = cost::usage_usd(m, &r, Some(&usage), &est).unwrap();
    assert!((usd - (50.0 * 5e-6 + 4160.0 * 40e-6)).abs() < 1e-12);
    // Without usage: the estimate.
    assert_eq!(
        cost::usage_usd(m, &r, None, &est),
        cost::estimate_usd(m, &r, &est)
    );
    let c = CostEstimator::new()
        .actual("gpt-image-1", Some(m), &r, Some(&usage), &est)
        .unwrap();
    assert_eq!(c.basis, CostBasis::Usage);
    // gpt-image-1-mini bills at its own prices.
    let mini = cat.model("gpt-image-1-mini").unwrap();
    let usd = cost::usage_usd(mini, &r, Some(&usage), &est).unwrap();
    assert!((usd - (50.0 * 2e-6 + 4160.0 * 8e-6)).abs() < 1e-12);
}

#[test]
fn dall_e_3_is_priced_per_image() {
    let cat = Catalog::builtin();
    let m = cat.model("dall-e-3").unwrap();
    let est = tokens::TokenEstimate::default();
    let wide = Size::Dims {
        width: 1792,
        height: 1024,
    };
    let c = |q, s| cost::estimate_usd(m, &req("dall-e-3", q, s, 1), &est).unwrap();
    assert_eq!(c(Quality::Standard, Size::SQUARE), 0.04);
    assert_eq!(c(Quality::Standard, wide), 0.08);
    assert_eq!(c(Quality::Hd, Size::SQUARE), 0.08);
    assert_eq!(c(Quality::Hd, wide), 0.12);
    // Defaults: standard 1024x1024.
    let r: ImageRequest = GenerateRequest::new("x").model("dall-e-3").into();
    assert_eq!(cost::estimate_usd(m, &r, &est), Some(0.04));
    let e = CostEstimator::new()
        .estimate("dall-e-3", Some(m), &r, &est)
        .unwrap();
    assert_eq!(e.basis, CostBasis::PerImage);
}

#[test]
fn unknown_price_needs_a_fallback_when_a_budget_is_set() {
    // A model the catalog knows without a price (`like` never copies prices).
    let cat = Catalog::builtin()
        .with_overrides("[models.\"unpriced\"]\nlike = \"gpt-image-1\"\n", "x.toml")
        .unwrap();
    let m = cat.model("unpriced");
    let r = req("unpriced", Quality::High, Size::SQUARE, 2);
    let est = tokens::estimate(&r, m, 4160);
    let (_c, wall) = at(0);
    let budgeted = ledger("openai", &[(1.0, BudgetPeriod::Day)], &wall);
    let unbudgeted = ledger("router", &[], &wall);
    let unknown = CostEstimator::new().estimate("unpriced", m, &r, &est);
    assert_eq!(
        unknown,
        Err(PriceUnknown {
            model: "unpriced".into()
        })
    );
    let e = reserve_cost(&[&unbudgeted, &budgeted], unknown.clone()).unwrap_err();
    assert!(matches!(&e, BudgetError::PriceUnknown { ledger, .. } if ledger == "openai"));
    assert!(
        e.to_string()
            .contains("price of model `unpriced` is unknown"),
        "{e}"
    );
    // Without budgets it goes through (nothing to protect).
    assert!(reserve_cost(&[&unbudgeted], unknown).is_ok());
    // With a fallback the budget holds: $0.30 × 2 images.
    let fb = CostEstimator::new()
        .with_fallback_usd_per_image(0.30)
        .unwrap();
    let c = fb.estimate("unpriced", m, &r, &est).unwrap();
    assert_eq!(c.basis, CostBasis::Fallback);
    assert!((c.usd - 0.6).abs() < 1e-12);
    let res = reserve_cost(&[&budgeted], Ok(c)).unwrap();
    assert!((res.reserved_usd() - 0.6).abs() < 1e-9);
    assert!(reserve_cost(&[&budgeted], Ok(c)).is_err());
    assert_eq!(
        CostEstimator::new()
            .with_fallback_usd_per_image(-1.0)
            .unwrap_err()
            .field,
        "fallback_usd_per_image"
    );
    // An unknown model (no catalog entry) uses the fallback too.
    assert!(fb.estimate("my-model", None, &r, &est).is_ok());
}
