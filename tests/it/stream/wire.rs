//! The providers' streamed answers on the wire: exact SSE bodies on wiremock (comments,
//! keep-alives, CRLF, multi-line data), refusals before the stream, broken streams, and real
//! chunked delivery split at awkward points from a raw loopback server.

use base64::Engine;
use futures_util::StreamExt;
use image_router::providers::{Azure, OpenAi};
use image_router::stream::{ProviderEvent, ProviderStream};
use image_router::{CallContext, ErrorKind, ImageRequest, Provider, ProviderError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

fn b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(crate::support::wire::png_bytes())
}

fn partial(i: u32) -> String {
    format!(
        r#"{{"type":"image_generation.partial_image","b64_json":"{}","partial_image_index":{i},"created_at":1,"size":"1024x1024","quality":"low","background":"opaque","output_format":"png"}}"#,
        b64()
    )
}

fn completed() -> String {
    format!(
        r#"{{"type":"image_generation.completed","b64_json":"{}","created_at":2,"size":"1024x1024","quality":"low","background":"opaque","output_format":"png","usage":{{"input_tokens":9,"input_tokens_details":{{"text_tokens":9,"image_tokens":0}},"output_tokens":272,"total_tokens":281}}}}"#,
        b64()
    )
}

/// The exact body: a comment, a keep-alive, CRLF line ends, an event whose JSON spans two
/// `data:` lines, and the completed event.
fn body() -> String {
    let p1 = partial(1);
    let (head, tail) = p1.split_at(40);
    format!(
        ": OPENROUTER PROCESSING\r\n\r\nevent: image_generation.partial_image\r\ndata: {}\r\n\r\n:\r\n\r\nevent: image_generation.partial_image\ndata: {head}\ndata: {tail}\n\nevent: image_generation.completed\ndata: {}\n\n",
        partial(0),
        completed()
    )
}

fn sse(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("x-request-id", "req_stream_1")
        .set_body_raw(body.into_bytes(), "text/event-stream; charset=utf-8")
}

fn provider(base: String) -> OpenAi {
    OpenAi::builder()
        .api_key(KEY_A.to_string())
        .base_url(base)
        .build()
        .unwrap()
}

fn streamed() -> ImageRequest {
    let mut r: ImageRequest = req().into();
    r.set_stream(Some(true), Some(2));
    r
}

async fn drain(mut s: ProviderStream) -> (Vec<ProviderEvent>, Option<ProviderError>) {
    let mut out = Vec::new();
    while let Some(item) = s.next().await {
        match item {
            Ok(e) => out.push(e),
            Err(e) => {
                assert!(s.next().await.is_none(), "the stream ends after an error");
                return (out, Some(e));
            }
        }
    }
    (out, None)
}

fn ctx() -> CallContext {
    CallContext::new(Duration::from_secs(10))
}

#[tokio::test]
async fn an_exact_event_stream_gives_partials_and_the_final_image() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .and(body_partial_json(
            serde_json::json!({"stream": true, "partial_images": 2}),
        ))
        .respond_with(sse(body()))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(format!("{}/v1", server.uri()));
    assert!(p.streams("gpt-image-1"));
    assert!(
        !p.streams("dall-e-3"),
        "the catalog says dall-e does not stream"
    );
    let s = p.send_stream(&streamed(), &ctx()).await.unwrap();
    let (events, err) = drain(s).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(events.len(), 3);
    for (i, e) in events[..2].iter().enumerate() {
        let ProviderEvent::Partial(p) = e else {
            panic!("{e:?}")
        };
        assert_eq!(p.index, i as u32);
        assert_eq!(
            p.image.bytes.as_ref(),
            crate::support::wire::png_bytes().as_slice()
        );
        assert_eq!(p.echoed.background.as_deref(), Some("opaque"));
        assert_eq!(p.echoed.created_at, Some(1));
    }
    let ProviderEvent::Completed(resp) = &events[2] else {
        panic!()
    };
    assert_eq!(resp.usage.as_ref().unwrap().total_tokens, 281);
    assert_eq!(resp.request_id.as_deref(), Some("req_stream_1"));
    assert_eq!(resp.created, 2);
    assert_eq!(resp.status, 200);
}

#[tokio::test]
async fn a_refusal_before_the_stream_is_classified_like_any_answer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "7")
                .set_body_json(serde_json::json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}})),
        )
        .mount(&server)
        .await;
    let p = provider(format!("{}/v1", server.uri()));
    let e = p.send_stream(&streamed(), &ctx()).await.err().unwrap();
    assert!(matches!(e.kind, ErrorKind::RateLimited { .. }), "{e:?}");
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn broken_streams_are_decode_errors_never_success() {
    let no_completed = format!(
        "event: image_generation.partial_image\ndata: {}\n\n",
        partial(0)
    );
    let truncated =
        format!("{no_completed}event: image_generation.completed\ndata: {{\"type\":\"image_gen");
    let not_json = format!("{no_completed}data: {{nope\n\n");
    let bad_b64 = format!(
        "{no_completed}data: {{\"type\":\"image_generation.completed\",\"b64_json\":\"@@@@\"}}\n\n"
    );
    let not_image = format!(
        "{no_completed}data: {{\"type\":\"image_generation.completed\",\"b64_json\":\"{}\"}}\n\n",
        base64::engine::general_purpose::STANDARD.encode(b"just some text, no image")
    );
    for (name, body, want) in [
        (
            "no completed",
            no_completed.clone(),
            "before its completed event",
        ),
        ("truncated", truncated, "middle of an event"),
        ("not json", not_json, "not valid JSON"),
        ("bad base64", bad_b64, "not valid base64"),
        ("not an image", not_image, "is not a PNG"),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(sse(body))
            .mount(&server)
            .await;
        let p = provider(format!("{}/v1", server.uri()));
        let s = p.send_stream(&streamed(), &ctx()).await.unwrap();
        let (events, err) = drain(s).await;
        assert_eq!(events.len(), 1, "{name}: the partial before the break");
        let err = err.unwrap_or_else(|| panic!("{name}: must fail"));
        assert_eq!(err.kind, ErrorKind::Decode, "{name}");
        assert_eq!(err.status, Some(200), "{name}");
        assert!(err.message.contains(want), "{name}: {}", err.message);
    }
}

#[tokio::test]
async fn a_json_answer_to_a_streamed_request_is_refused() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(crate::support::wire::ok())
        .mount(&server)
        .await;
    let p = provider(format!("{}/v1", server.uri()));
    let e = p.send_stream(&streamed(), &ctx()).await.err().unwrap();
    assert_eq!(e.kind, ErrorKind::Decode);
    assert!(e.message.contains("not an event stream"), "{}", e.message);
}

#[tokio::test]
async fn an_error_event_is_classified_and_scrubbed_of_the_key() {
    let body = format!(
        "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"message\":\"Your request was rejected by the safety system. key {KEY_A}\",\"type\":\"image_generation_user_error\",\"code\":\"moderation_blocked\"}}}}\n\n"
    );
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(sse(body))
        .mount(&server)
        .await;
    let p = provider(format!("{}/v1", server.uri()));
    let s = p.send_stream(&streamed(), &ctx()).await.unwrap();
    let (events, err) = drain(s).await;
    assert!(events.is_empty());
    let err = err.unwrap();
    assert!(
        matches!(err.kind, ErrorKind::ContentPolicy { .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains(KEY_A), "key scrubbed");
}

#[tokio::test]
async fn azure_streams_only_on_an_api_version_that_does() {
    let old = Azure::builder()
        .endpoint("https://r.openai.azure.com")
        .api_key("k".repeat(32))
        .deployment("gpt-image-1", "img")
        .api_version("2024-02-01")
        .build()
        .unwrap();
    assert!(!old.streams("gpt-image-1"));
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/deployments/img/images/generations"))
        .respond_with(sse(body()))
        .expect(1)
        .mount(&server)
        .await;
    let new = Azure::builder()
        .endpoint(server.uri())
        .api_key("k".repeat(32))
        .deployment("gpt-image-1", "img")
        .build()
        .unwrap();
    assert!(new.streams("gpt-image-1"));
    let s = new.send_stream(&streamed(), &ctx()).await.unwrap();
    let (events, err) = drain(s).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(events.len(), 3);
    let sent = &server.received_requests().await.unwrap()[0];
    assert!(sent
        .url
        .query()
        .unwrap_or("")
        .contains("api-version=2025-04-01-preview"));
}

/// A raw loopback server that answers one request with `body` in chunked transfer encoding,
/// `chunk` bytes per chunk, flushing each (so the client sees every split point).
async fn chunked_server(body: String, chunk: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 65536];
        let mut seen = Vec::new();
        // Read the request head and its body (Content-Length).
        loop {
            let n = sock.read(&mut buf).await.unwrap();
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if seen.len() >= end + 4 + len {
                    break;
                }
            }
        }
        sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        for piece in body.as_bytes().chunks(chunk) {
            sock.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                .await
                .unwrap();
            sock.write_all(piece).await.unwrap();
            sock.write_all(b"\r\n").await.unwrap();
            sock.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
        sock.write_all(b"0\r\n\r\n").await.unwrap();
        sock.flush().await.unwrap();
    });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn events_split_across_chunks_at_awkward_points_arrive_whole() {
    for chunk in [1, 2, 3, 7, 64, 1000] {
        let base = chunked_server(body(), chunk).await;
        let p = provider(base);
        let s = p.send_stream(&streamed(), &ctx()).await.unwrap();
        let (events, err) = drain(s).await;
        assert!(err.is_none(), "chunk {chunk}: {err:?}");
        assert_eq!(events.len(), 3, "chunk {chunk}");
        assert!(
            matches!(events[2], ProviderEvent::Completed(_)),
            "chunk {chunk}"
        );
    }
}
