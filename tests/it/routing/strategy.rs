//! Score, strategies and request classes.

use std::sync::Arc;
use std::time::Duration;

use image_router::clock::{ManualClock, SharedClock};
use image_router::health::{Health, HealthConfig};
use image_router::score::{DefaultScorer, ScoreInputs, ScoreWeights, Scorer};
use image_router::Outcome;
use image_router::{apply_classes, ClassPolicy, RequestClass};
use image_router::{Candidate, Ranking, Strategy};
use rand::rngs::SmallRng;
use rand::SeedableRng;

fn inputs(latency_ms: f64, priority: usize) -> ScoreInputs {
    ScoreInputs {
        latency_ms,
        priority,
        ..ScoreInputs::default()
    }
}

fn rng() -> SmallRng {
    SmallRng::seed_from_u64(2024)
}

#[test]
fn region_formula_is_expressible() {
    let scorer = DefaultScorer::new(ScoreWeights::REGION);
    for (a, l) in [(1.0, 50.0), (0.9, 250.0), (0.5, 1000.0), (0.99, 3.0)] {
        let s = scorer.score(&ScoreInputs {
            availability: a,
            latency_ms: l,
            // Ignored by the region weights:
            headroom: 0.1,
            budget_left: Some(0.2),
            priority: 7,
            weight: 1.0,
        });
        assert!(
            (s.total - a * 1000.0 / l).abs() < 1e-9,
            "{a} {l}: {}",
            s.total
        );
        assert_eq!((s.headroom, s.budget, s.priority), (1.0, 1.0, 1.0));
    }
    // And the ranking follows it: 0.9 × 1000/100 = 9 beats 1.0 × 1000/200 = 5.
    let c = [
        Candidate::new(
            0,
            ScoreInputs {
                availability: 1.0,
                ..inputs(200.0, 0)
            },
        ),
        Candidate::new(
            1,
            ScoreInputs {
                availability: 0.9,
                ..inputs(100.0, 1)
            },
        ),
    ];
    let r = Strategy::Scored.rank(&c, &scorer, &mut rng());
    assert_eq!(r.order(), &[1, 0]);
}

#[test]
fn breakdown_shows_every_component_and_serializes() {
    let s = DefaultScorer::default().score(&ScoreInputs {
        availability: 0.9,
        latency_ms: 500.0,
        headroom: 0.5,
        budget_left: Some(0.25),
        priority: 1,
        weight: 2.0,
    });
    assert!((s.availability - 0.81).abs() < 1e-12);
    // 1000 / (500 ms + 100 ms slack).
    assert!((s.latency - 1000.0 / 600.0).abs() < 1e-12);
    // Headroom 0.5 is above the 0.05 knee: full.
    assert!((s.headroom - 1.0).abs() < 1e-12);
    assert!((s.budget - 0.5).abs() < 1e-12);
    assert!((s.priority - 0.5).abs() < 1e-12);
    let product = s.availability * s.latency * s.headroom * s.budget * s.priority * s.weight;
    assert!((s.total - product).abs() < 1e-12);
    let json = serde_json::to_value(s).unwrap();
    for key in [
        "availability",
        "latency",
        "headroom",
        "budget",
        "priority",
        "weight",
        "total",
        "inputs",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
}

#[test]
fn bad_inputs_never_produce_nan_or_panic() {
    let s = DefaultScorer::default().score(&ScoreInputs {
        availability: f64::NAN,
        latency_ms: -5.0,
        headroom: 7.0,
        budget_left: Some(f64::INFINITY),
        priority: usize::MAX,
        weight: f64::NAN,
    });
    assert!(s.total.is_finite() && s.total >= 0.0);
}

#[test]
fn ordered_is_strict_priority_dropping_open_breakers_and_moving_no_headroom_last() {
    let mut c: Vec<Candidate> = (0..5)
        .map(|i| Candidate::new(i, inputs(1000.0 - i as f64 * 100.0, i)))
        .collect();
    c[0].breaker_open = true;
    c[1].no_headroom = true;
    let r = Strategy::Ordered.rank(&c, &DefaultScorer::default(), &mut rng());
    assert_eq!(r.order(), &[2, 3, 4, 1]);
    assert_eq!(r.skipped(), &[0]);
    assert_eq!(r.first(), Some(2));
}

#[test]
fn scored_puts_the_best_score_first_and_the_rest_by_score() {
    let c = [
        Candidate::new(10, inputs(2000.0, 0)),
        Candidate::new(11, inputs(100.0, 1)),
        Candidate::new(12, inputs(400.0, 2)),
    ];
    let r = Strategy::Scored.rank(&c, &DefaultScorer::default(), &mut rng());
    assert_eq!(r.order(), &[11, 12, 10]);
    // Scored also keeps the shared rules.
    let mut c2 = c;
    c2[1].breaker_open = true;
    c2[2].no_headroom = true;
    let r = Strategy::Scored.rank(&c2, &DefaultScorer::default(), &mut rng());
    assert_eq!(r.order(), &[10, 12]);
    assert_eq!(r.skipped(), &[11]);
}

/// Two providers, 50 ms and 500 ms, measured by `Health`; then their speeds swap.
#[test]
fn scored_follows_measured_latency_and_moves_when_speeds_swap() {
    let clock = ManualClock::new();
    let shared: SharedClock = Arc::new(clock.clone());
    let health: Vec<Health> = (0..2)
        .map(|_| {
            let config = HealthConfig {
                default_latency: Duration::from_millis(200),
                ..HealthConfig::default()
            };
            Health::new(config, Arc::clone(&shared))
        })
        .collect();
    let scorer = DefaultScorer::default();
    let mut rng = rng();
    let mut ranking = Ranking::new();
    let mut run = |speeds: [u64; 2], requests: usize| -> [usize; 2] {
        let mut served = [0usize; 2];
        for _ in 0..requests {
            let candidates: Vec<Candidate> = health
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let s = h.snapshot();
                    Candidate::new(
                        i,
                        ScoreInputs {
                            availability: s.availability,
                            latency_ms: s.cost_ms,
                            ..inputs(0.0, i)
                        },
                    )
                })
                .collect();
            Strategy::Scored.rank_into(&candidates, &scorer, &mut rng, &mut ranking);
            let pick = ranking.first().unwrap();
            let call = health[pick].start();
            clock.advance(Duration::from_millis(speeds[pick]));
            call.finish(Outcome::Success);
            served[pick] += 1;
            clock.advance(Duration::from_secs(1));
        }
        served
    };
    // Both unknown (200 ms assumed): each is tried once, then the measured speeds decide.
    let first = run([500, 50], 200);
    assert!(
        first[1] >= 190,
        "fast provider 1 should take most traffic: {first:?}"
    );
    let second = run([50, 500], 200);
    assert!(
        second[0] >= 190,
        "traffic moves to provider 0 after the swap: {second:?}"
    );
}

#[test]
fn weighted_spreads_the_first_pick_by_weight() {
    let weights = [1.0, 2.0, 5.0];
    let c: Vec<Candidate> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            Candidate::new(
                i,
                ScoreInputs {
                    weight: w,
                    ..inputs(300.0, i)
                },
            )
        })
        .collect();
    let mut rng = rng();
    let mut ranking = Ranking::new();
    let mut firsts = [0usize; 3];
    let n = 40_000;
    for _ in 0..n {
        Strategy::Weighted.rank_into(&c, &DefaultScorer::default(), &mut rng, &mut ranking);
        firsts[ranking.first().unwrap()] += 1;
        assert_eq!(ranking.order().len(), 3);
    }
    for (i, w) in weights.iter().enumerate() {
        let share = firsts[i] as f64 / n as f64;
        let expected = w / 8.0;
        assert!(
            (share - expected).abs() < 0.015,
            "provider {i}: {share:.3} vs {expected:.3}"
        );
    }
}

#[test]
fn weighted_favours_headroom_and_keeps_score_order_for_fallbacks() {
    let c = [
        Candidate::new(
            0,
            ScoreInputs {
                headroom: 1.0,
                ..inputs(300.0, 0)
            },
        ),
        Candidate::new(
            1,
            ScoreInputs {
                headroom: 0.25,
                ..inputs(100.0, 1)
            },
        ),
        Candidate::new(
            2,
            ScoreInputs {
                headroom: 1.0,
                weight: 0.0,
                ..inputs(50.0, 2)
            },
        ),
    ];
    let scorer = DefaultScorer::new(ScoreWeights {
        headroom: 0.0,
        ..ScoreWeights::DEFAULT
    });
    let mut rng = rng();
    let mut zero_first = 0;
    let n = 10_000;
    let mut ranking = Ranking::new();
    for _ in 0..n {
        Strategy::Weighted.rank_into(&c, &scorer, &mut rng, &mut ranking);
        let order = ranking.order();
        assert_ne!(order[0], 2, "weight 0 is never the first pick");
        // The fallbacks are in score order: provider 1 (100 ms) before 0 (300 ms).
        let rest: Vec<usize> = order.iter().copied().filter(|&i| i != order[0]).collect();
        if order[0] == 0 {
            zero_first += 1;
            assert_eq!(rest, vec![1, 2]);
        } else {
            assert_eq!(rest, vec![0, 2]);
        }
    }
    // Draws 0.8 / 0.2 and the duel goes to more headroom: P(1 first) = 0.2² = 0.04.
    let share = zero_first as f64 / n as f64;
    assert!((share - 0.96).abs() < 0.01, "{share}");
}

#[test]
fn weighted_without_mass_falls_back_to_score_order() {
    let c = [
        Candidate::new(
            0,
            ScoreInputs {
                weight: 0.0,
                ..inputs(300.0, 0)
            },
        ),
        Candidate::new(
            1,
            ScoreInputs {
                weight: 0.0,
                ..inputs(100.0, 1)
            },
        ),
    ];
    let r = Strategy::Weighted.rank(&c, &DefaultScorer::new(ScoreWeights::REGION), &mut rng());
    assert_eq!(r.order(), &[0, 1], "equal (zero) scores: priority order");
}

#[test]
fn classes_filter_reserved_providers_and_rank_preferred_ones_first() {
    let interactive = RequestClass::INTERACTIVE;
    let batch = RequestClass::BATCH;
    let policies = [
        ClassPolicy::reserved([interactive.clone()]), // 0: direct high tier
        ClassPolicy::preferred([batch.clone()]),      // 1: proxy
        ClassPolicy::open(),                          // 2: another proxy
    ];
    let base: Vec<Candidate> = vec![
        Candidate::new(0, inputs(50.0, 0)),
        Candidate::new(1, inputs(900.0, 1)),
        Candidate::new(2, inputs(100.0, 2)),
    ];
    let scorer = DefaultScorer::default();

    let mut c = base.clone();
    apply_classes(&mut c, Some(&batch), |i| policies.get(i));
    let r = Strategy::Scored.rank(&c, &scorer, &mut rng());
    assert_eq!(
        r.order(),
        &[1, 2],
        "batch: reserved 0 excluded, preferred 1 first though slower"
    );

    let mut c = base.clone();
    apply_classes(&mut c, Some(&interactive), |i| policies.get(i));
    let r = Strategy::Scored.rank(&c, &scorer, &mut rng());
    assert_eq!(r.order(), &[0, 2, 1]);

    let mut c = base;
    apply_classes(&mut c, None, |i| policies.get(i));
    assert_eq!(c.iter().map(|c| c.index).collect::<Vec<_>>(), vec![1, 2]);

    // A class round-trips as a plain string in config.
    let p: ClassPolicy = serde_json::from_str(r#"{"reserved_for":["enterprise"]}"#).unwrap();
    assert!(p.admits(Some(&RequestClass::new("enterprise"))));
    assert!(!p.admits(Some(&batch)));
}

#[test]
fn scorer_is_object_safe_and_custom_scorers_plug_in() {
    struct Slowest;
    impl Scorer for Slowest {
        fn score(&self, i: &ScoreInputs) -> image_router::score::ScoreBreakdown {
            image_router::score::ScoreBreakdown {
                inputs: *i,
                total: i.latency_ms,
                ..Default::default()
            }
        }
    }
    let s: Arc<dyn Scorer> = Arc::new(Slowest);
    let c = [
        Candidate::new(0, inputs(10.0, 0)),
        Candidate::new(1, inputs(20.0, 1)),
    ];
    assert_eq!(
        Strategy::Scored.rank(&c, s.as_ref(), &mut rng()).order(),
        &[1, 0]
    );
}

mod invariants {
    use super::*;
    use proptest::prelude::*;

    fn candidate(
    ) -> impl proptest::strategy::Strategy<Value = (f64, f64, f64, f64, bool, bool, bool)> {
        (
            0.0f64..=1.0,
            1.0f64..5000.0,
            0.0f64..=1.0,
            0.0f64..4.0,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
    }

    proptest! {
        /// Every strategy returns each usable candidate exactly once, drops exactly the open
        /// breakers, and keeps the groups: preferred-with-headroom, other-with-headroom,
        /// then without headroom.
        #[test]
        fn rankings_respect_the_shared_rules(
            raw in proptest::collection::vec(candidate(), 0..24),
            seed in any::<u64>(),
        ) {
            use image_router::Strategy as Routing;
            let cands: Vec<Candidate> = raw
                .iter()
                .enumerate()
                .map(|(i, &(a, l, h, w, open, full, pref))| {
                    let mut c = Candidate::new(i * 3, ScoreInputs {
                        availability: a, latency_ms: l, headroom: h, weight: w,
                        budget_left: None, priority: i,
                    });
                    c.breaker_open = open;
                    c.no_headroom = full;
                    c.preferred = pref;
                    c
                })
                .collect();
            let mut rng = SmallRng::seed_from_u64(seed);
            for strategy in [Routing::Ordered, Routing::Scored, Routing::Weighted] {
                let r = strategy.rank(&cands, &DefaultScorer::default(), &mut rng);
                let mut seen: Vec<usize> = r.order().iter().chain(r.skipped()).copied().collect();
                seen.sort_unstable();
                let mut all: Vec<usize> = cands.iter().map(|c| c.index).collect();
                all.sort_unstable();
                prop_assert_eq!(seen, all);
                let by_index = |i: usize| cands[i / 3];
                prop_assert!(r.skipped().iter().all(|&i| by_index(i).breaker_open));
                let groups: Vec<u8> = r
                    .order()
                    .iter()
                    .map(|&i| {
                        let c = by_index(i);
                        prop_assert!(!c.breaker_open);
                        Ok((u8::from(c.no_headroom) << 1) | u8::from(!c.preferred))
                    })
                    .collect::<Result<_, _>>()?;
                prop_assert!(groups.windows(2).all(|w| w[0] <= w[1]), "{:?}", groups);
            }
        }
    }
}

#[test]
fn default_latency_slack_keeps_priority_through_millisecond_noise() {
    // The primary took 3 ms, the second 1 ms: noise next to image generation times. The
    // default scorer keeps the configured order; the raw region formula does not.
    let c = [
        Candidate::new(0, inputs(3.0, 0)),
        Candidate::new(1, inputs(1.0, 1)),
    ];
    let r = Strategy::Scored.rank(&c, &DefaultScorer::default(), &mut rng());
    assert_eq!(r.order(), &[0, 1]);
    let raw = DefaultScorer::new(ScoreWeights {
        latency_slack_ms: 0.0,
        ..ScoreWeights::DEFAULT
    });
    let r = Strategy::Scored.rank(&c, &raw, &mut rng());
    assert_eq!(r.order(), &[1, 0], "without slack 3x faster wins");
    // A real difference still wins with the slack: 8 s vs 2 s.
    let c = [
        Candidate::new(0, inputs(8000.0, 0)),
        Candidate::new(1, inputs(2000.0, 1)),
    ];
    let r = Strategy::Scored.rank(&c, &DefaultScorer::default(), &mut rng());
    assert_eq!(r.order(), &[1, 0]);
    // But not a small one: 8 s vs 6 s keeps the configured order.
    let c = [
        Candidate::new(0, inputs(8000.0, 0)),
        Candidate::new(1, inputs(6000.0, 1)),
    ];
    let r = Strategy::Scored.rank(&c, &DefaultScorer::default(), &mut rng());
    assert_eq!(r.order(), &[0, 1]);
}

#[test]
fn headroom_counts_only_below_the_knee() {
    let scorer = DefaultScorer::default();
    let at = |headroom: f64| {
        scorer
            .score(&ScoreInputs {
                headroom,
                ..ScoreInputs::default()
            })
            .headroom
    };
    assert_eq!(at(1.0), 1.0);
    assert_eq!(at(0.5), 1.0);
    assert_eq!(at(0.05), 1.0);
    assert!((at(0.025) - 0.5).abs() < 1e-12);
    assert_eq!(at(0.0), 0.0);
    // The primary keeps its traffic with one request of 25 left (tier 3's RPM), and hands
    // over when less than 2.5 % is left.
    let with_headroom = |primary: f64| {
        [
            Candidate::new(
                0,
                ScoreInputs {
                    headroom: primary,
                    ..inputs(1000.0, 0)
                },
            ),
            Candidate::new(1, inputs(1000.0, 1)),
        ]
    };
    let r = Strategy::Scored.rank(&with_headroom(1.0 / 25.0), &scorer, &mut rng());
    assert_eq!(r.order(), &[0, 1]);
    let r = Strategy::Scored.rank(&with_headroom(0.01), &scorer, &mut rng());
    assert_eq!(r.order(), &[1, 0]);
    // A knee of 1 (the region weights use it) is the raw headroom; a nonsense knee counts as 1.
    for knee in [1.0, 0.0, -3.0, f64::NAN, 7.0] {
        let s = DefaultScorer::new(ScoreWeights {
            headroom_knee: knee,
            ..ScoreWeights::DEFAULT
        })
        .score(&ScoreInputs {
            headroom: 0.5,
            ..ScoreInputs::default()
        });
        assert!((s.headroom - 0.5).abs() < 1e-12, "knee {knee}");
    }
}
