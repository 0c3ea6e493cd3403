//! Budgets over periods (day, month, UTC boundaries), several budgets reserved together, and
//! refunds: spend must never pass a cap, even under concurrency.

use crate::support::quota::*;
use image_router::budget::{try_reserve_all, BudgetError};
use image_router::clock::Clock;
use image_router::{budget::Budget, budget::BudgetLedger, budget::BudgetPeriod};
use std::time::Duration;

#[test]
fn day_budgets_reset_at_utc_midnight() {
    let (c, wall) = wall_at(NOV28_2359);
    let l = BudgetLedger::new(
        "p",
        vec![Budget::new(1.0, BudgetPeriod::Day).unwrap()],
        wall,
    )
    .unwrap();
    l.try_reserve(0.6).unwrap().commit(0.6);
    let err = l.try_reserve(0.5).unwrap_err();
    match &err {
        BudgetError::Exhausted(e) => {
            assert_eq!(e.ledger, "p");
            assert_eq!(e.resets_in, Duration::from_secs(60));
            assert_eq!(e.resets_at_unix, NOV28_2359 + 60);
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("`p`") && msg.contains("day") && msg.contains("29 Nov 2026 00:00:00"),
        "{msg}"
    );
    c.advance(Duration::from_secs(59));
    assert!(l.try_reserve(0.5).is_err());
    c.advance(Duration::from_secs(1));
    l.try_reserve(0.5).unwrap().commit(0.5);
    let s = l.snapshot();
    assert!((s.budgets[0].spent_usd - 0.5).abs() < 1e-9);
    assert!((s.lifetime_spent_usd - 1.1).abs() < 1e-9);
    assert_eq!(s.committed, 2);
}

#[test]
fn month_budgets_reset_on_the_first_utc() {
    // 2028-02-28 12:00 UTC (leap year): resets at 2028-03-01 00:00.
    let feb28_2028 = 1_835_352_000u64;
    let (c, wall) = wall_at(feb28_2028);
    let l = BudgetLedger::new(
        "r",
        vec![Budget::new(2.0, BudgetPeriod::Month).unwrap()],
        wall,
    )
    .unwrap();
    l.try_reserve(2.0).unwrap().commit(2.0);
    let BudgetError::Exhausted(e) = l.try_reserve(0.01).unwrap_err() else {
        panic!()
    };
    let mar1_2028 = 1_835_481_600u64;
    assert_eq!(e.resets_at_unix, mar1_2028);
    // Through the 29th: still exhausted.
    c.advance(Duration::from_secs(mar1_2028 - feb28_2028 - 1));
    assert!(l.try_reserve(0.01).is_err());
    c.advance(Duration::from_secs(1));
    assert!(l.try_reserve(0.01).is_ok());
    // December → January rolls the year.
    let dec31_2026_2300 = 1_798_758_000u64;
    let (c, wall) = wall_at(dec31_2026_2300);
    let l = BudgetLedger::new(
        "r",
        vec![Budget::new(1.0, BudgetPeriod::Month).unwrap()],
        wall,
    )
    .unwrap();
    l.try_reserve(1.0).unwrap().commit(1.0);
    let BudgetError::Exhausted(e) = l.try_reserve(0.5).unwrap_err() else {
        panic!()
    };
    assert_eq!(e.resets_at_unix, dec31_2026_2300 + 3600);
    c.advance(Duration::from_secs(3600));
    assert!(l.try_reserve(0.5).is_ok());
}

#[test]
fn custom_windows_and_several_budgets() {
    let (c, wall) = wall_at(NOV28_2359);
    let l = BudgetLedger::new(
        "p",
        vec![
            Budget::new(0.5, BudgetPeriod::Custom(Duration::from_secs(3600))).unwrap(),
            Budget::new(1.0, BudgetPeriod::Month).unwrap(),
        ],
        wall,
    )
    .unwrap();
    l.try_reserve(0.5).unwrap().commit(0.5);
    let BudgetError::Exhausted(e) = l.try_reserve(0.1).unwrap_err() else {
        panic!()
    };
    assert_eq!(e.period, BudgetPeriod::Custom(Duration::from_secs(3600)));
    c.advance(Duration::from_secs(3600));
    l.try_reserve(0.5).unwrap().commit(0.5);
    c.advance(Duration::from_secs(3600));
    // The hourly window has room, the month does not.
    let BudgetError::Exhausted(e) = l.try_reserve(0.1).unwrap_err() else {
        panic!()
    };
    assert_eq!(e.period, BudgetPeriod::Month);
    // Bad budgets.
    assert_eq!(
        Budget::new(0.0, BudgetPeriod::Day).unwrap_err().field,
        "limit_usd"
    );
    assert_eq!(
        Budget::new(f64::NAN, BudgetPeriod::Day).unwrap_err().field,
        "limit_usd"
    );
    assert_eq!(
        Budget::new(1.0, BudgetPeriod::Custom(Duration::ZERO))
            .unwrap_err()
            .field,
        "period"
    );
    assert!(matches!(
        l.try_reserve(-1.0).unwrap_err(),
        BudgetError::InvalidAmount { .. }
    ));
    assert!(matches!(
        l.try_reserve(f64::NAN).unwrap_err(),
        BudgetError::InvalidAmount { .. }
    ));
}

#[test]
fn a_request_costing_more_than_the_whole_budget_says_it_can_never_fit() {
    let (_c, wall) = wall_at(NOV28_2359);
    let l = BudgetLedger::new(
        "p",
        vec![Budget::new(0.1, BudgetPeriod::Day).unwrap()],
        wall,
    )
    .unwrap();
    let BudgetError::Exhausted(e) = l.try_reserve(0.1664).unwrap_err() else {
        panic!()
    };
    assert!(e.never_fits());
    let msg = e.to_string();
    assert!(msg.contains("never") && msg.contains("`p`"), "{msg}");
    // Exactly the limit fits.
    l.try_reserve(0.1).unwrap().commit(0.1);
    let BudgetError::Exhausted(e) = l.try_reserve(0.01).unwrap_err() else {
        panic!()
    };
    assert!(!e.never_fits());
    assert!(e.to_string().contains("resets"), "{e}");
}

#[test]
fn reservations_released_or_dropped_give_the_money_back() {
    let (_c, wall) = wall_at(NOV28_2359);
    let p = BudgetLedger::new(
        "p",
        vec![Budget::new(1.0, BudgetPeriod::Day).unwrap()],
        wall.clone(),
    )
    .unwrap();
    let r = BudgetLedger::new(
        "router",
        vec![Budget::new(0.3, BudgetPeriod::Day).unwrap()],
        wall,
    )
    .unwrap();
    let a = try_reserve_all(&[&p, &r], 0.2).unwrap();
    // The router budget refuses: nothing stays reserved on the provider.
    let err = try_reserve_all(&[&p, &r], 0.2).unwrap_err();
    assert!(err.to_string().contains("router"), "{err}");
    assert!((p.snapshot().reserved_usd - 0.2).abs() < 1e-9);
    drop(a);
    assert_eq!(p.snapshot().reserved_usd, 0.0);
    assert_eq!(r.snapshot().reserved_usd, 0.0);
    assert_eq!(p.snapshot().lifetime_spent_usd, 0.0);
    let b = try_reserve_all(&[&p, &r], 0.3).unwrap();
    b.release();
    assert_eq!(r.snapshot().budgets[0].remaining_usd, 0.3);
}

#[test]
fn concurrent_reservations_never_overspend() {
    let (_c, wall) = wall_at(NOV28_2359);
    let l = BudgetLedger::new(
        "p",
        vec![Budget::new(1.0, BudgetPeriod::Day).unwrap()],
        wall,
    )
    .unwrap();
    let per = 0.16665; // high 1024² gpt-image-1 with a short prompt
    let handles: Vec<_> = (0..1000)
        .map(|i| {
            let l = l.clone();
            std::thread::spawn(move || match l.try_reserve(per) {
                Ok(r) => {
                    // Some requests fail after reserving.
                    if i % 7 == 0 {
                        r.release();
                        0.0
                    } else {
                        let actual = per * 0.99;
                        r.commit(actual);
                        actual
                    }
                }
                Err(_) => 0.0,
            })
        })
        .collect();
    let total: f64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let s = l.snapshot();
    assert!(s.budgets[0].spent_usd <= 1.0 + 1e-9, "{s:?}");
    assert!(
        (s.lifetime_spent_usd - total).abs() < 1e-6,
        "{} vs {total}",
        s.lifetime_spent_usd
    );
    assert_eq!(s.reserved_usd, 0.0);
    assert!(s.committed >= 5, "{s:?}");
}

#[allow(dead_code)]
fn _clock_is_object_safe(c: &dyn Clock) -> Duration {
    c.now()
}
