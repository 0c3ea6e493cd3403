//! The library's HTTP client and its redirect policy: one lazily built, shared
//! `reqwest::Client` (rustls, connection pool) that follows redirects only within the same
//! origin, plus the URL helpers that policy and the error messages use. Apart from the send
//! path because it is configuration, built once.

use std::sync::OnceLock;
use std::time::Duration;

use crate::config_error::ConfigError;

/// Connect-phase timeout of the shared client: a connect that takes this long is reported as
/// `Timeout { sent: false }` (the request never left).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most same-origin redirects followed in one call.
pub(super) const MAX_REDIRECTS: usize = 5;

/// Whether two URLs share scheme, host (compared ignoring ASCII case, without allocating a
/// lower-cased copy of each: this runs on every answer; issue 16) and port.
pub(crate) fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    // The common case first: an answer from the URL that was asked, whose text up to the path
    // (`scheme://[user@]host[:port]`, the origin as written) is the same bytes; the part-wise
    // comparison below cost a few hundred instructions per answer (issue 16). Different text
    // can still be the same origin (user info, host case, an explicit default port).
    let before_path = ..url::Position::BeforePath;
    if a[before_path] == b[before_path] {
        return true;
    }
    let same_host = match (a.host_str(), b.host_str()) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
        (None, None) => true,
        _ => false,
    };
    a.scheme() == b.scheme() && same_host && a.port_or_known_default() == b.port_or_known_default()
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
