//! Probes and edits go through the same guarded send path as generation.

use super::*;

#[tokio::test]
async fn an_endless_probe_answer_is_cut_at_the_probe_limit() {
    let evil = Hostile::start(|_, _| endless(200, "application/json", r#"{"id":""#)).await;
    let err = openai(&evil)
        .probe("gpt-image-1", &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
    assert!(err.message.contains("limit"), "{err}");
    assert!(evil.sent() < READ_BOUND, "read {} bytes", evil.sent());
}

#[tokio::test]
async fn a_probe_redirected_to_another_host_sends_it_nothing() {
    let other = Hostile::other_host().await;
    let evil = Hostile::start(redirect_to(&other, 302)).await;
    let err = azure_at(&evil)
        .build()
        .unwrap()
        .probe("gpt-image-1", &ctx())
        .await
        .unwrap_err();
    assert!(other.requests().is_empty(), "{:?}", other.requests());
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{}", other.port)),
        "{err}"
    );
}

#[tokio::test]
async fn an_edit_redirected_with_307_does_not_resend_the_upload_elsewhere() {
    let other = Hostile::other_host().await;
    let evil = Hostile::start(redirect_to(&other, 307)).await;
    let req = image_router::EditRequest::new(
        "add a hat",
        vec![image_router::InputImage::new(png_bytes(), "cat.png")],
    )
    .model("gpt-image-1");
    let err = OpenAi::builder()
        .base_url(evil.base())
        .api_key(key())
        .build()
        .unwrap()
        .edit(&req, &ctx())
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = azure_at(&evil)
        .build()
        .unwrap()
        .edit(&req, &ctx())
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(other.requests().is_empty(), "{:?}", other.requests());
}
