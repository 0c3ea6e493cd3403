//! The OpenAI surface: generation shape, token table, formats, validation, edits, models and
//! key checks, as a provider sees them.

use super::*;

#[tokio::test]
async fn generation_has_exact_shape_png_and_usage() {
    let sim = plain().await;
    let a = post(
        &gen_url(&sim, "openai"),
        None,
        json!({"model": "gpt-image-1", "prompt": PROMPT, "n": 2, "size": "1536x1024", "quality": "low"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.h("x-request-id").unwrap().starts_with("req_"));
    assert!(a.h("openai-processing-ms").unwrap().parse::<u64>().is_ok());
    assert!(
        a.h("x-ratelimit-limit-requests").is_none(),
        "no limits, no headers"
    );
    let obj = a.body.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "background",
            "created",
            "data",
            "output_format",
            "quality",
            "size",
            "usage"
        ]
    );
    assert!(a.body["created"].as_i64().unwrap() > 1_600_000_000);
    assert_eq!(a.body["background"], "opaque");
    assert_eq!(a.body["output_format"], "png");
    assert_eq!(a.body["size"], "1536x1024");
    assert_eq!(a.body["quality"], "low");
    let data = a.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for d in data {
        assert_eq!(d.as_object().unwrap().len(), 1, "only b64_json: {d}");
        assert_eq!(
            decode_png(&b64(d["b64_json"].as_str().unwrap())),
            (1536, 1024)
        );
    }
    let t = text_tokens(PROMPT);
    assert_eq!(
        a.body["usage"],
        json!({
            "input_tokens": t,
            "input_tokens_details": {"text_tokens": t, "image_tokens": 0},
            "output_tokens": 800,
            "output_tokens_details": {"image_tokens": 800, "text_tokens": 0},
            "total_tokens": t + 800
        })
    );
    // The body parses as the crate's wire type.
    let parsed: image_router::ImagesResponse = serde_json::from_value(a.body.clone()).unwrap();
    assert_eq!(parsed.usage.unwrap().output_image_tokens(), 800);
    let s = sim.stats("openai");
    assert_eq!((s.requests, s.succeeded, s.images), (1, 1, 2));
}

#[tokio::test]
async fn token_table_and_defaults() {
    let sim = plain().await;
    // No size, no quality: gpt-image-1 defaults (1024x1024, high) -> 4160 tokens.
    let a = post(&gen_url(&sim, "openai"), None, json!({"prompt": "x"})).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["size"], "1024x1024");
    assert_eq!(a.body["quality"], "high");
    assert_eq!(a.body["usage"]["output_tokens"], 4160);
    let img = b64(a.body["data"][0]["b64_json"].as_str().unwrap());
    assert_eq!(decode_png(&img), (1024, 1024));
    for (q, size, tokens) in [
        ("low", "1024x1024", 272),
        ("low", "1024x1536", 408),
        ("medium", "1024x1536", 1584),
        ("medium", "1536x1024", 1568),
        ("high", "1024x1536", 6240),
        ("high", "1536x1024", 6208),
        ("auto", "auto", 4160),
    ] {
        let a = post(
            &gen_url(&sim, "openai"),
            None,
            json!({"prompt": "abcd", "quality": q, "size": size, "n": 3}),
        )
        .await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body["usage"]["output_tokens"], tokens * 3, "{q} {size}");
        assert_eq!(a.body["usage"]["total_tokens"], tokens * 3 + 1);
    }
}

#[tokio::test]
async fn jpeg_and_webp_requests_get_png_bytes_and_echo() {
    let sim = plain().await;
    for fmt in ["jpeg", "webp"] {
        let a = post(
            &gen_url(&sim, "openai"),
            None,
            json!({"prompt": PROMPT, "output_format": fmt, "output_compression": 50, "quality": "low"}),
        )
        .await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body["output_format"], fmt);
        let img = b64(a.body["data"][0]["b64_json"].as_str().unwrap());
        assert!(img.starts_with(b"\x89PNG"));
    }
    // Transparent background is echoed and the PNG has an alpha channel.
    let a = post(
        &gen_url(&sim, "openai"),
        None,
        json!({"prompt": PROMPT, "background": "transparent", "quality": "low"}),
    )
    .await;
    assert_eq!(a.body["background"], "transparent");
    let img = b64(a.body["data"][0]["b64_json"].as_str().unwrap());
    let r = png::Decoder::new(std::io::Cursor::new(img))
        .read_info()
        .unwrap();
    assert_eq!(r.info().color_type, png::ColorType::Rgba);
}

#[tokio::test]
async fn invalid_requests_are_400_naming_the_field() {
    let sim = plain().await;
    let url = gen_url(&sim, "openai");
    let a = post(&url, None, json!({"prompt": PROMPT, "size": "640x480"})).await;
    assert_eq!(a.status, 400);
    assert_eq!(error_of(&a)["type"], "invalid_request_error");
    assert_eq!(error_of(&a)["param"], "size");
    let a = post(&url, None, json!({"prompt": "", "quality": "low"})).await;
    assert_eq!(
        (a.status, error_of(&a)["param"].as_str()),
        (400, Some("prompt"))
    );
    let a = post(
        &url,
        None,
        json!({"prompt": PROMPT, "output_compression": 50}),
    )
    .await;
    assert_eq!(error_of(&a)["param"], "output_compression");
    let a = send(client().post(&url).body("{not json")).await;
    assert_eq!(a.status, 400);
    assert!(error_of(&a)["message"].as_str().unwrap().contains("parse"));
    assert_eq!(sim.stats("openai").rejected, 4);
    assert_eq!(sim.stats("openai").succeeded, 0);
}

#[tokio::test]
async fn edits_multipart_single_and_many_images() {
    let sim = plain().await;
    let url = format!("{}/images/edits", sim.openai_base_url("openai"));
    // One image as `image`, with a mask.
    let form = reqwest::multipart::Form::new()
        .part("image", part(png_of(1024, 1024), "a.png"))
        .part("mask", part(png_of(1024, 1024), "mask.png"))
        .text("prompt", "add a hat")
        .text("model", "gpt-image-1")
        .text("quality", "medium")
        .text("size", "1024x1536")
        .text("input_fidelity", "high");
    let a = send(client().post(&url).multipart(form)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["size"], "1024x1536");
    assert_eq!(a.body["usage"]["output_tokens"], 1584);
    let img_tokens = input_image_tokens(1024, 1024);
    assert_eq!(
        a.body["usage"]["input_tokens_details"]["image_tokens"],
        img_tokens
    );
    assert_eq!(
        a.body["usage"]["input_tokens"],
        img_tokens + text_tokens("add a hat")
    );
    let img = b64(a.body["data"][0]["b64_json"].as_str().unwrap());
    assert_eq!(decode_png(&img), (1024, 1536));

    // Three images as repeated `image[]`.
    let form = reqwest::multipart::Form::new()
        .part("image[]", part(png_of(512, 512), "a.png"))
        .part("image[]", part(png_of(512, 512), "b.png"))
        .part("image[]", part(png_of(2048, 1024), "c.png"))
        .text("prompt", "combine")
        .text("quality", "low");
    let a = send(client().post(&url).multipart(form)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let expect = 2 * input_image_tokens(512, 512) + input_image_tokens(2048, 1024);
    assert_eq!(
        a.body["usage"]["input_tokens_details"]["image_tokens"],
        expect
    );

    // The simulator recorded the multipart body verbatim.
    let rec = sim.received("openai");
    assert_eq!(rec.len(), 2);
    assert!(rec[1]
        .header("content-type")
        .unwrap()
        .starts_with("multipart/form-data"));
    let body = String::from_utf8_lossy(&rec[1].body);
    assert_eq!(body.matches("name=\"image[]\"").count(), 3);

    // No image: 400 naming it.
    let form = reqwest::multipart::Form::new().text("prompt", "nothing");
    let a = send(client().post(&url).multipart(form)).await;
    assert_eq!(
        (a.status, error_of(&a)["param"].as_str()),
        (400, Some("image"))
    );
}

#[tokio::test]
async fn models_endpoints_and_model_not_found() {
    let sim = Simulator::builder()
        .account("a", SimAccount::new().models(["gpt-image-1", "my-model"]))
        .start()
        .await
        .unwrap();
    let base = sim.openai_base_url("a");
    let a = send(client().get(format!("{base}/models"))).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["object"], "list");
    let ids: Vec<&str> = a.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpt-image-1", "my-model"]);
    let a = send(client().get(format!("{base}/models/my-model"))).await;
    assert_eq!((a.status, a.body["object"].as_str()), (200, Some("model")));
    let a = send(client().get(format!("{base}/models/dall-e-3"))).await;
    assert_eq!(a.status, 404);
    assert_eq!(error_of(&a)["code"], "model_not_found");

    let a = post(
        &gen_url(&sim, "a"),
        None,
        json!({"model": "gpt-image-1-mini", "prompt": "x"}),
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(error_of(&a)["code"], "model_not_found");
    assert_eq!(
        error_of(&a)["message"],
        "The model `gpt-image-1-mini` does not exist or you do not have access to it."
    );
    // A model the catalog does not know is served with the default estimate.
    let a = post(
        &gen_url(&sim, "a"),
        None,
        json!({"model": "my-model", "prompt": "x"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["usage"]["output_tokens"], 4160);
}

#[tokio::test]
async fn unknown_account_and_path_are_404() {
    let sim = plain().await;
    let a = post(
        &format!("{}/nobody/v1/images/generations", sim.url()),
        None,
        json!({"prompt": "x"}),
    )
    .await;
    assert_eq!(a.status, 404);
    assert!(a.h("x-request-id").is_some() && a.h("openai-processing-ms").is_some());
    let a = post(
        &format!("{}/openai/v1/images/variations", sim.url()),
        None,
        json!({}),
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(sim.stats("openai").rejected, 1);
}

#[tokio::test]
async fn api_key_is_checked_and_masked() {
    // Built at run time so no key-shaped literal sits in the repository.
    let key_owned = format!("sk-{}", "sim-openai-0123456789abcdef");
    let key = key_owned.as_str();
    let sim = Simulator::builder()
        .account("o", SimAccount::new().api_key(key))
        .account(
            "az",
            SimAccount::new()
                .api_key("azure-key-0123456789")
                .deployment("img", "gpt-image-1"),
        )
        .start()
        .await
        .unwrap();
    let url = gen_url(&sim, "o");
    let body = json!({"prompt": "x", "quality": "low"});
    let wrong_owned = format!("sk-{}", "wrong-key-abcdefghijklmnop");
    let wrong = wrong_owned.as_str();
    let a = post(&url, Some(wrong), body.clone()).await;
    assert_eq!(a.status, 401);
    assert_eq!(error_of(&a)["code"], "invalid_api_key");
    assert_eq!(error_of(&a)["type"], "invalid_request_error");
    let msg = error_of(&a)["message"].as_str().unwrap();
    assert!(msg.starts_with("Incorrect API key provided: sk-w"), "{msg}");
    assert!(msg.contains("mnop") && !msg.contains(wrong), "{msg}");
    assert!(!a.body.to_string().contains(key));

    let a = post(&url, None, body.clone()).await;
    assert_eq!(a.status, 401);
    assert!(error_of(&a)["message"]
        .as_str()
        .unwrap()
        .starts_with("You didn't provide an API key"));
    let a = post(&url, Some(key), body.clone()).await;
    assert_eq!(a.status, 200);
    let a = send(client().get(format!("{}/models", sim.openai_base_url("o")))).await;
    assert_eq!(a.status, 401);
    assert_eq!(sim.stats("o").unauthorized, 3);
    // The log keeps what was sent, but Debug redacts it.
    let rec = sim.received("o");
    assert_eq!(
        rec[2].header("authorization"),
        Some(format!("Bearer {key}").as_str())
    );
    assert!(!format!("{rec:?}").contains(key));

    // Azure: `api-key` header.
    let az = format!(
        "{}/openai/deployments/img/images/generations?api-version=2025-04-01-preview",
        sim.azure_endpoint("az")
    );
    let a = send(client().post(&az).header("api-key", "nope").json(&body)).await;
    assert_eq!(a.status, 401);
    assert_eq!(error_of(&a)["code"], "401");
    assert!(error_of(&a)["message"]
        .as_str()
        .unwrap()
        .starts_with("Access denied due to invalid subscription key"));
    let a = send(
        client()
            .post(&az)
            .header("api-key", "azure-key-0123456789")
            .json(&body),
    )
    .await;
    assert_eq!(a.status, 200);
    let a = send(
        client()
            .post(&az)
            .bearer_auth("azure-key-0123456789")
            .json(&body),
    )
    .await;
    assert_eq!(a.status, 200, "Entra-style bearer is accepted too");
}
