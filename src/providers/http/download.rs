//! Image downloads: where a download may go ([`DownloadRules`]: public hosts, the provider's
//! own host, hosts the application listed), the resolver that drops non-public addresses,
//! the download client, and the bounded download itself. Apart because a download URL is the
//! provider's word and the rules that keep it from reaching private hosts are their own
//! concern.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::body::{read_limited, too_large, ReadError};
use super::client::{client_builder, host_of, same_origin, without_query};
use super::deadline_error;
use crate::providers::classify::classify_transport;

use crate::config_error::ConfigError;
use crate::error::{ErrorKind, ProviderError};

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
pub(super) struct PublicOnly {
    pub(super) rules: Arc<DownloadRules>,
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
        let mut resp = client
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
        let bytes = read_limited(&mut resp, limit).await.map_err(|e| match e {
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

pub(super) fn download_error(provider: &str, shown: &str, e: &reqwest::Error) -> ProviderError {
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
