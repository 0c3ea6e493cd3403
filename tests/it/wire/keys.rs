//! Keys never shown in Debug, Display, errors or traces.

use super::helpers::*;
use image_router::providers::{Azure, Compatible, OpenAi};
use image_router::{
    AccessDenial, EditRequest, Error, ErrorKind, GenerateRequest, InputImage, NotFoundKind,
    Outcome, RateLimitScope, Router,
};
use serde_json::{json, Value};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

// Keys never shown
#[tokio::test]
async fn no_key_in_debug_or_display() {
    let k = key();
    let ak = other_key();
    let server = MockServer::start().await;
    // A proxy that echoes the key it was given in its 401 message.
    mount_error(
        &server,
        401,
        openai_error(
            &format!("Incorrect API key provided: {k}."),
            json!("invalid_request_error"),
            Value::Null,
            json!("invalid_api_key"),
        ),
        &[],
    )
    .await;
    let azure_server = MockServer::start().await;
    mount_error(
        &azure_server,
        401,
        json!({"error": {"code": "401", "message": format!("Access denied due to invalid subscription key {ak}.")}}),
        &[],
    )
    .await;
    let oa = openai(&server, "openai");
    let az = azure(&azure_server).api_key(ak.clone()).build().unwrap();
    let proxy = Compatible::builder()
        .base_url(format!("{}/v1", server.uri()))
        .name("proxy")
        .api_key(k.clone())
        .build()
        .unwrap();
    let builder_dbg = format!(
        "{:?} {:?} {:?} {:?}",
        OpenAi::builder().api_key(k.clone()),
        Azure::builder().api_key(ak.clone()),
        Azure::builder().bearer_token(ak.clone()),
        Compatible::builder().api_key(k.clone())
    );
    let router = Router::builder()
        .provider(oa.clone())
        .provider(az.clone())
        .provider(proxy.clone())
        .build()
        .unwrap();
    let err = router.generate(gen()).await.unwrap_err();
    let texts = [
        format!("{oa:?} {az:?} {proxy:?}"),
        builder_dbg,
        format!("{router:?}"),
        format!("{err} {err:?}"),
        format!("{}", err.explain()),
        err.attempts()
            .iter()
            .map(|a| format!("{a} {a:?} {}", a.error.as_ref().unwrap().explain()))
            .collect::<Vec<_>>()
            .join("\n"),
        serde_json::to_string(&err.attempts()).unwrap(),
        serde_json::to_string(&router.status()).unwrap(),
    ];
    assert_eq!(err.attempts().len(), 3, "{err:?}");
    for t in &texts {
        assert!(!t.contains(&k), "OpenAI key leaked: {t}");
        assert!(!t.contains(&ak), "Azure key leaked: {t}");
        assert!(!t.contains(&"x".repeat(30)), "key body leaked: {t}");
    }
}

#[tokio::test]
async fn openai_bare_host_base_url_gets_v1() {
    let server = MockServer::start().await;
    mount_ok(&server, 1).await;
    let p = OpenAi::builder()
        .api_key(key())
        .base_url(server.uri())
        .build()
        .unwrap();
    let router = Router::builder().provider(p).build().unwrap();
    router.generate(gen()).await.unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    assert_eq!(got.url.path(), "/v1/images/generations");
}

#[tokio::test]
async fn azure_content_filter_singular_result_key() {
    // Azure also spells it `innererror` / `content_filter_result`.
    azure_case(
        "content_filter with innererror",
        400,
        json!({"error": {
            "code": "content_filter",
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
            "param": "prompt",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {
                    "hate": {"filtered": true, "severity": "medium"},
                    "sexual": {"filtered": false, "severity": "safe"}
                }
            }
        }}),
        &[],
        ErrorKind::ContentPolicy {
            reason: Some("The response was filtered due to the prompt triggering Azure OpenAI's content management policy. [filtered: hate (medium)]".into()),
        },
        false,
    )
    .await;
}

#[tokio::test]
async fn attempt_model_is_the_wire_model_for_failures_too() {
    let proxy = MockServer::start().await;
    let fallback = MockServer::start().await;
    mount_error(
        &proxy,
        400,
        openai_error(
            "Unsupported parameter: 'quality'.",
            json!("invalid_request_error"),
            json!("quality"),
            json!("unsupported_parameter"),
        ),
        &[],
    )
    .await;
    mount_ok(&fallback, 2).await;
    let p = Compatible::builder()
        .name("proxy")
        .base_url(format!("{}/v1", proxy.uri()))
        .api_key(key())
        .rename_model("gpt-image-1", "openai/gpt-image-1")
        .build()
        .unwrap();
    let router = Router::builder()
        .provider(p)
        .provider(openai(&fallback, "secondary"))
        .build()
        .unwrap();
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(res.provider, "secondary");
    // Attempt::model is documented as "Model as sent to the provider (after any renaming)".
    assert_eq!(res.attempts[0].model, "openai/gpt-image-1");
}

#[tokio::test]
async fn azure_operation_not_supported_fails_over() {
    azure_case(
        "OperationNotSupported",
        400,
        json!({"error": {"code": "OperationNotSupported", "message": "The imagesGenerate operation does not work with the specified model, gpt-4o. Please choose different model and try again. You can learn more about which models can be used with each operation here: https://go.microsoft.com/fwlink/?linkid=2197993."}}),
        &[],
        ErrorKind::NotFound {
            what: NotFoundKind::Deployment,
        },
        true,
    )
    .await;
}

#[tokio::test]
async fn azure_unsupported_api_version_fails_over() {
    let e = azure_case(
        "unsupported api-version",
        400,
        json!({"error": {"code": "BadRequest", "message": "API version not supported"}}),
        &[],
        ErrorKind::NotFound {
            what: NotFoundKind::Endpoint,
        },
        true,
    )
    .await;
    assert!(e.explain().action.contains("api_version"));
}

#[tokio::test]
async fn go_style_zero_wait_on_a_real_limit_is_a_rate_limit_not_a_tier_denial() {
    // "in 0s" on an RPM message with a real limit: the window resets now; this is not the
    // tier denial ("after 0.0 seconds", or "Limit 0"), so no long cool-down.
    run_case(
        "in 0s",
        Case {
            status: 429,
            body: openai_error(
                "Rate limit reached for gpt-image-1 in organization org-abc on requests per min (RPM): Limit 5, Used 5, Requested 1. Please try again in 0s.",
                json!("requests"),
                Value::Null,
                json!("rate_limit_exceeded"),
            ),
            headers: vec![],
            kind: ErrorKind::RateLimited {
                scope: RateLimitScope::Requests,
            },
            fails_over: true,
            words: &["rate limited"],
        },
    )
    .await;
    run_case(
        "limit 0",
        Case {
            status: 429,
            body: openai_error(
                "Rate limit reached for gpt-image-1 in organization org-abc on requests per min (RPM): Limit 0, Used 0, Requested 1. Please try again in 0s.",
                json!("requests"),
                Value::Null,
                json!("rate_limit_exceeded"),
            ),
            headers: vec![],
            kind: ErrorKind::AccessDenied {
                reason: AccessDenial::TierAccess,
            },
            fails_over: true,
            words: &["tier"],
        },
    )
    .await;
}

#[test]
fn bad_configuration_is_a_typed_error_naming_the_field() {
    let e = OpenAi::builder().api_key("").build().unwrap_err();
    assert_eq!(e.field, "api_key");
    let e = OpenAi::builder().build().unwrap_err();
    assert_eq!(e.field, "api_key");
    let e = OpenAi::builder()
        .api_key(key())
        .base_url("not a url")
        .build()
        .unwrap_err();
    assert_eq!(e.field, "base_url");
    let e = Compatible::builder().api_key(key()).build().unwrap_err();
    assert_eq!(e.field, "base_url");
    let e = Azure::builder()
        .endpoint("https://r.openai.azure.com")
        .api_key(other_key())
        .build()
        .unwrap_err();
    assert_eq!(e.field, "deployment");
    let e = Azure::builder()
        .api_key(other_key())
        .deployment("gpt-image-1", "d")
        .build()
        .unwrap_err();
    assert_eq!(e.field, "endpoint");
    let ok = || {
        OpenAi::builder()
            .api_key(key())
            .base_url("http://127.0.0.1:9/v1")
            .build()
            .unwrap()
    };
    let e = Router::builder()
        .provider(ok())
        .attempt_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field, "attempt_timeout");
    let e = Router::builder()
        .provider(ok())
        .deadline(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field, "deadline");
    let e = Router::builder()
        .provider(ok())
        .max_attempts(0)
        .build()
        .unwrap_err();
    assert_eq!(e.field, "max_attempts");
    let e = Router::builder()
        .provider_with(ok(), image_router::ProviderOptions::new().rpm(0))
        .build()
        .unwrap_err();
    assert!(e.field.contains("rpm"), "{e}");
    let e = Router::builder()
        .provider_with(ok(), image_router::ProviderOptions::new().tier("tier-9"))
        .build()
        .unwrap_err();
    assert!(e.field.contains("tier"), "{e}");
    let e = Router::builder()
        .provider(ok())
        .provider(ok())
        .build()
        .unwrap_err();
    assert!(e.field.contains("name"), "{e}");
    assert!(!format!("{e} {e:?}").contains(&key()));
}

/// A PNG header with the given dimensions (enough for the size check).
fn png_sized(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    v.extend_from_slice(&w.to_be_bytes());
    v.extend_from_slice(&h.to_be_bytes());
    v.extend_from_slice(&[8, 6, 0, 0, 0]);
    v
}

#[tokio::test]
async fn mask_of_another_size_is_refused_before_sending() {
    let server = MockServer::start().await;
    mount_ok(&server, 1).await;
    let router = Router::builder()
        .provider(openai(&server, "openai"))
        .build()
        .unwrap();
    let req = |mask: Vec<u8>| {
        EditRequest::new(
            "fill the hole",
            vec![InputImage::new(png_sized(1024, 1024), "a.png")],
        )
        .mask(InputImage::new(mask, "mask.png"))
    };
    match router.edit(req(png_sized(512, 512))).await {
        Err(Error::Invalid(v)) => assert_eq!(v.field, "mask"),
        other => panic!("{other:?}"),
    }
    assert_eq!(count(&server).await, 0);
    router.edit(req(png_sized(1024, 1024))).await.unwrap();
    assert_eq!(count(&server).await, 1);
}

#[tokio::test]
async fn compatible_chat_mode_url_link_and_no_image() {
    let server = MockServer::start().await;
    let url = format!("{}/files/out.png", server.uri());
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"message": {"role": "assistant",
                "content": format!("Done. [Download]({url})")}}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/out.png"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "image/png")
                .set_body_bytes(png(8)),
        )
        .mount(&server)
        .await;
    let chat = |s: &MockServer, name: &str| {
        Compatible::builder()
            .name(name)
            .base_url(format!("{}/v1", s.uri()))
            .api_key(key())
            .mode(image_router::providers::CompatibleMode::Chat)
            .build()
            .unwrap()
    };
    let router = Router::builder()
        .provider(chat(&server, "chat"))
        .build()
        .unwrap();
    let res = router
        .generate(GenerateRequest::new("a cat"))
        .await
        .unwrap();
    assert_eq!(&res.images[0].bytes[..], &png(8)[..]);
    assert_eq!(res.images[0].url.as_deref(), Some(url.as_str()));

    // A chat answer without an image is an error, and the router fails over.
    let refusing = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"message": {"role": "assistant", "content": "I can't help with that."}}]
        })))
        .mount(&refusing)
        .await;
    let fallback = MockServer::start().await;
    mount_ok(&fallback, 2).await;
    let router = Router::builder()
        .provider(chat(&refusing, "refusing"))
        .provider(openai(&fallback, "secondary"))
        .build()
        .unwrap();
    let res = router
        .generate(GenerateRequest::new("a cat"))
        .await
        .unwrap();
    assert_eq!(res.provider, "secondary");
    assert_eq!(res.attempts[0].outcome, Outcome::Decode);
}

#[tokio::test]
async fn azure_endpoint_pasted_with_openai_path() {
    let server = MockServer::start().await;
    mount_ok(&server, 5).await;
    // `…/openai/v1/` is the base URL the Azure docs give OpenAI SDKs: the v1 surface.
    let v1 = Azure::builder()
        .name("v1")
        .endpoint(format!("{}/openai/v1/", server.uri()))
        .api_key(other_key())
        .deployment("gpt-image-1", "img-prod")
        .build()
        .unwrap();
    let classic = Azure::builder()
        .name("classic")
        .endpoint(format!("{}/openai", server.uri()))
        .api_key(other_key())
        .deployment("gpt-image-1", "img-prod")
        .build()
        .unwrap();
    Router::builder()
        .provider(v1)
        .build()
        .unwrap()
        .generate(gen())
        .await
        .unwrap();
    Router::builder()
        .provider(classic)
        .build()
        .unwrap()
        .generate(gen())
        .await
        .unwrap();
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs[0].url.path(), "/openai/v1/images/generations");
    let body: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(body["model"], "img-prod");
    assert_eq!(
        reqs[1].url.path(),
        "/openai/deployments/img-prod/images/generations"
    );
    assert_eq!(reqs[1].url.query(), Some("api-version=2025-04-01-preview"));
}

#[tokio::test]
async fn azure_success_with_filter_results_is_fine() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "created": 1_713_833_628,
            "data": [{
                "b64_json": b64(&png(4)),
                "content_filter_results": {
                    "hate": {"filtered": false, "severity": "safe"},
                    "sexual": {"filtered": false, "severity": "safe"}
                },
                "prompt_filter_results": {
                    "jailbreak": {"filtered": false, "detected": false}
                }
            }],
            "usage": {"input_tokens": 12, "output_tokens": 4160, "total_tokens": 4172}
        })))
        .mount(&server)
        .await;
    let router = Router::builder()
        .provider(azure(&server).api_key(other_key()).build().unwrap())
        .build()
        .unwrap();
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(&res.images[0].bytes[..], &png(4)[..]);
    assert_eq!(res.usage.unwrap().output_tokens, 4160);
}
