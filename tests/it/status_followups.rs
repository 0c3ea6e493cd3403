//! Status output: a provider message carrying a URL with credentials is masked in
//! `Router::status()`, and `image-router status` shows the one denial duration the router
//! uses (`cooldown`, else `[router.breaker] long_cool_down`).

use assert_cmd::Command;
use image_router::providers::OpenAi;
use image_router::{GenerateRequest, Router};
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn status_masks_credentials_in_provider_messages() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502).set_body_json(json!({"error": {
            "message": "upstream https://admin:hunter2@proxy.internal/v1 refused",
            "type": "server_error", "param": null, "code": null}})))
        .mount(&server)
        .await;
    let p = OpenAi::builder()
        .base_url(format!("{}/v1", server.uri()))
        .api_key("test-key")
        .build()
        .unwrap();
    let router = Router::builder()
        .provider(p)
        .retry_backoff(std::time::Duration::from_millis(1))
        .build()
        .unwrap();
    assert!(router
        .generate(GenerateRequest::new("a fox"))
        .await
        .is_err());
    let status = serde_json::to_string(&router.status()).unwrap();
    assert!(status.contains("proxy.internal"), "{status}");
    assert!(!status.contains("hunter2"), "{status}");
    assert!(!status.contains("admin:"), "{status}");
}

#[test]
fn cli_status_shows_the_breaker_long_cool_down_as_the_denial_duration() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("r.toml");
    let text = |extra: &str| {
        format!(
            "[router]\n{extra}\n[router.breaker]\nlong_cool_down = \"7m\"\n\
             [[provider]]\nname = \"direct\"\nkind = \"openai\"\napi_key_env = \"IR_TEST_KEY\"\n"
        )
    };
    for (extra, want) in [("", "7m0s"), ("cooldown = \"2m\"", "2m0s")] {
        std::fs::write(&cfg, text(extra)).unwrap();
        let out = Command::cargo_bin("image-router")
            .unwrap()
            .env_remove("IMAGE_ROUTER_CONFIG")
            .env("IR_TEST_KEY", "test-key")
            .args(["status", "--json", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["router"]["cooldown"], want, "{extra:?}: {}", v["router"]);
    }
}
