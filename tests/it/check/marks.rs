//! What the check finds on real HTTP (the simulator, wiremock) and what it marks: a rejected
//! key sets the provider aside, a missing model or deployment cools that model down, a 5xx
//! leaves the provider usable; the requests that follow go where the marks say, without a
//! single image call to what the check ruled out.

use super::*;
use image_router::sim::{Fault, SimAccount, Times};
use image_router::{CheckResult, Outcome};

#[tokio::test]
async fn a_bad_key_is_found_and_the_first_request_goes_straight_to_the_other_provider() {
    let sim = Simulator::builder()
        .account("bad", SimAccount::new().api_key("sk-right-key-0001"))
        .account("good", SimAccount::new().api_key("sk-right-key-0001"))
        .start()
        .await
        .unwrap();
    let router = ordered()
        .provider(openai(&sim, "bad", "sk-wrong-key-0002").build().unwrap())
        .provider(openai(&sim, "good", "sk-right-key-0001").build().unwrap())
        .build()
        .unwrap();

    let report = router.check().await;
    let bad = report.provider("bad").unwrap();
    assert_eq!(bad.models.len(), 1);
    let m = &bad.models[0];
    assert_eq!(m.model, "gpt-image-1", "the router's default model");
    assert_eq!(m.result, CheckResult::Denied);
    assert!(m.answered);
    assert_eq!(m.key_valid, Some(false));
    assert_eq!(bad.key_valid, Some(false));
    assert!(m
        .explanation
        .as_ref()
        .unwrap()
        .cause
        .contains("rejected the API key"));
    let denied = bad.denied.as_ref().expect("the provider is set aside");
    assert_eq!(denied.cause, Outcome::Authentication);
    assert_eq!(denied.model, None);
    assert_eq!(denied.for_ms, 300_000, "the router's cool-down");
    assert!(!bad.usable());
    let good = report.provider("good").unwrap();
    assert_eq!(good.models[0].result, CheckResult::Offered);
    assert_eq!(good.key_valid, Some(true));
    assert!(good.usable());
    assert!(!report.all_offered());
    // The lookups were the only calls: nothing generated.
    assert_eq!(lookups(&sim, "bad"), 1);
    assert_eq!(image_calls(&sim, "bad") + image_calls(&sim, "good"), 0);

    // The status shows the denial like a real 401's.
    let status = router.status();
    let s = status.providers.iter().find(|p| p.name == "bad").unwrap();
    assert_eq!(s.cooldown.as_ref().unwrap().cause, Outcome::Authentication);

    for _ in 0..3 {
        let res = router.generate(req("gpt-image-1")).await.unwrap();
        assert_eq!(res.provider, "good");
        assert_eq!(res.attempts.len(), 1, "no attempt spent on the bad key");
    }
    assert_eq!(image_calls(&sim, "bad"), 0);
    assert_eq!(image_calls(&sim, "good"), 3);
    // The whole report serializes (the CLI's --json) and never holds a key.
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("\"result\":\"denied\""), "{json}");
    assert!(!json.contains("sk-wrong-key-0002") && !json.contains("sk-right-key-0001"));
}

#[tokio::test]
async fn a_missing_model_is_cooled_down_and_requests_for_other_models_still_go_there() {
    let sim = Simulator::builder()
        .account("narrow", SimAccount::new().models(["gpt-image-1-mini"]))
        .account("backup", SimAccount::new())
        .start()
        .await
        .unwrap();
    let router = ordered()
        .provider(
            openai(&sim, "narrow", "k")
                .models(["gpt-image-1", "gpt-image-1-mini"])
                .build()
                .unwrap(),
        )
        .provider(openai(&sim, "backup", "k").build().unwrap())
        .build()
        .unwrap();

    let report = router.check().await;
    let narrow = report.provider("narrow").unwrap();
    let missing = narrow.model("gpt-image-1").unwrap();
    assert_eq!(missing.result, CheckResult::NotOffered);
    assert_eq!(missing.offered, Some(false));
    assert_eq!(missing.key_valid, Some(true));
    let cooled = missing.cooled_down.as_ref().unwrap();
    assert_eq!(cooled.model.as_deref(), Some("gpt-image-1"));
    assert_eq!(cooled.cause, Outcome::NotFound);
    assert_eq!(
        narrow.model("gpt-image-1-mini").unwrap().result,
        CheckResult::Offered
    );
    assert!(narrow.denied.is_none());
    assert!(narrow.usable(), "it still serves gpt-image-1-mini");

    let res = router.generate(req("gpt-image-1")).await.unwrap();
    assert_eq!(res.provider, "backup");
    assert_eq!(res.attempts.len(), 1);
    assert_eq!(image_calls(&sim, "narrow"), 0);
    let res = router.generate(req("gpt-image-1-mini")).await.unwrap();
    assert_eq!(res.provider, "narrow", "other models still go there");
    assert_eq!(image_calls(&sim, "narrow"), 1);
}

#[tokio::test]
async fn a_missing_azure_deployment_is_cooled_down_for_its_model_only() {
    let sim = Simulator::builder()
        .account(
            "azure",
            SimAccount::new()
                .api_key("azure-key")
                .deployment("img", "gpt-image-1"),
        )
        .account("backup", SimAccount::new())
        .start()
        .await
        .unwrap();
    let router = ordered()
        .provider(
            azure(&sim, "azure", "azure-key")
                .deployment("gpt-image-1", "img")
                .deployment("gpt-image-1-mini", "deleted-last-week")
                .build()
                .unwrap(),
        )
        .provider(openai(&sim, "backup", "k").build().unwrap())
        .build()
        .unwrap();

    let report = router.check().await;
    let az = report.provider("azure").unwrap();
    assert_eq!(
        az.models.len(),
        2,
        "each configured deployment: {:?}",
        az.models
    );
    let gone = az.model("gpt-image-1-mini").unwrap();
    assert_eq!(gone.result, CheckResult::NotOffered);
    assert!(gone
        .explanation
        .as_ref()
        .unwrap()
        .cause
        .to_lowercase()
        .contains("deployment"));
    assert!(gone.cooled_down.is_some());
    let ok = az.model("gpt-image-1").unwrap();
    assert_eq!(ok.result, CheckResult::Offered);
    assert_eq!(ok.probe.as_ref().unwrap().model, "img");

    let res = router.generate(req("gpt-image-1-mini")).await.unwrap();
    assert_eq!(res.provider, "backup");
    assert_eq!(res.attempts.len(), 1);
    let res = router.generate(req("gpt-image-1")).await.unwrap();
    assert_eq!(res.provider, "azure");
    assert_eq!(
        image_calls(&sim, "azure"),
        1,
        "only the request for the deployment that exists"
    );
}

#[tokio::test]
async fn a_5xx_on_the_lookup_leaves_the_provider_usable_and_is_reported() {
    let sim = Simulator::builder()
        .account("flaky", SimAccount::new())
        .account("backup", SimAccount::new())
        .start()
        .await
        .unwrap();
    sim.fail("flaky", Fault::Status(503), Times::Once);
    let router = ordered()
        .provider(openai(&sim, "flaky", "k").build().unwrap())
        .provider(openai(&sim, "backup", "k").build().unwrap())
        .build()
        .unwrap();

    let report = router.check().await;
    let flaky = report.provider("flaky").unwrap();
    let m = &flaky.models[0];
    assert_eq!(m.result, CheckResult::Unchecked);
    assert!(m.answered);
    assert_eq!(m.error.as_ref().unwrap().status, Some(503));
    assert!(
        m.unchecked.as_ref().unwrap().starts_with("server"),
        "{:?}",
        m.unchecked
    );
    assert!(m.explanation.is_some());
    assert!(flaky.denied.is_none() && m.cooled_down.is_none());
    assert!(flaky.usable());
    assert!(router.status().providers[0].cooldown.is_none());

    let res = router.generate(req("gpt-image-1")).await.unwrap();
    assert_eq!(res.provider, "flaky", "still first in line");
}

/// The same on wiremock, the lookup path and answer as OpenAI's: a 500 on `GET /models/...`
/// marks nothing, and the image endpoint still gets the request.
#[tokio::test]
async fn a_5xx_on_wiremock_marks_nothing() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models/gpt-image-1"))
        .respond_with(ResponseTemplate::new(500).set_body_json(serde_json::json!({
            "error": {"message": "The server had an error while processing your request.",
                      "type": "server_error", "param": null, "code": null}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .respond_with(crate::support::wire::ok())
        .expect(1)
        .mount(&server)
        .await;
    let router = ordered()
        .provider(
            OpenAi::builder()
                .client(reqwest::Client::new())
                .name("mock")
                .api_key("k")
                .base_url(format!("{}/v1", server.uri()))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let report = router.check().await;
    assert_eq!(report.providers[0].models[0].result, CheckResult::Unchecked);
    assert!(report.providers[0].usable());
    let res = router.generate(req("gpt-image-1")).await.unwrap();
    assert_eq!(res.provider, "mock");
}

/// Azure retired its data-plane deployment lookup: newer api-versions answer a plain 404
/// "Resource not found" on it whatever the deployment. That must not take a working Azure
/// provider out of service: reported unchecked, and the image request still goes there.
#[tokio::test]
async fn a_404_on_the_lookup_path_is_unchecked_not_a_denial() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/openai/deployments/img"))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            serde_json::json!({"error": {"code": "404", "message": "Resource not found"}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/openai/deployments/img/images/generations"))
        .respond_with(crate::support::wire::ok())
        .expect(1)
        .mount(&server)
        .await;
    let router = ordered()
        .provider(
            Azure::builder()
                .client(reqwest::Client::new())
                .name("azure")
                .endpoint(server.uri())
                .api_key("azure-key")
                .deployment("gpt-image-1", "img")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let report = router.check().await;
    let p = &report.providers[0];
    let m = &p.models[0];
    assert_eq!(m.result, CheckResult::Unchecked);
    assert!(m.answered);
    assert!(
        m.unchecked.as_ref().unwrap().contains("not served"),
        "{:?}",
        m.unchecked
    );
    assert!(p.denied.is_none() && m.cooled_down.is_none());
    assert!(p.usable());
    let res = router.generate(req("gpt-image-1")).await.unwrap();
    assert_eq!(res.provider, "azure");
}
