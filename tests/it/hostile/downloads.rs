//! Image downloads: public hosts only, no cross-host redirect, never more than `n`.

use super::*;

async fn download_refused(url: String, proxy: &Hostile) -> image_router::ProviderError {
    let evil =
        Hostile::start(move |_, _| json_reply(200, &[], ok_images(json!([{"url": url.clone()}]))))
            .await;
    // Every request of this client to a host other than the provider's goes through `proxy`,
    // a loopback listener: if the check ever regressed, the download would reach that
    // listener (and be counted there), never the network.
    let via: url::Url = proxy.url("/").parse().unwrap();
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::custom(move |u| {
            (u.host_str() != Some("127.0.0.1")).then(|| via.clone())
        }))
        .build()
        .unwrap();
    let p = OpenAi::builder()
        .base_url(evil.base())
        .api_key(key())
        .client(client)
        .build()
        .unwrap();
    p.generate(&gen(), &ctx()).await.unwrap_err()
}

#[tokio::test]
async fn downloads_from_private_loopback_and_metadata_addresses_are_refused() {
    let other = Hostile::other_host().await;
    let started = Instant::now();
    for url in [
        "http://169.254.169.254/latest/meta-data/iam".to_string(),
        "http://10.0.0.1/x.png".to_string(),
        "http://192.168.1.1/x.png".to_string(),
        "http://[fe80::1]/x.png".to_string(),
        "http://[::ffff:169.254.169.254]/x.png".to_string(),
        format!("http://localhost:{}/x.png", other.port),
        format!("http://[::1]:{}/x.png", other.port),
        "file:///etc/passwd".to_string(),
        "ftp://example.com/x.png".to_string(),
    ] {
        let err = download_refused(url.clone(), &other).await;
        assert_eq!(err.kind, ErrorKind::Decode, "{url}: {err}");
        assert!(err.message.contains("not allowed"), "{url}: {err}");
        assert!(
            err.explain().action.contains("allow_download_hosts"),
            "{url}: {}",
            err.explain()
        );
    }
    assert!(other.requests().is_empty(), "{:?}", other.requests());
    // Refused before any connection: no timeout was waited out.
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn an_allow_list_permits_a_private_download_host() {
    let img =
        Hostile::start(|_, _| Reply::Raw(raw(200, &[("content-type", "image/png")], &png_bytes())))
            .await;
    let url = format!("http://localhost:{}/x.png", img.port);
    let evil =
        Hostile::start(move |_, _| json_reply(200, &[], ok_images(json!([{"url": url.clone()}]))))
            .await;
    let p = OpenAi::builder()
        .base_url(evil.base())
        .api_key(key())
        .client(reqwest::Client::new())
        .allow_download_hosts(["localhost"])
        .build()
        .unwrap();
    let res = p.generate(&gen(), &ctx()).await.unwrap();
    assert_eq!(res.images.len(), 1);
    assert_eq!(img.requests().len(), 1);
}

#[tokio::test]
async fn a_download_redirected_to_another_host_is_not_followed() {
    let other = Hostile::other_host().await;
    let to = other.url("/stolen.png");
    let evil = Hostile::start(move |seen, port| {
        if seen.path.starts_with("/img") {
            Reply::Raw(raw(302, &[("location", to.as_str())], b""))
        } else {
            json_reply(
                200,
                &[],
                ok_images(json!([{"url": format!("http://127.0.0.1:{port}/img.png")}])),
            )
        }
    })
    .await;
    for p in [
        openai(&evil),
        OpenAi::builder()
            .base_url(evil.base())
            .api_key(key())
            .build()
            .unwrap(),
    ] {
        let err = p.generate(&gen(), &ctx()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Decode, "{err}");
    }
    // The library's own download client does not follow; an application client that does
    // still gets an error (checked above), and no key travels with a download.
    for seen in other.requests() {
        assert!(!seen.head.to_ascii_lowercase().contains("authorization"));
    }
}

#[tokio::test]
async fn five_thousand_urls_for_one_image_download_one() {
    let downloads = Arc::new(AtomicUsize::new(0));
    let count = downloads.clone();
    let evil = Hostile::start(move |seen, port| {
        if seen.path.starts_with("/img") {
            count.fetch_add(1, Ordering::Relaxed);
            return Reply::Raw(raw(200, &[("content-type", "image/png")], &png_bytes()));
        }
        let text: String = (0..5000)
            .map(|i| format!("![x](http://127.0.0.1:{port}/img{i}.png)\n"))
            .collect();
        if seen.path.contains("chat") {
            json_reply(
                200,
                &[],
                json!({"choices": [{"message": {"role": "assistant", "content": text}}]}),
            )
        } else {
            let data: Vec<_> = (0..5000)
                .map(|i| json!({"url": format!("http://127.0.0.1:{port}/img{i}.png")}))
                .collect();
            json_reply(200, &[], ok_images(json!(data)))
        }
    })
    .await;
    for mode in [CompatibleMode::Chat, CompatibleMode::Images] {
        downloads.store(0, Ordering::Relaxed);
        let res = compatible(&evil, mode)
            .generate(&gen(), &ctx())
            .await
            .unwrap();
        assert_eq!(res.images.len(), 1, "{mode:?}");
        assert_eq!(downloads.load(Ordering::Relaxed), 1, "{mode:?}");
    }
    let res = compatible(&evil, CompatibleMode::Images)
        .generate(&gen().n(2), &ctx())
        .await
        .unwrap();
    assert_eq!(res.images.len(), 2);
}
