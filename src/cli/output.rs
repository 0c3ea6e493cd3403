//! Shared output helpers: JSON printing, error objects, cost, attempt lines.

use image_router::catalog::Catalog;
use image_router::{quota::cost::CostEstimator, Attempt, Error, ImageRequest, Skip, Usage};

use super::redact;
use serde_json::{json, Value};

/// Prints one JSON value on one line of stdout.
pub fn print_json(v: &Value) {
    // Serializing a `serde_json::Value` cannot fail.
    println!(
        "{}",
        serde_json::to_string(v).unwrap_or_else(|_| "null".into())
    );
}

/// A stable kind for a router error: the cause's outcome, or what ended the request.
pub fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::Config(_) => "config",
        Error::Invalid(_) => "invalid_request",
        _ => match e.cause() {
            Some(c) => c.outcome().as_str(),
            None if e.is_deadline_exceeded() => "deadline_exceeded",
            None => "no_provider",
        },
    }
}

/// `{"kind", "message", "explanation": {"cause", "action"}}`, plus the most telling
/// provider error's `provider`, `status`, `code` and `reason` (which access denial, e.g.
/// `tier_access` or `insufficient_quota`) when there is one.
pub fn error_json(e: &Error) -> Value {
    let x = e.explain();
    let mut v = json!({
        "kind": error_kind(e),
        "message": redact::text(&e.to_string()),
        "explanation": {"cause": redact::text(&x.cause), "action": redact::text(&x.action)},
    });
    if let Some(c) = e.cause() {
        v["provider"] = json!(c.provider);
        v["status"] = json!(c.status);
        v["code"] = json!(c.code);
        if let image_router::ErrorKind::AccessDenied { reason } = &c.kind {
            v["reason"] = serde_json::to_value(reason).unwrap_or(Value::Null);
        }
    }
    v
}

/// Attempts as JSON: `provider`, `model`, `outcome`, `status`, `ms`, `retry`, `error`.
pub fn attempts_json(attempts: &[Attempt]) -> Value {
    serde_json::to_value(attempts).unwrap_or(Value::Null)
}

/// Skips as JSON.
pub fn skipped_json(skipped: &[Skip]) -> Value {
    serde_json::to_value(skipped).unwrap_or(Value::Null)
}

/// The cost in USD of a generation, by the library's [`CostEstimator`]: from `usage` when
/// the provider reported it, else estimated from the catalog's token table, for the `images`
/// that came back. `None` when the model has no price.
pub fn cost_usd(
    catalog: &Catalog,
    model: &str,
    usage: Option<&Usage>,
    req: &ImageRequest,
    images: usize,
) -> Option<f64> {
    let mut req = req.clone();
    req.set_model(model);
    // Charge what came back (a provider may answer with more images than asked for).
    let n = u8::try_from(images.max(1)).ok();
    match &mut req {
        ImageRequest::Generate(g) => g.n = n.or(g.n),
        ImageRequest::Edit(e) => e.n = n.or(e.n),
    }
    let spec = catalog.model(model);
    let est = image_router::quota::tokens::estimate(&req, spec, 0);
    CostEstimator::new()
        .actual(model, spec, &req, usage, &est)
        .ok()
        .map(|c| c.usd)
}

/// One line per attempt for people.
pub fn print_attempts(attempts: &[Attempt], skipped: &[Skip]) {
    for a in attempts {
        eprintln!("  attempt: {a}");
    }
    for s in skipped {
        eprintln!("  skipped: {s}");
    }
}
