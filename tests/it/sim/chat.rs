//! Chat-completions image modes and DALL·E URL downloads.

use super::*;

fn chat_body() -> Value {
    json!({"model": "gpt-image-1", "messages": [{"role": "user", "content": PROMPT}]})
}

#[tokio::test]
async fn chat_modes_carry_the_image() {
    let sim = Simulator::builder()
        .account(
            "data",
            SimAccount::new().chat_image(ChatImageStyle::DataUrl),
        )
        .account(
            "md",
            SimAccount::new().chat_image(ChatImageStyle::MarkdownUrl),
        )
        .account(
            "plain",
            SimAccount::new().chat_image(ChatImageStyle::PlainUrl),
        )
        .start()
        .await
        .unwrap();
    let chat = |a: &str| format!("{}/chat/completions", sim.openai_base_url(a));

    let a = post(&chat("data"), None, chat_body()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["object"], "chat.completion");
    assert_eq!(a.body["model"], "gpt-image-1");
    assert_eq!(a.body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(a.body["choices"][0]["finish_reason"], "stop");
    let content = a.body["choices"][0]["message"]["content"].as_str().unwrap();
    let data = content.strip_prefix("data:image/png;base64,").unwrap();
    assert_eq!(decode_png(&b64(data)), (1024, 1024));
    assert_eq!(a.body["usage"]["completion_tokens"], 4160);

    let a = post(&chat("md"), None, chat_body()).await;
    let content = a.body["choices"][0]["message"]["content"].as_str().unwrap();
    let url = content
        .strip_prefix("![image](")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap();
    assert!(
        url.starts_with(&format!("{}/md/files/", sim.url())) && url.ends_with(".png"),
        "{url}"
    );
    let resp = client().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(decode_png(&resp.bytes().await.unwrap()), (1024, 1024));

    let a = post(&chat("plain"), None, chat_body()).await;
    let url = a.body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"));
    let resp = client().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // Files are per account; an unknown id is 404.
    let resp = client()
        .get(format!("{}/md/files/nope.png", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Text parts in array form and a missing user message.
    let a = post(
        &chat("data"),
        None,
        json!({"model": "gpt-image-1", "messages": [{"role": "user", "content": [{"type": "text", "text": "a cat"}]}]}),
    )
    .await;
    assert_eq!(a.status, 200);
    let a = post(
        &chat("data"),
        None,
        json!({"model": "gpt-image-1", "messages": []}),
    )
    .await;
    assert_eq!(
        (a.status, error_of(&a)["param"].as_str()),
        (400, Some("messages"))
    );
    assert_eq!(sim.stats("md").images, 1);
}

#[tokio::test]
async fn dalle_url_response_format_downloads() {
    let sim = plain().await;
    let a = post(
        &gen_url(&sim, "openai"),
        None,
        json!({"model": "dall-e-3", "prompt": PROMPT, "response_format": "url", "size": "1792x1024"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.get("usage").is_none());
    assert_eq!(a.body["data"][0]["revised_prompt"], PROMPT);
    let url = a.body["data"][0]["url"].as_str().unwrap();
    let bytes = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(decode_png(&bytes), (1792, 1024));
}
