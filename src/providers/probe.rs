//! Cheap checks behind [`Provider::probe`](crate::Provider::probe): a `GET` that exercises the
//! URL, the key and the account's view of the model without generating anything.
//!
//! Why `GET /models/{model}` with a fallback to `GET /models`: the first is one small answer
//! and the provider's own "model not found" when the account cannot see the model; some
//! OpenAI-compatible proxies only implement the list, so a 404 on the path (not on the model)
//! falls back to listing. Both answers go through the same classifier as generations, so
//! `doctor` explains a probe failure exactly like a generation failure.

use reqwest::header::HeaderMap;
use reqwest::RequestBuilder;
use serde_json::Value;
use tokio::time::Instant;

use super::http::{self, Received, PROBE_BODY_LIMIT};
use super::Common;
use crate::error::{ErrorKind, NotFoundKind, ProviderError};
use crate::provider::ProbeReport;

fn report(model: &str, checked: String, r: &Received, detail: Option<String>) -> ProbeReport {
    let mut p = ProbeReport::ok(model, r.status);
    p.checked = Some(checked);
    p.rate_limits = r.rate_limits;
    p.request_id = r.request_id.clone();
    p.detail = detail;
    p
}

/// Sends one probe request, built with the URL `origin`, before `deadline` (at most
/// [`PROBE_BODY_LIMIT`] bytes read).
pub(super) async fn get(
    common: &Common,
    rb: RequestBuilder,
    origin: Option<&url::Url>,
    deadline: Instant,
) -> Result<Received, ProviderError> {
    http::execute(&common.name, rb, origin, deadline, PROBE_BODY_LIMIT).await
}

/// `GET {base}/models/{wire}`, falling back to `GET {base}/models` when the path is unknown.
/// `url` makes the provider's URLs, `headers` are its auth headers (the same as a
/// generation's).
pub(super) async fn models(
    common: &Common,
    url: impl Fn(&[&str]) -> url::Url,
    wire: &str,
    ctx: &crate::provider::CallContext,
    headers: HeaderMap,
) -> Result<ProbeReport, ProviderError> {
    let (_, deadline) = common.deadline(ctx);
    let auth = |u: url::Url| common.client.get(u).headers(headers.clone());
    let first_url = url(&["models", wire]);
    let first = get(common, auth(first_url.clone()), Some(&first_url), deadline).await;
    let url_text = first_url;
    match first {
        Ok(r) => Ok(report(
            wire,
            format!("GET {url_text}"),
            &r,
            Some("model found".into()),
        )),
        Err(e)
            if e.kind
                == (ErrorKind::NotFound {
                    what: NotFoundKind::Endpoint,
                }) =>
        {
            let url = url(&["models"]);
            let r = get(common, auth(url.clone()), Some(&url), deadline).await?;
            let listed = serde_json::from_slice::<Value>(&r.body).ok().and_then(|v| {
                v.get("data")?.as_array().map(|a| {
                    a.iter()
                        .any(|m| m.get("id").and_then(Value::as_str) == Some(wire))
                })
            });
            match listed {
                Some(true) => Ok(report(
                    wire,
                    format!("GET {url}"),
                    &r,
                    Some("model listed".into()),
                )),
                Some(false) => Err(ProviderError::new(
                    &common.name,
                    ErrorKind::NotFound {
                        what: NotFoundKind::Model,
                    },
                    format!("the model `{wire}` is not in the provider's model list (GET {url})"),
                )
                .with_status(r.status)),
                None => Err(ProviderError::new(
                    &common.name,
                    ErrorKind::Decode,
                    format!("GET {url} did not answer with a model list"),
                )
                .with_status(r.status)),
            }
        }
        Err(e) => Err(e),
    }
}

/// A successful deployment lookup.
pub(super) fn deployment_report(model: &str, checked: String, r: &Received) -> ProbeReport {
    let detail = serde_json::from_slice::<Value>(&r.body).ok().and_then(|v| {
        let model = v.get("model").and_then(Value::as_str)?.to_string();
        let status = v.get("status").and_then(Value::as_str).unwrap_or("unknown");
        Some(format!("deployment serves {model} (status {status})"))
    });
    report(model, checked, r, detail)
}
