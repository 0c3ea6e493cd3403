//! The shared HTTP client and the one send path every built-in provider uses.
//!
//! One `reqwest::Client` (rustls, HTTP/2, connection pool) is created lazily and shared by
//! all providers that are not given their own: pooling connections across providers that
//! talk to the same host is what keeps latency low under load. Building it can fail (for
//! example, no TLS roots); that is reported as a [`ConfigError`] by the provider builders,
//! never as a panic.
//!
//! [`execute`] bounds the *whole* call (connect, send, read the body, download any URL
//! images) by one deadline, so `CallContext::timeout` means what it says.
//!
//! # One deadline
//!
//! [`finish`] runs everything the call awaits (the connection, the send, the wait for the
//! head and every read of the body) under one `tokio::time::timeout_at` on the deadline, and
//! reqwest is given no timeout of its own. When the timer fires, the error is
//! `Timeout { sent: true }`, "timed out: no complete answer within …", with the status when
//! the head had arrived (the body's reader records it as soon as it is known); a connect
//! timeout of the client fires inside the call and stays `Timeout { sent: false }`, and an
//! application client's own `timeout`, when shorter, ends the call as reqwest's timeout
//! (`Timeout { sent: true }`).
//!
//! Why tokio's timer and not reqwest's per-request timeout, which bounds the same awaits
//! (reqwest polls it before each step and moves it into the body): measured per request, on
//! the loopback call of the overhead benchmark (callgrind), reqwest's timeout costs 2.2k
//! instructions (an entry in the request's extension map, a boxed `Sleep`, a wrapper on the
//! body, polled at each read) and a `timeout_at` around the whole call 0.7k (issue 16).
//! The two used to run together, on the same deadline, until issue 16's third pass kept
//! reqwest's alone. Both fired in the same millisecond, and whichever answered decided the
//! message and whether the status was known; now there is one timer and one message.
//! `tests/it/hostile/stalls.rs` holds an answer without a head, and bodies that stop
//! part-way (success, error and probe), past the deadline.
//!
//! # What an answer may not do
//!
//! * **Redirect elsewhere.** reqwest's default policy follows up to ten redirects to any host
//!   and strips only `Authorization` and cookies: Azure's `api-key` header, and on a 307/308
//!   the prompt, would travel to the other host. The library's clients follow a redirect only
//!   within the same origin (scheme, host, port; [`redirect_policy`]). An application may pass
//!   its own client, whose policy is its own, so the send path also refuses any 3xx it is
//!   handed and any answer whose final URL is of another origin (the request has then already
//!   reached the other host, which only the application's policy can prevent).
//! * **Be endless.** Bodies are read as streams against a limit (`Content-Length` first when
//!   present): success bodies against the limit the request implies, error bodies against
//!   [`ERROR_BODY_LIMIT`] (cut, not failed: the status still classifies), probe answers
//!   against [`PROBE_BODY_LIMIT`], downloads against the per-image limit.
//! * **Point downloads anywhere.** See [`download`].

use std::future::Future;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::error::{ErrorKind, NotFoundKind, ProviderError};
use crate::providers::classify::{classify, classify_transport};
use crate::quota::headers::{self, RateLimitHeaders};

mod body;
mod client;
mod download;
mod open;

pub(crate) use body::PROBE_BODY_LIMIT;
use body::{read_limited, read_prefix, too_large, ReadError, ERROR_BODY_LIMIT};
pub use client::{client_builder, redirect_policy, shared_client};
use client::{host_of, same_origin};
pub(crate) use download::{download, download_client, DownloadRules};
pub(crate) use open::{open, Opened};

/// A received response: status, headers, body and the time it took.
#[derive(Debug)]
pub(crate) struct Received {
    pub status: u16,
    pub body: Bytes,
    pub latency: Duration,
    pub rate_limits: RateLimitHeaders,
    pub request_id: Option<String>,
}

/// The error for a call whose deadline passed after the request may have been sent.
pub(crate) fn deadline_error(provider: &str, timeout: Duration) -> ProviderError {
    ProviderError::new(
        provider,
        ErrorKind::Timeout { sent: true },
        format!("timed out: no complete answer within {timeout:?}"),
    )
}

/// The error for an answer that redirects to (or came from) another origin.
fn redirect_error(provider: &str, status: u16, target: Option<&url::Url>) -> ProviderError {
    let message = match target {
        Some(t) => format!(
            "answered HTTP {status} redirecting to another host ({}); API calls do not follow \
             redirects to another origin: check the provider's base URL",
            host_of(t)
        ),
        None => format!("answered HTTP {status}, a redirect without a usable location"),
    };
    ProviderError::new(
        provider,
        ErrorKind::NotFound {
            what: NotFoundKind::Endpoint,
        },
        message,
    )
    .with_status(status)
}

/// Refuses a 3xx answer (the client's policy stopped at it: another origin), and an answer
/// whose final URL is of another origin than the request (an application's client followed
/// a redirect the library's policy would not have).
fn check_origin(
    provider: &str,
    origin: &url::Url,
    response: &reqwest::Response,
) -> Result<(), ProviderError> {
    let status = response.status();
    if status.is_redirection() {
        let target = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|loc| response.url().join(loc).ok());
        return Err(redirect_error(provider, status.as_u16(), target.as_ref()));
    }
    if !same_origin(origin, response.url()) {
        return Err(redirect_error(
            provider,
            status.as_u16(),
            Some(response.url()),
        ));
    }
    Ok(())
}

/// Sends `request` and reads the body (at most `limit` bytes for a 2xx) before `deadline`,
/// bounded by one timer (see "One deadline" in the module doc).
/// Non-2xx statuses are classified into a [`ProviderError`]; a 2xx is returned for decoding.
///
/// `origin` is the URL `request` was built with, when the caller keeps it (a provider's
/// endpoint URL, joined once at `build()`): the answer's final URL must be of its origin.
/// With `None` the request's URL is copied before sending, to compare with afterwards (a copy
/// is an allocation per call; issue 16).
pub(crate) async fn execute(
    provider: &str,
    request: reqwest::RequestBuilder,
    origin: Option<&url::Url>,
    deadline: Instant,
    limit: u64,
) -> Result<Received, ProviderError> {
    let sent = send(provider, request, origin, deadline)?;
    finish(provider, sent, limit).await
}

/// A request handed to reqwest ([`send`]) and not answered yet ([`finish`]).
///
/// [`execute`] in two steps, for a caller whose future should hold the pending call rather
/// than the request builder (272 bytes, which each async layer taking it as an argument held
/// in its own state; issue 16).
pub(crate) struct Sent<'a, F> {
    answer: F,
    origin: Origin<'a>,
    start: Instant,
    deadline: Instant,
}

/// The URL an answer must come from: the caller's, or a copy of the request's.
enum Origin<'a> {
    Kept(&'a url::Url),
    Copied(Box<url::Url>),
}

impl Origin<'_> {
    fn url(&self) -> &url::Url {
        match self {
            Origin::Kept(u) => u,
            Origin::Copied(u) => u,
        }
    }
}

/// The first step of [`execute`]: builds `request` and hands it to reqwest, now (when time is
/// left until `deadline`; [`finish`] bounds the rest by it).
pub(crate) fn send<'a>(
    provider: &str,
    request: reqwest::RequestBuilder,
    origin: Option<&'a url::Url>,
    deadline: Instant,
) -> Result<
    Sent<'a, impl Future<Output = Result<reqwest::Response, reqwest::Error>> + Send>,
    ProviderError,
> {
    let start = Instant::now();
    let remaining = deadline.saturating_duration_since(start);
    if remaining.is_zero() {
        return Err(ProviderError::new(
            provider,
            ErrorKind::Timeout { sent: false },
            "no time left to send the request",
        ));
    }
    let (client, request) = request.build_split();
    let request = request.map_err(|e| classify_transport(provider, &e))?;
    let origin = match origin {
        Some(origin) => Origin::Kept(origin),
        None => Origin::Copied(Box::new(request.url().clone())),
    };
    Ok(Sent {
        answer: client.execute(request),
        origin,
        start,
        deadline,
    })
}

/// The second step of [`execute`]: waits for the answer, checks its origin, reads its body
/// (at most `limit` bytes for a 2xx) and classifies its status, all before the deadline (see
/// "One deadline" in the module doc).
///
/// Written as a function returning an `async move` block, as is [`receive`]: an `async fn`
/// keeps each argument twice in its future's state (rust-lang/rust#62958), and this future is
/// in every provider call's (issue 16).
#[allow(clippy::manual_async_fn)] // On purpose: see above.
pub(crate) fn finish<'a, F>(
    provider: &'a str,
    sent: Sent<'a, F>,
    limit: u64,
) -> impl Future<Output = Result<Received, ProviderError>> + Send + 'a
where
    F: Future<Output = Result<reqwest::Response, reqwest::Error>> + Send + 'a,
{
    async move {
        let deadline = sent.deadline;
        // The time the call had when it was sent, for the timeout's message.
        let within = deadline.saturating_duration_since(sent.start);
        // The answer's status once its head is in (0 before): a timeout in the body says it.
        let head = AtomicU16::new(0);
        match tokio::time::timeout_at(deadline, receive(provider, sent, limit, &head)).await {
            Ok(received) => received,
            Err(_) => {
                let error = deadline_error(provider, within);
                Err(match head.load(Ordering::Relaxed) {
                    0 => error,
                    status => error.with_status(status),
                })
            }
        }
    }
}

/// What [`finish`] bounds: the wait for the answer and everything after it. `head` is given
/// the status as soon as it is known. Not an `async fn`, as [`finish`] is not.
#[allow(clippy::manual_async_fn)] // On purpose: an `async fn` keeps its arguments twice.
fn receive<'a, F>(
    provider: &'a str,
    sent: Sent<'a, F>,
    limit: u64,
    head: &'a AtomicU16,
) -> impl Future<Output = Result<Received, ProviderError>> + Send + 'a
where
    F: Future<Output = Result<reqwest::Response, reqwest::Error>> + Send + 'a,
{
    async move {
        // Not taken apart: each part would be kept twice in this future's state.
        let mut response = sent
            .answer
            .await
            .map_err(|e| classify_transport(provider, &e))?;
        let status = response.status().as_u16();
        head.store(status, Ordering::Relaxed);
        check_origin(provider, sent.origin.url(), &response)?;
        // Taken, not copied: nothing reads the response's headers after this (the body's
        // length comes from the body itself).
        let headers = std::mem::take(response.headers_mut());
        let body = if (200..300).contains(&status) {
            read_limited(&mut response, limit)
                .await
                .map_err(|e| match e {
                    ReadError::TooLarge => {
                        too_large(provider, "the response body", limit).with_status(status)
                    }
                    ReadError::Transport(e) => classify_transport(provider, &e).with_status(status),
                })?
        } else {
            read_prefix(&mut response, ERROR_BODY_LIMIT)
                .await
                .map_err(|e| classify_transport(provider, &e).with_status(status))?
        };
        let latency = sent.start.elapsed();
        let rate_limits = RateLimitHeaders::from_headers(&headers);
        let request_id = headers::request_id(&headers);
        if !(200..300).contains(&status) {
            return Err(classify(provider, status, &headers, &body));
        }
        Ok(Received {
            status,
            body,
            latency,
            rate_limits,
            request_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::client::without_query;
    use super::download::{is_public, PublicOnly};
    use super::*;
    use std::net::SocketAddr;
    use std::sync::Arc;

    #[test]
    fn shown_urls_carry_no_credentials() {
        let u: url::Url = "https://user:hunter2@cdn.example/a/b.png?sig=abc#x"
            .parse()
            .unwrap();
        let shown = without_query(&u);
        assert_eq!(shown, "https://cdn.example/a/b.png");
        assert!(!shown.contains("hunter2") && !shown.contains("user"));
    }

    #[test]
    fn public_addresses() {
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn download_rules() {
        let mut rules = DownloadRules::default();
        let url = |s: &str| url::Url::parse(s).unwrap();
        assert!(rules.check(&url("https://cdn.example/x.png")).is_ok());
        assert!(rules.check(&url("http://169.254.169.254/x")).is_err());
        assert!(rules.check(&url("http://localhost:8080/x")).is_err());
        assert!(rules.check(&url("http://a.localhost/x")).is_err());
        assert!(rules.check(&url("http://[::1]/x")).is_err());
        assert!(rules.check(&url("file:///etc/passwd")).is_err());
        rules.allowed.insert("127.0.0.1".into());
        rules.allowed.insert("::1".into());
        assert!(rules.check(&url("http://127.0.0.1:9/x")).is_ok());
        assert!(rules.check(&url("http://[::1]:9/x")).is_ok());
    }

    #[tokio::test]
    async fn the_download_resolver_drops_non_public_addresses() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        // `localhost` resolves from the hosts file (no network) to loopback only.
        let resolver = PublicOnly {
            rules: Arc::new(DownloadRules::default()),
        };
        let name = reqwest::dns::Name::from_str("localhost").unwrap();
        let err = resolver.resolve(name).await.err().expect("refused");
        assert!(err.to_string().contains("no public address"), "{err}");
        let mut rules = DownloadRules::default();
        rules.allowed.insert("localhost".into());
        let resolver = PublicOnly {
            rules: Arc::new(rules),
        };
        let name = reqwest::dns::Name::from_str("localhost").unwrap();
        let addrs: Vec<SocketAddr> = resolver.resolve(name).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }

    #[test]
    fn origins() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(same_origin(
            &u("https://a.test/x"),
            &u("https://A.test:443/y")
        ));
        assert!(!same_origin(&u("https://a.test/x"), &u("http://a.test/x")));
        assert!(!same_origin(
            &u("http://a.test:1/x"),
            &u("http://a.test:2/x")
        ));
        // The same text up to the path (the fast path), and the same origin written otherwise.
        assert!(same_origin(
            &u("http://127.0.0.1:8/v1/images/generations"),
            &u("http://127.0.0.1:8/v1/other?q=1")
        ));
        assert!(same_origin(
            &u("https://user:pw@a.test/x"),
            &u("https://a.test/y")
        ));
        assert!(same_origin(&u("foo://A.test/x"), &u("foo://a.test/y")));
        assert!(same_origin(&u("mailto:a@a.test"), &u("mailto:b@b.test")));
        // Text that starts alike is not the same origin.
        assert!(!same_origin(
            &u("http://a.test:1/x"),
            &u("http://a.test:10/x")
        ));
        assert!(!same_origin(
            &u("http://a.test/x"),
            &u("http://a.test.evil/x")
        ));
        assert!(!same_origin(&u("http://a.test/x"), &u("https://a.test/x")));
        assert_eq!(host_of(&u("http://a.test:8/p?q=secret")), "a.test:8");
        assert_eq!(
            without_query(&u("http://a.test/p?q=secret#f")),
            "http://a.test/p"
        );
    }
}
