//! Metric names and recording helpers, through the [`metrics`] facade (no exporter here:
//! install any `metrics` recorder, e.g. a Prometheus exporter, in the application).
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `image_router_requests_total` | counter | `outcome` | routed requests by final outcome |
//! | `image_router_request_duration_seconds` | histogram | `outcome` | end-to-end time in the router |
//! | `image_router_attempts_total` | counter | `provider`, `outcome` | provider calls by outcome |
//! | `image_router_attempt_duration_seconds` | histogram | `provider` | provider call latency |
//! | `image_router_failovers_total` | counter | `provider` | requests served after at least one failed attempt (labelled with the provider that served) |
//! | `image_router_rate_limited_total` | counter | `provider` | 429 rate limits received |
//! | `image_router_possibly_billed_total` | counter | `provider` | attempts sent that got no answer (a timeout after sending): the provider may have billed them; not retried there, their budget reservation held |
//! | `image_router_suspicious_usage_total` | counter | `provider` | answers whose reported usage was beyond what the request could produce (clamped to that maximum) |
//! | `image_router_probes_total` | counter | `provider`, `result` | cheap half-open probes (`RouterBuilder::cheap_probe`): `healthy`, `failed`, `unsupported` |
//! | `image_router_checks_total` | counter | `provider`, `result` | model lookups of the capability check (`Router::check`): `offered`, `not_offered`, `denied`, `unchecked` |
//! | `image_router_breaker_transitions_total` | counter | `provider`, `from`, `to` | circuit-breaker state changes |
//! | `image_router_breaker_state` | gauge | `provider` | 0 closed, 1 recovering, 2 half-open, 3 open |
//! | `image_router_headroom_ratio` | gauge | `provider` | free share of the provider's effective rate limits (0–1) |
//! | `image_router_spend_usd_total` | gauge | `ledger` | lifetime spend of a ledger (`router` or a provider name) |
//! | `image_router_store_degraded` | gauge | `account` | 1 while a shared state store cannot be reached and the account is served from local state with a conservative share, else 0 |
//! | `image_router_store_degraded_admissions_total` | counter | `account` | requests admitted from local state while the shared store was degraded |
//! | `image_router_cache_hits_total` | counter | `tier` | requests answered by the response cache without a call of their own: `memory`, `shared` (the Redis tier) or `flight` (an identical request in flight) |
//! | `image_router_cache_misses_total` | counter | | requests the response cache sent upstream (`Use` or `Refresh`) |
//! | `image_router_cache_bytes` | gauge | | bytes of image data in the response cache's memory tier |
//! | `image_router_cache_second_tier_failures_total` | counter | `op` | failed calls to the cache's Redis tier, skipped: `connect`, `get`, `put` |
//! | `image_router_queue_depth` | gauge | | jobs queued in the durable job queue (feature `queue`; set by workers and `JobQueue::stats`) |
//! | `image_router_queue_oldest_age_seconds` | gauge | | age of the oldest queued job, 0 when none is queued |
//! | `image_router_queue_jobs_total` | counter | `outcome` | jobs a worker ended or handed on: `succeeded`, `failed`, `retried`, `released` |
//!
//! Call [`describe`] once after installing a recorder to give each metric its help text and
//! unit (an exporter such as Prometheus shows them as `# HELP` lines).

use std::time::Duration;

use metrics::{Key, Label, Level, Metadata, SharedString};

/// `image_router_requests_total`.
pub const REQUESTS_TOTAL: &str = "image_router_requests_total";
/// `image_router_request_duration_seconds`.
pub const REQUEST_DURATION: &str = "image_router_request_duration_seconds";
/// `image_router_attempts_total`.
pub const ATTEMPTS_TOTAL: &str = "image_router_attempts_total";
/// `image_router_attempt_duration_seconds`.
pub const ATTEMPT_DURATION: &str = "image_router_attempt_duration_seconds";
/// `image_router_failovers_total`.
pub const FAILOVERS_TOTAL: &str = "image_router_failovers_total";
/// `image_router_rate_limited_total`.
pub const RATE_LIMITED_TOTAL: &str = "image_router_rate_limited_total";

/// `image_router_queue_depth`.
pub const QUEUE_DEPTH: &str = "image_router_queue_depth";
/// `image_router_queue_oldest_age_seconds`.
pub const QUEUE_OLDEST_AGE: &str = "image_router_queue_oldest_age_seconds";
/// `image_router_queue_jobs_total`.
pub const QUEUE_JOBS_TOTAL: &str = "image_router_queue_jobs_total";

/// `image_router_possibly_billed_total`.
pub const POSSIBLY_BILLED_TOTAL: &str = "image_router_possibly_billed_total";
/// `image_router_suspicious_usage_total` (recorded by the built-in providers).
pub const SUSPICIOUS_USAGE_TOTAL: &str = "image_router_suspicious_usage_total";

/// A provider reported usage beyond what the request could produce (rare: an error path, so
/// the label is built per call).
pub(crate) fn suspicious_usage(provider: &str) {
    metrics::counter!(SUSPICIOUS_USAGE_TOTAL, "provider" => provider.to_string()).increment(1);
}

pub(crate) fn possibly_billed(provider: &str) {
    metrics::counter!(POSSIBLY_BILLED_TOTAL, "provider" => provider.to_string()).increment(1);
}

/// The `outcome` label of a finished request (one-shot or streamed): `success`, the last
/// attempt's outcome, or `invalid` / `no_provider` when no attempt was made.
pub(crate) fn request_outcome<T>(result: &Result<T, crate::error::Error>) -> &'static str {
    match result {
        Ok(_) => "success",
        Err(e) => e
            .cause()
            .map(|c| c.outcome().as_str())
            .unwrap_or(if e.is_invalid() {
                "invalid"
            } else {
                "no_provider"
            }),
    }
}

/// A request's end. `took` is called only when a recorder keeps the duration (see
/// [`Lazy`]): without one the request's clock is not read again (issue 16).
pub(crate) fn request_finished(outcome: &'static str, took: impl FnOnce() -> Duration) {
    if outcome == "success" {
        // The common case from keys made at compile time (their hash is computed once).
        static LABELS: [Label; 1] = [Label::from_static_parts("outcome", "success")];
        static COUNTER: Key = Key::from_static_parts(REQUESTS_TOTAL, &LABELS);
        static HISTOGRAM: Key = Key::from_static_parts(REQUEST_DURATION, &LABELS);
        metrics::with_recorder(|r| {
            r.register_counter(&COUNTER, &METADATA).increment(1);
            r.register_histogram(&HISTOGRAM, &METADATA)
                .record(Lazy(|| took().as_secs_f64()));
        });
        return;
    }
    metrics::counter!(REQUESTS_TOTAL, "outcome" => outcome).increment(1);
    metrics::histogram!(REQUEST_DURATION, "outcome" => outcome)
        .record(Lazy(|| took().as_secs_f64()));
}

pub(crate) fn attempt(provider: &str, outcome: &'static str, took: Duration) {
    metrics::counter!(ATTEMPTS_TOTAL, "provider" => provider.to_string(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!(ATTEMPT_DURATION, "provider" => provider.to_string())
        .record(took.as_secs_f64());
}

/// [`attempt`] for a provider whose keys are built: the same metrics, labels and values.
pub(crate) fn attempt_keyed(keys: &ProviderKeys, outcome: &'static str, took: Duration) {
    let built;
    let counter = if outcome == "success" {
        &keys.attempt_success
    } else {
        built = Key::from_parts(
            ATTEMPTS_TOTAL,
            vec![
                Label::new("provider", keys.label.clone()),
                Label::from_static_parts("outcome", outcome),
            ],
        );
        &built
    };
    metrics::with_recorder(|r| {
        r.register_counter(counter, &METADATA).increment(1);
        r.register_histogram(&keys.attempt_duration, &METADATA)
            .record(took.as_secs_f64());
    });
}

/// `image_router_stream_first_partial_seconds`: time from sending a streamed request to its
/// first partial image, per provider (what a user of a streaming UI waits for).
pub const STREAM_FIRST_PARTIAL: &str = "image_router_stream_first_partial_seconds";

/// Records a streamed attempt's time to its first partial image (rare enough per request that
/// the key is built per call from the provider's label).
pub(crate) fn stream_first_partial(keys: &ProviderKeys, took: Duration) {
    metrics::histogram!(STREAM_FIRST_PARTIAL, "provider" => keys.label.clone())
        .record(took.as_secs_f64());
}

/// Counts a failover (`image_router_failovers_total`) for a provider whose keys are built.
pub(crate) fn failover_keyed(keys: &ProviderKeys) {
    metrics::with_recorder(|r| r.register_counter(&keys.failovers, &METADATA).increment(1));
}

/// `image_router_probes_total`.
pub const PROBES_TOTAL: &str = "image_router_probes_total";

pub(crate) fn probe(provider: &str, result: &'static str) {
    metrics::counter!(PROBES_TOTAL, "provider" => provider.to_string(), "result" => result)
        .increment(1);
}

/// `image_router_checks_total`.
pub const CHECKS_TOTAL: &str = "image_router_checks_total";

pub(crate) fn check(provider: &str, result: &'static str) {
    metrics::counter!(CHECKS_TOTAL, "provider" => provider.to_string(), "result" => result)
        .increment(1);
}

pub(crate) fn rate_limited(provider: &str) {
    metrics::counter!(RATE_LIMITED_TOTAL, "provider" => provider.to_string()).increment(1);
}

/// `image_router_breaker_transitions_total`.
pub const BREAKER_TRANSITIONS_TOTAL: &str = "image_router_breaker_transitions_total";
/// `image_router_breaker_state`.
pub const BREAKER_STATE: &str = "image_router_breaker_state";
/// `image_router_headroom_ratio`.
pub const HEADROOM_RATIO: &str = "image_router_headroom_ratio";
/// `image_router_spend_usd_total`.
pub const SPEND_USD_TOTAL: &str = "image_router_spend_usd_total";

pub(crate) fn breaker_transition(provider: &str, from: &'static str, to: &'static str) {
    metrics::counter!(
        BREAKER_TRANSITIONS_TOTAL,
        "provider" => provider.to_string(),
        "from" => from,
        "to" => to
    )
    .increment(1);
}

/// A gauge value computed only when it is recorded.
///
/// `Gauge::set` converts its value only for a gauge a recorder keeps: without a recorder
/// (the default) or for a gauge the recorder drops, the closure never runs. The router's
/// gauges read the store (a lock, the clock, the window) after every attempt; this keeps
/// that work off the request path of an application that records no metrics (issue 16).
struct Lazy<F>(F);

impl<F: FnOnce() -> f64> metrics::IntoF64 for Lazy<F> {
    fn into_f64(self) -> f64 {
        (self.0)()
    }
}

/// The provider gauges, each value computed only if it is recorded (see [`Lazy`]).
pub(crate) fn provider_gauges(
    keys: &ProviderKeys,
    breaker_state: impl FnOnce() -> f64,
    headroom: impl FnOnce() -> f64,
    spend: impl FnOnce() -> f64,
) {
    metrics::with_recorder(|r| {
        r.register_gauge(&keys.breaker_state, &METADATA)
            .set(Lazy(breaker_state));
        r.register_gauge(&keys.headroom, &METADATA)
            .set(Lazy(headroom));
        r.register_gauge(&keys.spend, &METADATA).set(Lazy(spend));
    });
}

/// `image_router_cache_hits_total`.
pub const CACHE_HITS_TOTAL: &str = "image_router_cache_hits_total";
/// `image_router_cache_misses_total`.
pub const CACHE_MISSES_TOTAL: &str = "image_router_cache_misses_total";
/// `image_router_cache_bytes`.
pub const CACHE_BYTES: &str = "image_router_cache_bytes";
/// `image_router_cache_second_tier_failures_total`.
pub const CACHE_SECOND_TIER_FAILURES_TOTAL: &str = "image_router_cache_second_tier_failures_total";

pub(crate) fn cache_hit(tier: &'static str) {
    metrics::counter!(CACHE_HITS_TOTAL, "tier" => tier).increment(1);
}

pub(crate) fn cache_miss() {
    metrics::counter!(CACHE_MISSES_TOTAL).increment(1);
}

pub(crate) fn cache_bytes(bytes: u64) {
    metrics::gauge!(CACHE_BYTES).set(bytes as f64);
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn cache_second_tier_failure(op: &'static str) {
    metrics::counter!(CACHE_SECOND_TIER_FAILURES_TOTAL, "op" => op).increment(1);
}

/// What the metrics macros attach to each metric from this module: target and module path
/// `image_router::metrics`, level INFO (the macros' defaults, so a recorder that filters on
/// them sees the same values whichever path recorded).
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The keys of one provider's per-request metrics, built once when its slot is made.
///
/// Why: the `metrics` macros build a metric's key on every call, before they know whether a
/// recorder is installed (the crate offers no way to ask): a `String` for the provider label,
/// a `Vec` of labels and a hash, for each metric. A routed request records five or six
/// provider-labelled metrics, so without a recorder most of their cost was building keys
/// nobody reads. Built once here, a request only passes references; the label is an `Arc`
/// shared by every key that needs it at run time.
#[derive(Clone, Debug)]
pub(crate) struct ProviderKeys {
    label: SharedString,
    attempt_success: Key,
    attempt_duration: Key,
    failovers: Key,
    breaker_state: Key,
    headroom: Key,
    spend: Key,
}

impl ProviderKeys {
    /// The keys for provider `name` (label `provider`, and `ledger` for the spend gauge, as
    /// the module table says).
    pub(crate) fn new(name: &str) -> Self {
        let label = SharedString::from(std::sync::Arc::<str>::from(name));
        let key = |metric: &'static str, label_key: &'static str| {
            Key::from_parts(metric, vec![Label::new(label_key, label.clone())])
        };
        let attempt_success = Key::from_parts(
            ATTEMPTS_TOTAL,
            vec![
                Label::new("provider", label.clone()),
                Label::from_static_parts("outcome", "success"),
            ],
        );
        Self {
            attempt_success,
            attempt_duration: key(ATTEMPT_DURATION, "provider"),
            failovers: key(FAILOVERS_TOTAL, "provider"),
            breaker_state: key(BREAKER_STATE, "provider"),
            headroom: key(HEADROOM_RATIO, "provider"),
            spend: key(SPEND_USD_TOTAL, "ledger"),
            label,
        }
    }
}

/// `image_router_store_degraded`.
pub const STORE_DEGRADED: &str = "image_router_store_degraded";
/// `image_router_store_degraded_admissions_total`.
pub const STORE_DEGRADED_ADMISSIONS_TOTAL: &str = "image_router_store_degraded_admissions_total";

/// Sets whether `account`'s shared store is degraded (rare: on an outage's start and end).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn store_degraded(account: &str, degraded: bool) {
    metrics::gauge!(STORE_DEGRADED, "account" => account.to_string()).set(if degraded {
        1.0
    } else {
        0.0
    });
}

/// Counts a request admitted from local state while `account`'s shared store is degraded
/// (only during an outage, so the label is built per call).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn store_degraded_admission(account: &str) {
    metrics::counter!(STORE_DEGRADED_ADMISSIONS_TOTAL, "account" => account.to_string())
        .increment(1);
}

/// The router-wide spend gauge, computed only if it is recorded (see [`Lazy`]).
pub(crate) fn router_spend(spend: impl FnOnce() -> f64) {
    static LABELS: [Label; 1] = [Label::from_static_parts("ledger", "router")];
    static KEY: Key = Key::from_static_parts(SPEND_USD_TOTAL, &LABELS);
    metrics::with_recorder(|r| r.register_gauge(&KEY, &METADATA).set(Lazy(spend)));
}

/// Describes every metric above (help text and unit) to the installed recorder. Optional:
/// the metrics are recorded without it; exporters use it for `# HELP` lines and units.
///
/// ```
/// image_router::metrics::describe(); // a no-op without a recorder
/// ```
pub fn describe() {
    use metrics::Unit;
    metrics::describe_gauge!(
        QUEUE_DEPTH,
        Unit::Count,
        "Jobs queued in the durable job queue"
    );
    metrics::describe_gauge!(
        QUEUE_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest queued job, 0 when none is queued"
    );
    metrics::describe_counter!(
        QUEUE_JOBS_TOTAL,
        Unit::Count,
        "Jobs a worker ended or handed on, by outcome"
    );
    metrics::describe_counter!(
        REQUESTS_TOTAL,
        Unit::Count,
        "Routed requests by final outcome"
    );
    metrics::describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "End-to-end time of a request in the router"
    );
    metrics::describe_counter!(
        ATTEMPTS_TOTAL,
        Unit::Count,
        "Provider calls by provider and outcome"
    );
    metrics::describe_histogram!(ATTEMPT_DURATION, Unit::Seconds, "Provider call latency");
    metrics::describe_histogram!(
        STREAM_FIRST_PARTIAL,
        Unit::Seconds,
        "Time from sending a streamed request to its first partial image"
    );
    metrics::describe_counter!(
        FAILOVERS_TOTAL,
        Unit::Count,
        "Requests served after at least one failed attempt, by the provider that served"
    );
    metrics::describe_counter!(
        RATE_LIMITED_TOTAL,
        Unit::Count,
        "429 rate limits received, by provider"
    );
    metrics::describe_counter!(
        POSSIBLY_BILLED_TOTAL,
        Unit::Count,
        "Attempts sent that got no answer and may have been billed, by provider"
    );
    metrics::describe_counter!(
        SUSPICIOUS_USAGE_TOTAL,
        Unit::Count,
        "Answers whose reported usage was beyond what the request could produce, by provider"
    );
    metrics::describe_counter!(
        PROBES_TOTAL,
        Unit::Count,
        "Cheap half-open probes by provider and result (healthy, failed, unsupported)"
    );
    metrics::describe_counter!(
        CHECKS_TOTAL,
        Unit::Count,
        "Capability-check model lookups by provider and result (offered, not_offered, denied, unchecked)"
    );
    metrics::describe_counter!(
        BREAKER_TRANSITIONS_TOTAL,
        Unit::Count,
        "Circuit-breaker state changes by provider, from and to"
    );
    metrics::describe_gauge!(
        BREAKER_STATE,
        "Circuit-breaker state: 0 closed, 1 recovering, 2 half-open, 3 open"
    );
    metrics::describe_gauge!(
        HEADROOM_RATIO,
        "Free share of the provider's effective rate limits (0-1)"
    );
    metrics::describe_gauge!(
        SPEND_USD_TOTAL,
        "Lifetime spend in USD of a ledger (router or a provider)"
    );
    metrics::describe_gauge!(
        STORE_DEGRADED,
        "1 while the shared state store of an account cannot be reached and it is served from local state, else 0"
    );
    metrics::describe_counter!(
        STORE_DEGRADED_ADMISSIONS_TOTAL,
        Unit::Count,
        "Requests admitted from local state while the shared state store of an account was degraded"
    );
    metrics::describe_counter!(
        CACHE_HITS_TOTAL,
        Unit::Count,
        "Requests answered by the response cache without a call of their own, by tier (memory, shared, flight)"
    );
    metrics::describe_counter!(
        CACHE_MISSES_TOTAL,
        Unit::Count,
        "Requests the response cache sent upstream"
    );
    metrics::describe_gauge!(
        CACHE_BYTES,
        Unit::Bytes,
        "Bytes of image data in the response cache's memory tier"
    );
    metrics::describe_counter!(
        CACHE_SECOND_TIER_FAILURES_TOTAL,
        Unit::Count,
        "Failed calls to the response cache's Redis tier (skipped), by operation"
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use metrics::{Counter, Gauge, Histogram, KeyName, Recorder, Unit};

    use super::*;

    /// Records what is registered: kind and key (name and labels in order). Metadata from
    /// this module's functions is checked on the spot: the macros called in this test module
    /// carry the test module's path, so it cannot be compared with theirs.
    #[derive(Default)]
    struct Registered(Mutex<Vec<String>>);

    impl Registered {
        fn push(&self, kind: &str, key: &Key, meta: &Metadata<'_>) {
            if meta.module_path() != Some(module_path!()) {
                assert_eq!(meta.target(), "image_router::metrics");
                assert_eq!(meta.module_path(), Some("image_router::metrics"));
                assert_eq!(*meta.level(), Level::INFO);
            }
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let line = format!("{kind} {} {labels:?}", key.name());
            self.0.lock().unwrap().push(line);
        }
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    impl Recorder for Registered {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, meta: &Metadata<'_>) -> Counter {
            self.push("counter", key, meta);
            Counter::noop()
        }
        fn register_gauge(&self, key: &Key, meta: &Metadata<'_>) -> Gauge {
            self.push("gauge", key, meta);
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, meta: &Metadata<'_>) -> Histogram {
            self.push("histogram", key, meta);
            Histogram::noop()
        }
    }

    /// The prebuilt keys register exactly what the macros register (names, labels, label
    /// order), with the macros' metadata for this module.
    #[test]
    fn prebuilt_keys_match_the_macros() {
        let rec = Registered::default();
        let keys = ProviderKeys::new("azure-east");
        let took = Duration::from_millis(5);
        metrics::with_local_recorder(&rec, || {
            attempt("azure-east", "success", took);
            let by_macro = rec.take();
            attempt_keyed(&keys, "success", took);
            assert_eq!(rec.take(), by_macro);
            attempt("azure-east", "rate_limited", took);
            let by_macro = rec.take();
            attempt_keyed(&keys, "rate_limited", took);
            assert_eq!(rec.take(), by_macro);

            let _ = metrics::counter!(FAILOVERS_TOTAL, "provider" => "azure-east".to_string());
            let by_macro = rec.take();
            failover_keyed(&keys);
            assert_eq!(rec.take(), by_macro);

            let _ = metrics::gauge!(BREAKER_STATE, "provider" => "azure-east".to_string());
            let _ = metrics::gauge!(HEADROOM_RATIO, "provider" => "azure-east".to_string());
            let _ = metrics::gauge!(SPEND_USD_TOTAL, "ledger" => "azure-east".to_string());
            let by_macro = rec.take();
            provider_gauges(&keys, || 0.0, || 1.0, || 2.0);
            assert_eq!(rec.take(), by_macro);

            let _ = metrics::gauge!(SPEND_USD_TOTAL, "ledger" => "router");
            let by_macro = rec.take();
            router_spend(|| 1.0);
            assert_eq!(rec.take(), by_macro);

            for outcome in ["success", "no_provider"] {
                let _ = metrics::counter!(REQUESTS_TOTAL, "outcome" => outcome);
                let _ = metrics::histogram!(REQUEST_DURATION, "outcome" => outcome);
                let by_macro = rec.take();
                assert_eq!(by_macro.len(), 2);
                request_finished(outcome, || took);
                assert_eq!(rec.take(), by_macro);
            }
        });
    }

    /// Without a recorder the gauges' values are never computed; with one, each is computed
    /// once and set.
    #[test]
    fn gauge_values_are_computed_only_when_recorded() {
        use std::cell::Cell;
        let keys = ProviderKeys::new("lazy-gauges");
        let calls = Cell::new(0);
        let count = |v: f64| {
            calls.set(calls.get() + 1);
            v
        };
        provider_gauges(&keys, || count(1.0), || count(0.5), || count(2.0));
        router_spend(|| count(3.0));
        assert_eq!(calls.get(), 0, "no recorder: nothing computed");

        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            provider_gauges(&keys, || count(1.0), || count(0.5), || count(2.0));
            router_spend(|| count(3.0));
        });
        assert_eq!(calls.get(), 4, "a recorder: each value computed once");
        let text = handle.render();
        assert!(
            text.contains("image_router_headroom_ratio{provider=\"lazy-gauges\"} 0.5"),
            "{text}"
        );
        assert!(
            text.contains("image_router_spend_usd_total{ledger=\"router\"} 3"),
            "{text}"
        );
    }
}
