//! Doctor on scripted providers: each access problem gets the right classification, health and
//! explanation; missing keys are reported per provider without aborting the others.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{Fake, Probe};
use image_router::config::RouterConfig;
use image_router::doctor::{self, Health, Problem};
use image_router::{AccessDenial, CallContext, ErrorKind, NotFoundKind, Provider, ProviderError};

fn config(names: &[&str]) -> RouterConfig {
    let mut t = String::from("[router]\ndefault_model = \"gpt-image-1\"\n");
    for n in names {
        t.push_str(&format!(
            "[[provider]]\nname = \"{n}\"\nkind = \"openai\"\napi_key_env = \"KEY_{n}\"\ntier = \"tier-1\"\n"
        ));
    }
    t.parse().unwrap()
}

fn err(name: &str, kind: ErrorKind, status: u16, msg: &str) -> ProviderError {
    ProviderError::new(name, kind, msg).with_status(status)
}

async fn run(
    names: &[&str],
    script: impl Fn(&str) -> (Option<ProviderError>, bool),
) -> doctor::DoctorReport {
    let cfg = config(names);
    let env = |v: &str| (v != "KEY_nokey").then(|| "sk-test".to_string());
    doctor::check_config_with(
        &cfg,
        None,
        Duration::from_millis(300),
        &env,
        |p, cred, _| {
            assert!(cred.is_some());
            let (answer, hang) = script(&p.name);
            let probe = match (answer, hang) {
                (_, true) => Probe::Hang,
                (Some(e), false) => Probe::Fail(e),
                (None, false) => Probe::Ok,
            };
            Ok(Fake::new(&p.name)
                .forbid_images("doctor must never generate or edit")
                .probe_answers(probe)
                .arc() as Arc<dyn Provider>)
        },
    )
    .await
}

#[tokio::test]
async fn every_access_problem_is_classified_and_explained() {
    let cases: Vec<(&str, ErrorKind, u16, &str, Problem, &str)> = vec![
        (
            "invalid",
            ErrorKind::Authentication,
            401,
            "Incorrect API key provided: sk-te****",
            Problem::InvalidKey,
            "rejected the api key",
        ),
        (
            "tier",
            ErrorKind::AccessDenied {
                reason: AccessDenial::TierAccess,
            },
            429,
            "try again after 0.0 seconds",
            Problem::TierAccess,
            "tier",
        ),
        (
            "quota",
            ErrorKind::AccessDenied {
                reason: AccessDenial::InsufficientQuota,
            },
            429,
            "You exceeded your current quota",
            Problem::InsufficientQuota,
            "quota",
        ),
        (
            "verify",
            ErrorKind::AccessDenied {
                reason: AccessDenial::OrganizationNotVerified,
            },
            403,
            "Your organization must be verified",
            Problem::OrgNotVerified,
            "verified",
        ),
        (
            "region",
            ErrorKind::AccessDenied {
                reason: AccessDenial::RegionNotSupported,
            },
            403,
            "Country, region, or territory not supported",
            Problem::RegionNotSupported,
            "region",
        ),
        (
            "deploy",
            ErrorKind::NotFound {
                what: NotFoundKind::Deployment,
            },
            404,
            "The API deployment for this resource does not exist.",
            Problem::DeploymentNotFound,
            "deployment",
        ),
        (
            "model",
            ErrorKind::NotFound {
                what: NotFoundKind::Model,
            },
            404,
            "The model `gpt-image-9` does not exist",
            Problem::ModelNotFound,
            "model",
        ),
        (
            "down",
            ErrorKind::Connect,
            0,
            "connection refused",
            Problem::EndpointUnreachable,
            "connect",
        ),
    ];
    let names: Vec<&str> = cases.iter().map(|c| c.0).chain(["fine", "nokey"]).collect();
    let report = run(&names, |n| {
        let e = cases.iter().find(|c| c.0 == n).map(|c| {
            let e = ProviderError::new(c.0, c.1.clone(), c.3);
            if c.2 == 0 {
                e
            } else {
                e.with_status(c.2)
            }
        });
        (e, false)
    })
    .await;
    assert!(!report.all_usable());
    assert_eq!(report.providers.len(), names.len());
    for (c, check) in cases.iter().zip(&report.providers) {
        assert_eq!(check.name, c.0);
        assert_eq!(check.problem, Some(c.4), "{}", c.0);
        assert_eq!(check.health, Health::Unusable, "{}", c.0);
        let ex = check.explanation.as_ref().unwrap();
        assert!(
            ex.cause.to_lowercase().contains(c.5),
            "{}: {}",
            c.0,
            ex.cause
        );
        assert!(!ex.action.is_empty());
    }
    let tier = &report.providers[1].explanation.as_ref().unwrap();
    assert!(
        tier.action.contains("tier-2"),
        "configured tier-1: next is tier-2: {}",
        tier.action
    );
    assert!(tier.action.contains("$50"), "{}", tier.action);
    let verify = &report.providers[3].explanation.as_ref().unwrap();
    assert!(verify
        .action
        .contains("https://platform.openai.com/settings/organization/general"));
    assert!(verify.action.contains("15 minutes"));

    let fine = &report.providers[8];
    assert_eq!(fine.health, Health::Ok);
    assert_eq!(fine.problem, None);
    assert_eq!(
        (fine.rpm, fine.tpm),
        (None, Some(100_000)),
        "tier-1 gives gpt-image-1 100k TPM (and 5 images, no RPM, per minute)"
    );
    let nokey = &report.providers[9];
    assert_eq!(nokey.problem, Some(Problem::NoKey));
    assert_eq!(nokey.health, Health::Unusable);
    assert!(nokey
        .explanation
        .as_ref()
        .unwrap()
        .cause
        .contains("KEY_nokey"));
    // The whole report serializes for --json.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["providers"][1]["problem"], "tier_access");
}

#[tokio::test]
async fn a_real_rate_limit_is_a_warning_not_a_failure() {
    let report = run(&["busy"], |n| {
        (
            Some(err(
                n,
                ErrorKind::RateLimited {
                    scope: image_router::RateLimitScope::Requests,
                },
                429,
                "Rate limit reached",
            )),
            false,
        )
    })
    .await;
    assert!(report.all_usable());
    assert_eq!(report.providers[0].health, Health::Warning);
    assert_eq!(report.providers[0].problem, Some(Problem::RateLimited));
}

#[tokio::test]
async fn a_hanging_provider_is_bounded_by_the_timeout() {
    let report = run(&["hangs", "fine"], |_| (None, true)).await;
    for c in &report.providers {
        assert_eq!(c.problem, Some(Problem::Timeout));
        assert_eq!(c.health, Health::Unusable);
    }
}

#[tokio::test]
async fn unknown_tier_makes_every_provider_a_config_problem() {
    let cfg: RouterConfig =
        "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\ntier = \"gold\"\n"
            .parse()
            .unwrap();
    let report = doctor::check_config_with(
        &cfg,
        None,
        Duration::from_secs(1),
        &|_| Some("k".into()),
        |_, _, _| panic!("must not build providers when the config is wrong"),
    )
    .await;
    assert_eq!(report.providers[0].problem, Some(Problem::Config));
    assert!(report.providers[0]
        .explanation
        .as_ref()
        .unwrap()
        .cause
        .contains("line 5"));
}

mod probes {
    use super::*;
    use image_router::providers::{Compatible, OpenAi};
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn ctx() -> CallContext {
        CallContext::new(Duration::from_secs(5))
    }

    #[tokio::test]
    async fn openai_probe_reads_rate_limit_headers_and_sends_the_key() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v1/models/gpt-image-1"))
            .and(header("authorization", "Bearer sk-probe"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("x-ratelimit-limit-requests", "15")
                    .insert_header("x-request-id", "req_1")
                    .set_body_json(serde_json::json!({"id": "gpt-image-1", "object": "model"})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let p = OpenAi::builder()
            .name("direct")
            .api_key("sk-probe")
            .base_url(format!("{}/v1", server.uri()))
            .build()
            .unwrap();
        let r = p.probe("gpt-image-1", &ctx()).await.unwrap();
        assert!(r.probed);
        assert_eq!(r.status, Some(200));
        assert_eq!(r.rate_limits.limit_requests, Some(15));
        assert_eq!(r.request_id.as_deref(), Some("req_1"));
        assert!(r.checked.unwrap().starts_with("GET "));
    }

    #[tokio::test]
    async fn proxy_without_model_path_falls_back_to_the_list() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v1/models"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "object": "list",
                "data": [{"id": "their-image-model", "object": "model"}]
            })))
            .mount(&server)
            .await;
        // Anything else: a plain 404 (unknown path), as many proxies answer.
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(404).set_body_string("Not Found"))
            .mount(&server)
            .await;
        let p = Compatible::builder()
            .name("proxy")
            .base_url(format!("{}/v1", server.uri()))
            .api_key("k")
            .rename_model("gpt-image-1", "their-image-model")
            .build()
            .unwrap();
        let r = p.probe("gpt-image-1", &ctx()).await.unwrap();
        assert_eq!(r.model, "their-image-model");
        assert_eq!(r.detail.as_deref(), Some("model listed"));

        let e = p.probe("dall-e-3", &ctx()).await.unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::NotFound {
                what: NotFoundKind::Model
            }
        );
        assert!(e.message.contains("dall-e-3"));
    }

    #[tokio::test]
    async fn probe_of_a_hanging_endpoint_ends_at_the_timeout() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
            .mount(&server)
            .await;
        let p = OpenAi::builder()
            .api_key("k")
            .base_url(format!("{}/v1", server.uri()))
            .build()
            .unwrap();
        let e = p
            .probe("gpt-image-1", &CallContext::new(Duration::from_millis(200)))
            .await
            .unwrap_err();
        assert!(e.is_timeout(), "{e}");
    }

    #[tokio::test]
    async fn live_limits_that_differ_from_the_config_are_noted() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("x-ratelimit-limit-requests", "15")
                    .insert_header("x-ratelimit-limit-tokens", "500000")
                    .set_body_json(serde_json::json!({"id": "gpt-image-1"})),
            )
            .mount(&server)
            .await;
        let cfg: RouterConfig = format!(
            "[[provider]]\nname = \"direct\"\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"K\"\ntier = \"guide-tier-1\"\n",
            server.uri()
        )
        .parse()
        .unwrap();
        let report = doctor::check_config_with(
            &cfg,
            None,
            Duration::from_secs(5),
            &|_| Some("sk-k".into()),
            image_router::config::build_provider,
        )
        .await;
        let c = &report.providers[0];
        assert_eq!(c.health, Health::Ok, "{c:?}");
        assert_eq!(
            c.probe.as_ref().unwrap().rate_limits.limit_requests,
            Some(15)
        );
        assert_eq!(c.notes.len(), 2, "{:?}", c.notes);
        assert!(c.notes[0].contains("rpm = 15"), "{:?}", c.notes);
    }
}
