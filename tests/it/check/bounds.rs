//! The check never takes longer than its timeout, and a provider it could not check stays in
//! service. On tokio's paused clock: the timeout passes without real waiting, and the time the
//! check took is exact.

use std::sync::Arc;

use super::*;
use crate::support::{Fake, Probe};
use image_router::{CheckOptions, CheckResult, Provider};

#[tokio::test(start_paused = true)]
async fn a_hanging_provider_is_bounded_by_the_timeout_and_stays_usable() {
    let hangs = Fake::new("hangs").probe_answers(Probe::Hang).arc();
    let fine = Fake::new("fine").probe_answers(Probe::Ok).arc();
    let router = ordered()
        .provider_arc(hangs.clone() as Arc<dyn Provider>, opts())
        .provider_arc(fine.clone() as Arc<dyn Provider>, opts())
        .check_timeout(Duration::from_secs(4))
        .build()
        .unwrap();

    let started = tokio::time::Instant::now();
    let report = router.check().await;
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(4), "{took:?}");
    assert!(
        took < Duration::from_secs(5),
        "bounded by the timeout: {took:?}"
    );
    assert_eq!(report.timeout_ms, 4000);
    assert!(report.ms <= 4100, "{}", report.ms);

    let h = report.provider("hangs").unwrap();
    let m = &h.models[0];
    assert_eq!(m.result, CheckResult::Unchecked);
    assert!(!m.answered);
    assert_eq!(m.key_valid, None);
    assert!(
        m.unchecked.as_ref().unwrap().contains("timeout"),
        "{:?}",
        m.unchecked
    );
    assert!(h.denied.is_none() && m.cooled_down.is_none());
    assert!(h.usable());
    // The other provider was checked at the same time, not after.
    assert_eq!(
        report.provider("fine").unwrap().models[0].result,
        CheckResult::Offered
    );
    assert_eq!((hangs.probe_calls(), fine.probe_calls()), (1, 1));

    // Still first in line: its image endpoint may well work.
    let res = router.generate(req("gpt-image-1")).await.unwrap();
    assert_eq!(res.provider, "hangs");
    assert_eq!(hangs.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_per_call_timeout_overrides_the_setting_and_every_provider_shares_one_deadline() {
    let fakes: Vec<Arc<Fake>> = (0..5)
        .map(|i| Fake::new(&format!("p{i}")).probe_answers(Probe::Hang).arc())
        .collect();
    let mut b = ordered().check_timeout(Duration::from_secs(60));
    for f in &fakes {
        b = b.provider_arc(f.clone() as Arc<dyn Provider>, opts());
    }
    let router = b.build().unwrap();
    let started = tokio::time::Instant::now();
    let report = router
        .check_with(
            CheckOptions::new()
                .timeout(Duration::from_millis(1500))
                .models(["gpt-image-1", "gpt-image-1-mini"]),
        )
        .await;
    let took = started.elapsed();
    // Five providers, two models each, all hanging: one timeout in all, not ten.
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(2),
        "{took:?}"
    );
    for p in &report.providers {
        assert_eq!(p.models.len(), 2);
        assert!(p.models.iter().all(|m| m.result == CheckResult::Unchecked));
        assert!(p.usable());
    }
}

#[tokio::test]
async fn a_provider_without_a_cheap_check_is_reported_unchecked_and_stays_usable() {
    let custom = Fake::new("custom").arc(); // the trait's default probe: not probed
    let router = ordered()
        .provider_arc(custom.clone() as Arc<dyn Provider>, opts())
        .build()
        .unwrap();
    let report = router.check().await;
    let m = &report.providers[0].models[0];
    assert_eq!(m.result, CheckResult::Unchecked);
    assert!(m.unchecked.as_ref().unwrap().contains("without generating"));
    assert!(report.providers[0].usable());
    assert_eq!(custom.calls(), 0, "the check never generates");
    router.generate(req("gpt-image-1")).await.unwrap();
    assert_eq!(custom.calls(), 1);
}

/// One counter per provider and result (`image_router_checks_total`), read through the
/// Prometheus exporter as an operator would.
#[tokio::test]
async fn each_lookup_is_counted_by_provider_and_result() {
    use image_router::{ErrorKind, NotFoundKind, ProviderError};
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let fail = |name: &str, kind: ErrorKind, status: u16| {
        Fake::new(name)
            .probe_answers(Probe::Fail(
                ProviderError::new(name, kind, "no").with_status(status),
            ))
            .arc() as Arc<dyn Provider>
    };
    let router = ordered()
        .provider_arc(fail("denied", ErrorKind::Authentication, 401), opts())
        .provider_arc(
            fail(
                "missing",
                ErrorKind::NotFound {
                    what: NotFoundKind::Model,
                },
                404,
            ),
            opts(),
        )
        .provider_arc(fail("down", ErrorKind::Server, 502), opts())
        .provider_arc(
            Fake::new("fine").probe_answers(Probe::Ok).arc() as Arc<dyn Provider>,
            opts(),
        )
        .build()
        .unwrap();
    router.check().await;
    let text = handle.render();
    for (provider, result) in [
        ("denied", "denied"),
        ("missing", "not_offered"),
        ("down", "unchecked"),
        ("fine", "offered"),
    ] {
        let line = format!(
            "{}{{provider=\"{provider}\",result=\"{result}\"}} 1",
            image_router::metrics::CHECKS_TOTAL
        );
        assert!(text.contains(&line), "{line} not in:\n{text}");
    }
}
