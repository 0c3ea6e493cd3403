//! Redirects: no key and no prompt leave for another origin.

use super::*;

#[tokio::test]
async fn cross_host_redirect_of_an_api_call_is_not_followed_and_names_the_host() {
    for status in [301u16, 302, 307, 308] {
        let other = Hostile::other_host().await;
        let evil = Hostile::start(redirect_to(&other, status)).await;
        // The library's own client (no `.client(...)`): the redirect must not be followed.
        let p = azure_at(&evil).build().unwrap();
        let err = p.generate(&gen(), &ctx()).await.unwrap_err();
        assert!(
            other.requests().is_empty(),
            "{status}: the other host got {:?}",
            other.requests()
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("127.0.0.1:{}", other.port)),
            "{status}: {text}"
        );
        assert!(!text.contains("secret-query"), "{status}: {text}");
        assert!(!text.contains(&key()), "{status}: {text}");
        let why = err.explain();
        assert!(why.cause.contains("redirected"), "{why}");
        assert!(why.action.contains("base_url"), "{why}");
    }
}

#[tokio::test]
async fn an_application_client_that_follows_redirects_still_gets_no_image_from_another_host() {
    let other = Hostile::start(|_, _| {
        json_reply(
            200,
            &[],
            ok_images(json!([{"b64_json": b64(&png_bytes())}])),
        )
    })
    .await;
    let evil = Hostile::start(redirect_to(&other, 307)).await;
    // reqwest::Client::new() follows up to 10 redirects to any host.
    let p = openai(&evil);
    let err = p.generate(&gen(), &ctx()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{}", other.port)),
        "{err}"
    );
    // The bearer key is stripped by reqwest on a cross-host redirect; what arrived there
    // carries no key.
    for seen in other.requests() {
        assert!(!seen.head.contains(&key()), "{}", seen.head);
    }
}

#[tokio::test]
async fn same_origin_redirect_is_still_followed() {
    let h = Hostile::start(|seen, port| {
        if seen.path.starts_with("/v1/images/generations") {
            let to = format!("http://127.0.0.1:{port}/moved");
            Reply::Raw(raw(307, &[("location", to.as_str())], b""))
        } else {
            json_reply(
                200,
                &[],
                ok_images(json!([{"b64_json": b64(&png_bytes())}])),
            )
        }
    })
    .await;
    let p = OpenAi::builder()
        .base_url(h.base())
        .api_key(key())
        .build()
        .unwrap();
    let res = p.generate(&gen(), &ctx()).await.unwrap();
    assert_eq!(res.images.len(), 1);
    assert_eq!(h.requests().len(), 2);
}
