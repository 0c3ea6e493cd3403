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

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::error::{ConfigError, ErrorKind, ProviderError};
use crate::headers::{self, RateLimitHeaders};
use crate::providers::classify::{classify, classify_transport};

/// Connect-phase timeout of the shared client: a connect that takes this long is reported as
/// `Timeout { sent: false }` (the request never left).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The shared client (created on first use).
///
/// Its connection pool belongs to the tokio runtime that opened each connection: a program
/// that creates and drops several runtimes (as `#[tokio::test]` does, one per test) should
/// give each provider its own client with `.client(reqwest::Client::new())`.
///
/// ```
/// let client = image_router::providers::shared_client().unwrap();
/// # let _ = client;
/// ```
pub fn shared_client() -> Result<reqwest::Client, ConfigError> {
    static CLIENT: OnceLock<Result<reqwest::Client, ConfigError>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .use_rustls_tls()
                .connect_timeout(CONNECT_TIMEOUT)
                .user_agent(concat!("image-router/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| ConfigError::new("client", format!("cannot build HTTP client: {e}")))
        })
        .clone()
}

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
        format!("no complete answer within {timeout:?}"),
    )
}

/// Sends `request` and reads the whole body before `deadline`. Non-2xx statuses are
/// classified into a [`ProviderError`]; a 2xx is returned for decoding.
pub(crate) async fn execute(
    provider: &str,
    request: reqwest::RequestBuilder,
    deadline: Instant,
    timeout: Duration,
) -> Result<Received, ProviderError> {
    let start = Instant::now();
    let remaining = deadline.saturating_duration_since(start);
    if remaining.is_zero() {
        return Err(ProviderError::new(
            provider,
            ErrorKind::Timeout { sent: false },
            "no time left to send the request",
        ));
    }
    // reqwest's own timeout gives a classified error (connect vs. sent); the outer tokio
    // timeout is the hard bound in case anything else stalls.
    let request = request.timeout(remaining);
    let call = async {
        let response = request
            .send()
            .await
            .map_err(|e| classify_transport(provider, &e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| classify_transport(provider, &e).with_status(status))?;
        Ok::<_, ProviderError>((status, headers, body))
    };
    let (status, headers, body) = tokio::time::timeout_at(deadline, call)
        .await
        .map_err(|_| deadline_error(provider, timeout))??;
    let latency = start.elapsed();
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

/// Downloads an image URL (a `url` item, or a URL in a chat answer) before `deadline`.
/// Any failure other than the deadline is a [`ErrorKind::Decode`]: the provider said it
/// succeeded but did not deliver an image.
pub(crate) async fn download(
    provider: &str,
    client: &reqwest::Client,
    url: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<Bytes, ProviderError> {
    let decode = |msg: String| ProviderError::new(provider, ErrorKind::Decode, msg);
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(deadline_error(provider, timeout));
    }
    let fetch = async {
        let resp = client
            .get(url)
            .timeout(remaining)
            .send()
            .await
            .map_err(|e| download_error(provider, url, &e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(decode(format!(
                "image download from {url} failed with HTTP {}",
                status.as_u16()
            )));
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| download_error(provider, url, &e))?;
        if bytes.is_empty() {
            return Err(decode(format!("image download from {url} was empty")));
        }
        // An expired or wrong link often answers 200 with an HTML or JSON page: that is not
        // an image, whatever the status says.
        if let Some(ct) =
            content_type.filter(|ct| ct.starts_with("text/") || ct.starts_with("application/json"))
        {
            if !crate::providers::decode::looks_like_image(&bytes) {
                return Err(decode(format!(
                    "image download from {url} returned `{ct}`, not an image"
                )));
            }
        }
        Ok(bytes)
    };
    tokio::time::timeout_at(deadline, fetch)
        .await
        .map_err(|_| deadline_error(provider, timeout))?
}

fn download_error(provider: &str, url: &str, e: &reqwest::Error) -> ProviderError {
    let classified = classify_transport(provider, e);
    if classified.is_timeout() {
        return ProviderError::new(
            provider,
            ErrorKind::Timeout { sent: true },
            format!("image download from {url} timed out"),
        );
    }
    ProviderError::new(
        provider,
        ErrorKind::Decode,
        format!("image download from {url} failed: {}", classified.message),
    )
}
