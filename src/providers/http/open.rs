//! Opening a streamed answer: the send path of [`super::execute`] up to the status line and
//! headers, leaving a 2xx body unread for the event-stream reader (`providers/streaming.rs`).
//! A non-2xx is read (cut at the error-body limit) and classified exactly as `execute` does,
//! so a streamed request fails over on the same errors as a plain one; redirects to another
//! origin are refused the same way.

use std::time::Duration;

use tokio::time::Instant;

use super::body::{read_prefix, ERROR_BODY_LIMIT};
use super::{check_origin, deadline_error};
use crate::error::{ErrorKind, ProviderError};
use crate::providers::classify::{classify, classify_transport};
use crate::quota::headers::{self, RateLimitHeaders};

/// A 2xx answer whose body is still to be read.
#[derive(Debug)]
pub(crate) struct Opened {
    pub response: reqwest::Response,
    pub status: u16,
    pub rate_limits: RateLimitHeaders,
    pub request_id: Option<String>,
    /// The `content-type` header, lower case (empty when absent).
    pub content_type: String,
}

/// Sends `request` and waits (until `deadline`) for the status and headers.
pub(crate) async fn open(
    provider: &str,
    request: reqwest::RequestBuilder,
    deadline: Instant,
    timeout: Duration,
) -> Result<Opened, ProviderError> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(ProviderError::new(
            provider,
            ErrorKind::Timeout { sent: false },
            "no time left to send the request",
        ));
    }
    let (client, request) = request.build_split();
    let request = request.map_err(|e| classify_transport(provider, &e))?;
    // No reqwest timeout here: it would bound the whole body, and a stream's body lasts as
    // long as the image takes. The router bounds the attempt and each gap between events.
    let origin = request.url().clone();
    let call = async {
        let mut response = client
            .execute(request)
            .await
            .map_err(|e| classify_transport(provider, &e))?;
        check_origin(provider, &origin, &response)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if (200..300).contains(&status) {
            return Ok::<_, ProviderError>((status, headers, Some(response), None));
        }
        let body = read_prefix(&mut response, ERROR_BODY_LIMIT)
            .await
            .map_err(|e| classify_transport(provider, &e).with_status(status))?;
        Ok((status, headers, None, Some(body)))
    };
    let (status, headers, response, body) = tokio::time::timeout_at(deadline, call)
        .await
        .map_err(|_| deadline_error(provider, timeout))??;
    match (response, body) {
        (Some(response), _) => Ok(Opened {
            response,
            status,
            rate_limits: RateLimitHeaders::from_headers(&headers),
            request_id: headers::request_id(&headers),
            content_type: headers
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase(),
        }),
        (None, body) => Err(classify(
            provider,
            status,
            &headers,
            body.as_deref().unwrap_or_default(),
        )),
    }
}
