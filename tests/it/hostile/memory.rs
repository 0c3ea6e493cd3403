//! Memory: every body is read with a limit, so an endless answer cannot exhaust memory.

use super::*;

#[tokio::test]
async fn an_endless_success_body_fails_the_attempt_at_the_limit() {
    let evil = Hostile::start(|_, _| {
        endless(
            200,
            "application/json",
            r#"{"created":1,"data":[{"b64_json":""#,
        )
    })
    .await;
    let started = Instant::now();
    let err = openai(&evil).generate(&gen(), &ctx()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
    assert!(err.message.contains("limit"), "{err}");
    assert!(evil.sent() < READ_BOUND, "read {} bytes", evil.sent());
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(err.explain().action.contains("max_response_bytes"));
}

#[tokio::test]
async fn an_endless_error_body_is_cut_short_and_still_classified() {
    let evil = Hostile::start(|_, _| endless(500, "text/html", "<html>")).await;
    let err = openai(&evil).generate(&gen(), &ctx()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Server, "{err}");
    assert!(evil.sent() < 16 * 1024 * 1024, "read {} bytes", evil.sent());
    assert!(err.message.len() < 8 * 1024);
}

#[tokio::test]
async fn a_declared_huge_content_length_is_refused_before_reading() {
    let evil = Hostile::start(|_, _| {
        let mut head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000000000\r\n\r\n".to_vec();
        head.extend_from_slice(&[b' '; 1024]);
        Reply::Raw(head)
    })
    .await;
    let err = openai(&evil).generate(&gen(), &ctx()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
    assert!(err.message.contains("limit"), "{err}");
}

#[tokio::test]
async fn a_huge_json_body_is_not_an_image() {
    // 12 MB of base64 for one low 1024×1024 image: more than any real image of that size.
    let big = b64(&vec![0u8; 9 * 1024 * 1024]);
    let body = ok_images(json!([{"b64_json": big}]))
        .to_string()
        .into_bytes();
    let evil = Hostile::start(move |_, _| {
        Reply::Raw(raw(200, &[("content-type", "application/json")], &body))
    })
    .await;
    let err = openai(&evil).generate(&gen(), &ctx()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
}

#[tokio::test]
async fn the_response_limit_is_configurable() {
    let body = ok_images(json!([{"b64_json": b64(&png_bytes())}]))
        .to_string()
        .into_bytes();
    let evil = Hostile::start(move |_, _| {
        Reply::Raw(raw(200, &[("content-type", "application/json")], &body))
    })
    .await;
    let p = OpenAi::builder()
        .base_url(evil.base())
        .api_key(key())
        .client(reqwest::Client::new())
        .max_response_bytes(16)
        .build()
        .unwrap();
    let err = p.generate(&gen(), &ctx()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
    assert!(err.message.contains("16 bytes"), "{err}");
    assert!(openai(&evil).generate(&gen(), &ctx()).await.is_ok());
}

#[tokio::test]
async fn a_huge_error_message_is_truncated_with_a_marker() {
    let message = "x".repeat(40 * 1024);
    let evil = Hostile::start(move |_, _| {
        json_reply(
            400,
            &[],
            json!({"error": {"message": message, "code": "bad"}}),
        )
    })
    .await;
    let err = openai(&evil).generate(&gen(), &ctx()).await.unwrap_err();
    assert!(err.message.len() <= 8 * 1024, "{}", err.message.len());
    assert!(
        err.message.contains("truncated"),
        "{}",
        &err.message[err.message.len() - 60..]
    );
}

#[tokio::test]
async fn an_endless_image_download_fails_at_the_limit() {
    let evil = Hostile::start(|seen, port| {
        if seen.path.starts_with("/img") {
            endless(200, "image/png", "\u{89}PNG")
        } else {
            json_reply(
                200,
                &[],
                ok_images(json!([{"url": format!("http://127.0.0.1:{port}/img.png")}])),
            )
        }
    })
    .await;
    let err = openai(&evil).generate(&gen(), &ctx()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
    assert!(err.message.contains("limit"), "{err}");
    assert!(evil.sent() < READ_BOUND, "read {} bytes", evil.sent());
}
