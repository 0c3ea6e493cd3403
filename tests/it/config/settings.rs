//! Nonsense breaker and health settings are typed errors naming the field, never a panic or a
//! silently clamped value.

use crate::support::scoring::*;
use crate::support::Fake;
use image_router::breaker::BreakerConfig;
use image_router::health::HealthConfig;
use image_router::{Provider, ProviderOptions, Router};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn nonsense_breaker_and_health_settings_are_typed_errors_naming_the_field() {
    let a = Fake::new("a").arc();
    let bad_breakers = [
        (
            BreakerConfig {
                failure_ratio: f64::NAN,
                ..BreakerConfig::default()
            },
            "failure_ratio",
        ),
        (
            BreakerConfig {
                failure_ratio: -0.5,
                ..BreakerConfig::default()
            },
            "failure_ratio",
        ),
        (
            BreakerConfig {
                ramp_start: 2.0,
                ..BreakerConfig::default()
            },
            "ramp_start",
        ),
        (
            BreakerConfig {
                cool_down: Duration::ZERO,
                ..BreakerConfig::default()
            },
            "cool_down",
        ),
        (
            BreakerConfig {
                cool_down_multiplier: f64::NAN,
                ..BreakerConfig::default()
            },
            "cool_down_multiplier",
        ),
    ];
    for (cfg, field) in bad_breakers {
        let err = builder_with(&[&a]).breaker(cfg).build().unwrap_err();
        assert!(err.field.contains(field), "{field}: {err:?}");
        assert!(err.field.contains("breaker"), "{field}: {err:?}");
    }
    let bad_health = [(
        HealthConfig {
            window: Duration::ZERO,
            ..HealthConfig::default()
        },
        "window",
    )];
    for (cfg, field) in bad_health {
        let err = builder_with(&[&a]).health(cfg).build().unwrap_err();
        assert!(err.field.contains(field), "{field}: {err:?}");
    }
    for w in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = Router::builder()
            .provider_arc(
                Arc::clone(&a) as Arc<dyn Provider>,
                ProviderOptions::new().weight(w),
            )
            .build()
            .unwrap_err();
        assert_eq!(err.field, "providers[0].weight");
    }
}
