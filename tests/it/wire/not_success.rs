//! HTTP 200 answers that are not successes (no images, bad base64, HTML) are errors, not empty
//! results.

use super::helpers::*;
use image_router::{GenerateRequest, Outcome, Router};
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn broken_200(name: &str, template: ResponseTemplate) {
    let primary = MockServer::start().await;
    let secondary = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(template)
        .mount(&primary)
        .await;
    mount_ok(&secondary, 2).await;
    let router = two(&primary, &secondary);
    let res = router
        .generate(gen())
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(res.provider, "secondary", "{name}");
    assert_eq!(&res.images[0].bytes[..], &png(2)[..], "{name}");
    assert_eq!(res.attempts[0].outcome, Outcome::Decode, "{name}");
    assert_eq!(res.attempts[0].status, Some(200), "{name}");
    assert!(
        (1..=2).contains(&count(&primary).await),
        "{name}: at most one retry"
    );
    // Everything broken: an error, never a success.
    let only = Router::builder()
        .provider(openai(&primary, "primary"))
        .build()
        .unwrap();
    let err = only.generate(gen()).await.unwrap_err();
    assert!(
        err.attempts().iter().all(|a| a.outcome == Outcome::Decode),
        "{name}: {err:?}"
    );
}

#[tokio::test]
async fn success_status_without_images_is_an_error_and_fails_over() {
    tokio::join!(
        broken_200(
            "broken json",
            ResponseTemplate::new(200).set_body_raw(
                r#"{"created": 1, "data": [{"b64_json": "iVBOR"#,
                "application/json"
            ),
        ),
        broken_200(
            "empty data",
            ResponseTemplate::new(200).set_body_json(json!({"created": 1, "data": []})),
        ),
        broken_200(
            "no data",
            ResponseTemplate::new(200).set_body_json(json!({"created": 1})),
        ),
        broken_200(
            "null data",
            ResponseTemplate::new(200).set_body_json(json!({"created": 1, "data": null})),
        ),
        broken_200(
            "item without image",
            ResponseTemplate::new(200)
                .set_body_json(json!({"created": 1, "data": [{"revised_prompt": "x"}]})),
        ),
        broken_200(
            "invalid base64",
            ResponseTemplate::new(200)
                .set_body_json(json!({"created": 1, "data": [{"b64_json": "%%%not base64%%%"}]})),
        ),
        broken_200(
            "one good one bad",
            ResponseTemplate::new(200).set_body_json(
                json!({"created": 1, "data": [{"b64_json": b64(&png(1))}, {"b64_json": "@@"}]})
            ),
        ),
        broken_200(
            "html",
            ResponseTemplate::new(200).set_body_string("<html>login</html>"),
        ),
        broken_200("empty body", ResponseTemplate::new(200)),
        // Short ASCII strings that are valid unpadded / URL-safe base64 by accident.
        broken_200(
            "not-base64",
            ResponseTemplate::new(200)
                .set_body_json(json!({"created": 1, "data": [{"b64_json": "not-base64"}]})),
        ),
        broken_200(
            "this is not base64",
            ResponseTemplate::new(200)
                .set_body_json(json!({"created": 1, "data": [{"b64_json": "this is not base64"}]})),
        ),
        broken_200(
            "b64 null and url null",
            ResponseTemplate::new(200)
                .set_body_json(json!({"created": 1, "data": [{"b64_json": null, "url": null}]})),
        ),
    );
}

#[tokio::test]
async fn url_items_that_do_not_download_an_image_are_errors() {
    for (name, download) in [
        (
            "html page",
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/html; charset=utf-8")
                .set_body_string("<html><body>This link has expired</body></html>"),
        ),
        (
            "xml error",
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/xml")
                .set_body_string("<Error><Code>AuthenticationFailed</Code></Error>"),
        ),
        ("404", ResponseTemplate::new(404)),
        (
            "403 expired SAS",
            ResponseTemplate::new(403).set_body_string("expired"),
        ),
    ] {
        let primary = MockServer::start().await;
        let secondary = MockServer::start().await;
        let url = format!("{}/files/img.png", primary.uri());
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"created": 1, "data": [{"url": url}]})),
            )
            .mount(&primary)
            .await;
        Mock::given(method("GET"))
            .respond_with(download)
            .mount(&primary)
            .await;
        mount_ok(&secondary, 2).await;
        let router = two(&primary, &secondary);
        let res = router
            .generate(GenerateRequest::new("a fox").model("dall-e-3"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(res.provider, "secondary", "{name}");
        assert_eq!(res.attempts[0].outcome, Outcome::Decode, "{name}");
    }
}

#[tokio::test]
async fn success_with_nulls_and_missing_optionals_is_fine() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "created": 1,
            "data": [{"b64_json": b64(&png(3)), "url": null, "revised_prompt": null}],
            "usage": null
        })))
        .mount(&server)
        .await;
    let router = Router::builder()
        .provider(openai(&server, "openai"))
        .build()
        .unwrap();
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(&res.images[0].bytes[..], &png(3)[..]);
    assert!(res.usage.is_none());
}
