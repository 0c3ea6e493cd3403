//! The loopback mock server the HTTP properties run against: each case sets what it answers
//! next, and [`over_mock`] runs a strategy's answers through a provider. Apart so the image
//! and chat properties share one harness.

use super::*;

/// What the mock server answers next.
#[derive(Clone, Default)]
pub(super) struct Next {
    pub(super) status: u16,
    pub(super) headers: Vec<(&'static str, Vec<u8>)>,
    pub(super) body: Vec<u8>,
}

#[derive(Clone)]
pub(super) struct Scripted(Arc<Mutex<Next>>);

impl wiremock::Respond for Scripted {
    fn respond(&self, _: &wiremock::Request) -> wiremock::ResponseTemplate {
        let next = self.0.lock().map(|n| n.clone()).unwrap_or_default();
        let mut t = wiremock::ResponseTemplate::new(next.status).set_body_bytes(next.body);
        for (name, value) in next.headers {
            if let Ok(v) = HeaderValue::from_bytes(&value) {
                t = t.insert_header(HeaderName::from_static(name), v);
            }
        }
        t
    }
}

/// A runtime, a loopback mock server answering every request with [`Next`], and its URL.
pub(super) fn mock_server() -> (
    tokio::runtime::Runtime,
    wiremock::MockServer,
    Arc<Mutex<Next>>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("test runtime: {e}"));
    let next = Arc::new(Mutex::new(Next::default()));
    let server = rt.block_on(async {
        let s = wiremock::MockServer::builder()
            .disable_request_recording()
            .start()
            .await;
        mount(&s, &next).await;
        s
    });
    (rt, server, next)
}

/// Mounts the two answers: downloads (`url` items) get a PNG header and a few bytes, every
/// POST gets [`Next`].
pub(super) async fn mount(server: &wiremock::MockServer, next: &Arc<Mutex<Next>>) {
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .respond_with(
            wiremock::ResponseTemplate::new(200).set_body_bytes(b"\x89PNG\r\n\x1a\nrest".to_vec()),
        )
        .mount(server)
        .await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Scripted(next.clone()))
        .mount(server)
        .await;
}

/// Cases between two remounts of the mock: a mounted wiremock mock keeps every request it
/// matched (even with recording disabled), about 5 KB a case, which would otherwise make a
/// long run's memory grow with its length.
pub(super) const REMOUNT_EVERY: u32 = 1_000;

/// Runs `cases` generations against the mock answering what `strategy` makes.
pub(super) fn over_mock<S, F>(strategy: S, provider: F, check_kinds: bool)
where
    S: Strategy<Value = (u16, Vec<(&'static str, Vec<u8>)>, Vec<u8>)>,
    F: Fn(&str) -> Box<dyn Provider>,
{
    let (rt, server, next) = mock_server();
    let p = provider(&server.uri());
    let mut runner = TestRunner::new(over_http());
    let served = std::cell::Cell::new(0u32);
    let result = runner.run(&strategy, |(status, headers, body)| {
        served.set(served.get() + 1);
        if served.get().is_multiple_of(REMOUNT_EVERY) {
            rt.block_on(async {
                server.reset().await;
                mount(&server, &next).await;
            });
        }
        if std::env::var_os("FUZZ_TRACE").is_some() {
            eprintln!(
                "CASE {status} {headers:?} {}",
                String::from_utf8_lossy(&body)
            );
        }
        if let Ok(mut n) = next.lock() {
            *n = Next {
                status,
                headers,
                body: body.clone(),
            };
        }
        let ctx = CallContext::new(Duration::from_secs(10));
        let req = GenerateRequest::new("a lighthouse").model("gpt-image-1");
        let out = rt.block_on(p.generate(&req, &ctx));
        match out {
            Ok(resp) => {
                prop_assert!(!resp.images.is_empty());
                prop_assert!((200..300).contains(&status), "status {status} succeeded");
                for img in &resp.images {
                    prop_assert!(!img.bytes.is_empty());
                }
                // A single standard-base64 item decodes to exactly its bytes.
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if let Some([item]) = v["data"].as_array().map(Vec::as_slice) {
                    if let Some(b) = item["b64_json"].as_str().and_then(standard_b64) {
                        prop_assert_eq!(resp.images[0].bytes.as_ref(), b.as_slice());
                    }
                }
            }
            Err(e) => {
                prop_assert!(!e.message.is_empty());
                if check_kinds && (200..300).contains(&status) {
                    prop_assert_eq!(&e.kind, &ErrorKind::Decode, "{}", e.message);
                }
                if let Some(d) = e.retry_after {
                    prop_assert!(bounded(d));
                }
            }
        }
        Ok::<(), TestCaseError>(())
    });
    drop(server);
    if let Err(e) = result {
        panic!("{e}");
    }
}

pub(super) fn openai(base: &str) -> Box<dyn Provider> {
    let key = ["sk", "fuzz", "0000"].join("-");
    match OpenAi::builder()
        .api_key(key)
        .base_url(format!("{base}/v1"))
        .client(reqwest::Client::new())
        .build()
    {
        Ok(p) => Box::new(p),
        Err(e) => panic!("provider: {e}"),
    }
}

pub(super) fn chat_proxy(base: &str) -> Box<dyn Provider> {
    let key = ["sk", "fuzz", "0000"].join("-");
    match Compatible::builder()
        .api_key(key)
        .base_url(format!("{base}/v1"))
        .mode(CompatibleMode::Chat)
        .client(reqwest::Client::new())
        .build()
    {
        Ok(p) => Box::new(p),
        Err(e) => panic!("provider: {e}"),
    }
}
