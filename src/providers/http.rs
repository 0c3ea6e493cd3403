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

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use crate::config_error::ConfigError;
use crate::error::{ErrorKind, NotFoundKind, ProviderError};
use crate::providers::classify::{classify, classify_transport};
use crate::quota::headers::{self, RateLimitHeaders};

/// Connect-phase timeout of the shared client: a connect that takes this long is reported as
/// `Timeout { sent: false }` (the request never left).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of an error answer that are read: enough for any real error JSON; the rest of a
/// longer body is dropped unread (the connection is closed).
pub(crate) const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// Most bytes of a probe answer (a model or deployment description, or a model list).
pub(crate) const PROBE_BODY_LIMIT: u64 = 4 * 1024 * 1024;

/// Most same-origin redirects followed in one call.
const MAX_REDIRECTS: usize = 5;

/// Whether two URLs share scheme, host and port.
pub(crate) fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

/// `host[:port]` of a URL: what an error names (never the path or query, which may carry a
/// signature or token).
pub(crate) fn host_of(u: &url::Url) -> String {
    match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => u.scheme().to_string(),
    }
}

/// `scheme://host[:port]/path` of a URL, without user info, query or fragment.
pub(crate) fn without_query(u: &url::Url) -> String {
    let mut u = u.clone();
    u.set_query(None);
    u.set_fragment(None);
    // A user name or password in a download or redirect URL is a credential: never shown.
    // (Both setters fail only for URLs that cannot carry user info, which then have none.)
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// The redirect policy of the library's clients: follow at most five redirects, and only
/// within the origin of the first request. A redirect to another origin is not followed; the
/// 3xx answer is handed back and the send path turns it into an error naming the target host.
///
/// ```
/// let client = reqwest::Client::builder()
///     .redirect(image_router::providers::redirect_policy())
///     .build()
///     .unwrap();
/// # let _ = client;
/// ```
pub fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error("too many redirects");
        }
        let same = attempt
            .previous()
            .first()
            .is_some_and(|first| same_origin(first, attempt.url()));
        if same {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// The builder the shared client is made from (rustls, connect timeout, user agent,
/// [`redirect_policy`]): start from it to give a provider its own client with the same
/// protections.
///
/// ```
/// let client = image_router::providers::client_builder().build().unwrap();
/// # let _ = client;
/// ```
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("image-router/", env!("CARGO_PKG_VERSION")))
        .redirect(redirect_policy())
}

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
            client_builder()
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

/// Why reading a body stopped early.
enum ReadError {
    /// The body is longer than the limit (by its `Content-Length`, or as it streamed).
    TooLarge,
    /// The connection failed mid-body.
    Transport(reqwest::Error),
}

/// Reads `response`'s body, failing as soon as it would exceed `limit` bytes.
async fn read_limited(mut response: reqwest::Response, limit: u64) -> Result<Bytes, ReadError> {
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(ReadError::TooLarge);
    }
    // Pre-size from a believable length only: the header is the provider's word.
    let hint = response
        .content_length()
        .unwrap_or(0)
        .min(limit)
        .min(1 << 20);
    let mut buf = BytesMut::with_capacity(usize::try_from(hint).unwrap_or(0));
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if (buf.len() as u64).saturating_add(chunk.len() as u64) > limit {
            return Err(ReadError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Reads at most `limit` bytes of `response`'s body and drops the rest unread.
async fn read_prefix(mut response: reqwest::Response, limit: u64) -> Result<Bytes, reqwest::Error> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        let room = usize::try_from(limit.saturating_sub(buf.len() as u64)).unwrap_or(usize::MAX);
        if chunk.len() >= room {
            buf.extend_from_slice(&chunk[..room]);
            break;
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The error for a body over its limit.
pub(crate) fn too_large(provider: &str, what: &str, limit: u64) -> ProviderError {
    ProviderError::new(
        provider,
        ErrorKind::Decode,
        format!(
            "{what} exceeds the limit of {limit} bytes (derived from the request's size and `n`; \
             raise it with `max_response_bytes`)"
        ),
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

/// Sends `request` and reads the body (at most `limit` bytes for a 2xx) before `deadline`.
/// Non-2xx statuses are classified into a [`ProviderError`]; a 2xx is returned for decoding.
pub(crate) async fn execute(
    provider: &str,
    request: reqwest::RequestBuilder,
    deadline: Instant,
    timeout: Duration,
    limit: u64,
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
    let (client, request) = request.build_split();
    let mut request = request.map_err(|e| classify_transport(provider, &e))?;
    // reqwest's own timeout gives a classified error (connect vs. sent); the outer tokio
    // timeout is the hard bound in case anything else stalls.
    *request.timeout_mut() = Some(remaining);
    let origin = request.url().clone();
    let call = async {
        let response = client
            .execute(request)
            .await
            .map_err(|e| classify_transport(provider, &e))?;
        let status = response.status().as_u16();
        check_origin(provider, &origin, &response)?;
        let headers = response.headers().clone();
        let body = if (200..300).contains(&status) {
            read_limited(response, limit).await.map_err(|e| match e {
                ReadError::TooLarge => {
                    too_large(provider, "the response body", limit).with_status(status)
                }
                ReadError::Transport(e) => classify_transport(provider, &e).with_status(status),
            })?
        } else {
            read_prefix(response, ERROR_BODY_LIMIT)
                .await
                .map_err(|e| classify_transport(provider, &e).with_status(status))?
        };
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

/// Where image downloads may go, for one provider.
///
/// A download URL is the provider's word, and the library fetches it from inside the
/// application's network: without a rule, an answer could make it fetch the cloud metadata
/// service (`169.254.169.254`), a loopback admin port or any private host. Allowed are http(s)
/// URLs whose host is public, the provider's own host (the simulator serves its images from
/// its own `127.0.0.1` address), or a host the application listed
/// (`allow_download_hosts`).
///
/// What is checked: IP literals (v4, v6, v4-mapped v6) against the loopback, private,
/// link-local, shared, unspecified, multicast, broadcast and documentation ranges; the name
/// `localhost` and `*.localhost`; and, when the library's own download client is used (no
/// `.client(...)` given), every address a name resolves to, by a DNS resolver that drops
/// non-public addresses (so a public name pointing at a private address is refused too). With
/// an application's client, names are not resolved here: that client's own resolver and
/// network policy decide.
#[derive(Clone, Debug, Default)]
pub(crate) struct DownloadRules {
    /// Hosts allowed whatever their address (lower case): the provider's own and the listed.
    pub allowed: BTreeSet<String>,
}

impl DownloadRules {
    /// Whether `host` is allowed by name.
    fn allows(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.allowed.contains(&host.to_ascii_lowercase())
    }

    /// Checks `url` before any connection: `Err` with the reason when it may not be fetched.
    pub(crate) fn check(&self, url: &url::Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("the scheme `{}` is not allowed", url.scheme()));
        }
        let Some(host) = url.host() else {
            return Err("a URL without a host is not allowed".into());
        };
        if self.allows(&host.to_string()) {
            return Ok(());
        }
        match host {
            url::Host::Ipv4(ip) if !is_public(IpAddr::V4(ip)) => Err(format!(
                "the address {ip} is private, loopback or link-local: not allowed"
            )),
            url::Host::Ipv6(ip) if !is_public(IpAddr::V6(ip)) => Err(format!(
                "the address {ip} is private, loopback or link-local: not allowed"
            )),
            url::Host::Domain(d) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if d == "localhost" || d.ends_with(".localhost") {
                    Err(format!("the host {d} is loopback: not allowed"))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// Whether `ip` is a public unicast address.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // shared address space (CGNAT)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
                || (o[0] == 198 && (18..20).contains(&o[1])) // benchmarking
                || o[0] >= 240) // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x64 && s[1] == 0xff9b)) // NAT64 (may reach private v4)
        }
    }
}

/// A DNS resolver that drops non-public addresses unless the name is allowed: the library's
/// download client uses it, so a public name that resolves to a private address is refused.
struct PublicOnly {
    rules: Arc<DownloadRules>,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let allowed = self.rules.allows(&host);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allowed || is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!(
                    "{host} resolves to no public address: downloads from it are not allowed"
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The library's download client for one provider: [`redirect_policy`] and the
/// [`PublicOnly`] resolver.
pub(crate) fn download_client(rules: Arc<DownloadRules>) -> Result<reqwest::Client, ConfigError> {
    client_builder()
        .dns_resolver(Arc::new(PublicOnly { rules }))
        .build()
        .map_err(|e| ConfigError::new("client", format!("cannot build HTTP client: {e}")))
}

/// Downloads an image URL (a `url` item, or a URL in a chat answer) before `deadline`, at
/// most `limit` bytes, only where `rules` allow. Any failure other than the deadline is a
/// [`ErrorKind::Decode`]: the provider said it succeeded but did not deliver an image.
pub(crate) async fn download(
    provider: &str,
    client: &reqwest::Client,
    rules: &DownloadRules,
    raw_url: &str,
    limit: u64,
    deadline: Instant,
    timeout: Duration,
) -> Result<Bytes, ProviderError> {
    let decode = |msg: String| ProviderError::new(provider, ErrorKind::Decode, msg);
    let url = url::Url::parse(raw_url.trim()).map_err(|e| {
        decode(format!(
            "image download not allowed: the URL is not valid ({e})"
        ))
    })?;
    let shown = without_query(&url);
    rules
        .check(&url)
        .map_err(|why| decode(format!("image download from {shown} not allowed: {why}")))?;
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(deadline_error(provider, timeout));
    }
    let fetch = async {
        let resp = client
            .get(url.clone())
            .timeout(remaining)
            .send()
            .await
            .map_err(|e| download_error(provider, &shown, &e))?;
        let status = resp.status();
        if status.is_redirection() || !same_origin(&url, resp.url()) {
            let to = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|loc| resp.url().join(loc).ok())
                .unwrap_or_else(|| resp.url().clone());
            return Err(decode(format!(
                "image download from {shown} redirected to another host ({}), which is not \
                 followed",
                host_of(&to)
            )));
        }
        if !status.is_success() {
            return Err(decode(format!(
                "image download from {shown} failed with HTTP {}",
                status.as_u16()
            )));
        }
        let bytes = read_limited(resp, limit).await.map_err(|e| match e {
            ReadError::TooLarge => {
                too_large(provider, &format!("image download from {shown}"), limit)
            }
            ReadError::Transport(e) => download_error(provider, &shown, &e),
        })?;
        if bytes.is_empty() {
            return Err(decode(format!("image download from {shown} was empty")));
        }
        Ok(bytes)
    };
    tokio::time::timeout_at(deadline, fetch)
        .await
        .map_err(|_| deadline_error(provider, timeout))?
}

fn download_error(provider: &str, shown: &str, e: &reqwest::Error) -> ProviderError {
    let classified = classify_transport(provider, e);
    if classified.is_timeout() {
        return ProviderError::new(
            provider,
            ErrorKind::Timeout { sent: true },
            format!("image download from {shown} timed out"),
        );
    }
    ProviderError::new(
        provider,
        ErrorKind::Decode,
        format!("image download from {shown} failed: {}", classified.message),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(host_of(&u("http://a.test:8/p?q=secret")), "a.test:8");
        assert_eq!(
            without_query(&u("http://a.test/p?q=secret#f")),
            "http://a.test/p"
        );
    }
}
