//! Metrics, status and tracing: every documented metric with its labels, every status field (never
//! a key) and the spans per request and attempt — what operators watch.

use crate::support::scoring::*;
use crate::support::{Fake, Step};
use image_router::breaker::{BreakerConfig, BreakerState};
use image_router::{ErrorKind, Provider, ProviderOptions, Router};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

mod rec {
    use super::*;
    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata,
        Recorder, SharedString, Unit,
    };

    /// (kind, name) -> list of label sets seen, plus counter totals and descriptions.
    #[derive(Default, Debug)]
    pub struct Log {
        pub described: Vec<String>,
        pub seen: BTreeMap<(&'static str, String), Vec<BTreeMap<String, String>>>,
        pub counters: HashMap<String, u64>,
    }

    #[derive(Default, Clone)]
    pub struct TestRecorder(pub Arc<Mutex<Log>>);

    struct Handle {
        log: Arc<Mutex<Log>>,
        key: String,
    }
    impl CounterFn for Handle {
        fn increment(&self, v: u64) {
            *self
                .log
                .lock()
                .counters
                .entry(self.key.clone())
                .or_default() += v;
        }
        fn absolute(&self, v: u64) {
            self.log.lock().counters.insert(self.key.clone(), v);
        }
    }
    impl GaugeFn for Handle {
        fn increment(&self, _: f64) {}
        fn decrement(&self, _: f64) {}
        fn set(&self, _: f64) {}
    }
    impl HistogramFn for Handle {
        fn record(&self, _: f64) {}
    }

    impl TestRecorder {
        fn note(&self, kind: &'static str, key: &Key) -> Arc<Handle> {
            let labels: BTreeMap<String, String> = key
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            let id = format!("{}{:?}", key.name(), labels);
            self.0
                .lock()
                .seen
                .entry((kind, key.name().to_string()))
                .or_default()
                .push(labels);
            Arc::new(Handle {
                log: Arc::clone(&self.0),
                key: id,
            })
        }
    }

    impl Recorder for TestRecorder {
        fn describe_counter(&self, k: KeyName, _: Option<Unit>, _: SharedString) {
            self.0.lock().described.push(k.as_str().to_string());
        }
        fn describe_gauge(&self, k: KeyName, _: Option<Unit>, _: SharedString) {
            self.0.lock().described.push(k.as_str().to_string());
        }
        fn describe_histogram(&self, k: KeyName, _: Option<Unit>, _: SharedString) {
            self.0.lock().described.push(k.as_str().to_string());
        }
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.note("counter", key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.note("gauge", key))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(self.note("histogram", key))
        }
    }
}

#[tokio::test(start_paused = true)]
async fn every_documented_metric_is_emitted_with_its_labels() {
    use image_router::metrics as m;
    let recorder = rec::TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let a = Fake::new("a").arc();
    let b = Fake::new("b").arc();
    let router = builder_with(&[&a, &b])
        .cheap_probe(true)
        .retry_backoff(Duration::from_millis(1))
        .breaker(BreakerConfig {
            consecutive_failures: 2,
            ..BreakerConfig::default()
        })
        .build()
        .unwrap();
    // 429 on a, served by b: a failover and a rate limit.
    a.set_default(Step::fail(rate_limited()));
    router.generate(req()).await.unwrap();
    // Two server errors on a open its breaker.
    a.set_default(Step::fail(ErrorKind::Server));
    tokio::time::sleep(Duration::from_secs(2)).await; // the 429's block is over
    let r2 = router.generate(req()).await.unwrap();
    assert_eq!(r2.attempts.len(), 3, "{:?}", r2.attempts);
    assert_eq!(
        router.status().providers[0].breaker.state,
        BreakerState::Open
    );
    // After the cool-down, the (cheap) probe.
    tokio::time::sleep(Duration::from_secs(11)).await;
    a.set_default(Step::Ok);
    let r3 = router.generate(req()).await.unwrap();
    assert_eq!(r3.provider, "a", "{:?}", r3.attempts);
    // A failed request.
    a.set_default(Step::fail(ErrorKind::InvalidRequest));
    let _ = router.generate(req()).await;

    image_router::metrics::describe();
    let log = recorder.0.lock();
    let expect: &[(&str, &str, &[&str])] = &[
        ("counter", m::REQUESTS_TOTAL, &["outcome"]),
        ("histogram", m::REQUEST_DURATION, &["outcome"]),
        ("counter", m::ATTEMPTS_TOTAL, &["provider", "outcome"]),
        ("histogram", m::ATTEMPT_DURATION, &["provider"]),
        ("counter", m::FAILOVERS_TOTAL, &["provider"]),
        ("counter", m::RATE_LIMITED_TOTAL, &["provider"]),
        ("counter", m::PROBES_TOTAL, &["provider", "result"]),
        (
            "counter",
            m::BREAKER_TRANSITIONS_TOTAL,
            &["provider", "from", "to"],
        ),
        ("gauge", m::BREAKER_STATE, &["provider"]),
        ("gauge", m::HEADROOM_RATIO, &["provider"]),
        ("gauge", m::SPEND_USD_TOTAL, &["ledger"]),
    ];
    for (_, name, _) in expect {
        assert!(
            log.described.iter().any(|d| d == name),
            "{name} not described"
        );
    }
    for (kind, name, labels) in expect {
        let seen = log
            .seen
            .get(&(*kind, name.to_string()))
            .unwrap_or_else(|| panic!("{kind} {name} never emitted; seen: {:?}", log.seen.keys()));
        for set in seen {
            let keys: Vec<&str> = set.keys().map(|k| k.as_str()).collect();
            let mut want: Vec<&str> = labels.to_vec();
            want.sort();
            assert_eq!(keys, want, "{name} labels");
        }
    }
    let transitions = &log.seen[&("counter", m::BREAKER_TRANSITIONS_TOTAL.to_string())];
    assert!(transitions
        .iter()
        .any(|l| l["provider"] == "a" && l["from"] == "closed" && l["to"] == "open"));
    let spend = &log.seen[&("gauge", m::SPEND_USD_TOTAL.to_string())];
    assert!(spend.iter().any(|l| l["ledger"] == "router"));
    assert!(spend.iter().any(|l| l["ledger"] == "b"));
    let requests: u64 = log
        .counters
        .iter()
        .filter(|(k, _)| k.starts_with(m::REQUESTS_TOTAL))
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(requests, 4, "{:?}", log.counters);
    let failovers: u64 = log
        .counters
        .iter()
        .filter(|(k, _)| k.starts_with(m::FAILOVERS_TOTAL))
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(failovers, 2, "{:?}", log.counters);
}

#[tokio::test]
async fn status_serializes_every_documented_field_and_never_a_key() {
    let key = format!("sk-{}", "Zq7".repeat(12));
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "error": {
                "message": "Incorrect API key provided: sk-Zq7Z*****q7Zq. You can find your API key at https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error", "param": null, "code": "invalid_api_key"
            }
        })))
        .mount(&server)
        .await;
    let openai = image_router::providers::OpenAi::builder()
        .name("openai")
        .base_url(format!("{}/v1", server.uri()))
        .api_key(key.clone())
        .build()
        .unwrap();
    let b = Fake::new("b").arc();
    let router = Router::builder()
        .provider(openai)
        .provider_arc(
            Arc::clone(&b) as Arc<dyn Provider>,
            ProviderOptions::new().rpm(10),
        )
        .build()
        .unwrap();
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "b");
    let st = router.status();
    let json = serde_json::to_value(&st).unwrap();
    let text = json.to_string();
    assert!(!text.contains(&key), "status leaks the key");
    assert!(!format!("{st:?}").contains(&key), "Debug leaks the key");
    for k in ["strategy", "default_model", "spend", "providers"] {
        assert!(json.get(k).is_some(), "status lacks {k}");
    }
    assert_eq!(json["strategy"], "scored");
    for p in json["providers"].as_array().unwrap() {
        for k in [
            "name",
            "kind",
            "priority",
            "breaker",
            "health",
            "score",
            "headroom",
            "spend",
            "cooldown",
            "last_error",
        ] {
            assert!(p.get(k).is_some(), "provider status lacks {k}: {p}");
        }
        for k in [
            "availability",
            "latency",
            "headroom",
            "budget",
            "priority",
            "total",
        ] {
            assert!(p["score"].get(k).is_some(), "score lacks {k}");
        }
        assert!(p["breaker"].get("state").is_some());
    }
    let p0 = &json["providers"][0];
    assert_eq!(
        p0["last_error"]["error"]["kind"]["kind"]
            .as_str()
            .or(p0["last_error"]["error"]["kind"].as_str()),
        Some("authentication"),
        "{p0}"
    );
    assert!(p0["cooldown"].is_object(), "401 cool-down shown: {p0}");
    // The last error comes with its explanation.
    let expl = &p0["last_error"]["explanation"];
    assert!(
        expl["cause"].as_str().is_some_and(|c| !c.is_empty())
            && expl["action"].as_str().is_some_and(|a| !a.is_empty()),
        "{p0}"
    );
    assert_eq!(json["providers"][1]["breaker"]["state"], "closed");
}

mod spans {
    use super::*;
    use tracing::span::{Attributes, Id, Record};
    use tracing::Subscriber;
    use tracing_subscriber::layer::{Context, Layer};

    /// Span id -> (name, fields so far). Global: a scoped subscriber's callsite interest
    /// races with tests running on other threads, so the test installs one global
    /// subscriber and picks its own spans out by unique names.
    pub static SPANS: Mutex<Vec<(u64, String, String)>> = Mutex::new(Vec::new());

    struct Fields<'a>(&'a mut String);
    impl tracing::field::Visit for Fields<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.push_str(&format!("{}={:?} ", field.name(), value));
        }
    }

    pub struct Names;

    impl<S: Subscriber> Layer<S> for Names {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
            let mut f = String::new();
            attrs.record(&mut Fields(&mut f));
            SPANS
                .lock()
                .push((id.into_u64(), attrs.metadata().name().to_string(), f));
        }
        fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
            let mut spans = SPANS.lock();
            if let Some(entry) = spans.iter_mut().rev().find(|e| e.0 == id.into_u64()) {
                values.record(&mut Fields(&mut entry.2));
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn tracing_spans_per_request_and_per_attempt() {
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(spans::Names);
    // Only this test installs a subscriber in this binary.
    let _ = tracing::subscriber::set_global_default(subscriber);

    let a = Fake::new("trace-a").arc();
    let b = Fake::new("trace-b").arc();
    a.set_default(Step::fail(rate_limited()));
    let router = builder_with(&[&a, &b]).build().unwrap();
    router.generate(req().model("trace-model")).await.unwrap();
    router.generate(req().model("trace-model")).await.unwrap();
    let spans = spans::SPANS.lock().clone();
    let requests: Vec<_> = spans
        .iter()
        .filter(|(_, n, f)| n == "image_router.request" && f.contains("trace-model"))
        .collect();
    let attempts: Vec<_> = spans
        .iter()
        .filter(|(_, n, f)| n == "image_router.attempt" && f.contains("trace-"))
        .collect();
    assert_eq!(requests.len(), 2, "{spans:?}");
    assert!(
        requests
            .iter()
            .all(|(_, _, f)| f.contains("provider=\"trace-b\"")),
        "the request span names the provider that served: {requests:?}"
    );
    // First request: a (429) then b; second: b (a is blocked for its retry-after).
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(attempts
        .iter()
        .any(|(_, _, f)| f.contains("provider=\"trace-a\"")));
    assert!(attempts
        .iter()
        .any(|(_, _, f)| f.contains("provider=\"trace-b\"")));
}

/// Status output: a provider message carrying a URL with credentials is masked in
/// `Router::status()`, and `image-router status` shows the one denial duration the router
/// uses (`cooldown`, else `[router.breaker] long_cool_down`).
mod status_output {

    use assert_cmd::Command;
    use image_router::providers::OpenAi;
    use image_router::{GenerateRequest, Router};
    use serde_json::{json, Value};
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    #[tokio::test]
    async fn status_masks_credentials_in_provider_messages() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(502).set_body_json(json!({"error": {
                "message": "upstream https://admin:hunter2@proxy.internal/v1 refused",
                "type": "server_error", "param": null, "code": null}})))
            .mount(&server)
            .await;
        let p = OpenAi::builder()
            .base_url(format!("{}/v1", server.uri()))
            .api_key("test-key")
            .build()
            .unwrap();
        let router = Router::builder()
            .provider(p)
            .retry_backoff(std::time::Duration::from_millis(1))
            .build()
            .unwrap();
        let err = router
            .generate(GenerateRequest::new("a fox"))
            .await
            .unwrap_err();
        // Masked where every error passes (the router), so the returned error is clean too.
        for shown in [
            err.to_string(),
            format!("{err:?}"),
            err.explain().to_string(),
        ] {
            assert!(shown.contains("proxy.internal"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        let status = serde_json::to_string(&router.status()).unwrap();
        assert!(status.contains("proxy.internal"), "{status}");
        assert!(!status.contains("hunter2"), "{status}");
        assert!(!status.contains("admin:"), "{status}");
    }

    #[test]
    fn cli_status_shows_the_breaker_long_cool_down_as_the_denial_duration() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("r.toml");
        let text = |extra: &str| {
            format!(
                "[router]\n{extra}\n[router.breaker]\nlong_cool_down = \"7m\"\n\
                 [[provider]]\nname = \"direct\"\nkind = \"openai\"\napi_key_env = \"IR_TEST_KEY\"\n"
            )
        };
        for (extra, want) in [("", "7m0s"), ("cooldown = \"2m\"", "2m0s")] {
            std::fs::write(&cfg, text(extra)).unwrap();
            let out = Command::cargo_bin("image-router")
                .unwrap()
                .env_remove("IMAGE_ROUTER_CONFIG")
                .env("IR_TEST_KEY", "test-key")
                .args(["status", "--json", "--config"])
                .arg(&cfg)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["router"]["cooldown"], want, "{extra:?}: {}", v["router"]);
        }
    }
}
