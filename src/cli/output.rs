//! Shared output helpers: JSON printing, error objects, cost, attempt lines.

use image_router::catalog::{Catalog, Price};
use image_router::{Attempt, Error, GenerateRequest, Skip, Usage};
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
    let mut v = json!({
        "kind": error_kind(e),
        "message": e.to_string(),
        "explanation": e.explain(),
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

/// The cost in USD of a generation: from `usage` when the provider reported it, else
/// estimated from the catalog's token table. `None` when the model has no price.
pub fn cost_usd(
    catalog: &Catalog,
    model: &str,
    usage: Option<&Usage>,
    req: &GenerateRequest,
    images: usize,
) -> Option<f64> {
    let spec = catalog.model(model)?;
    match spec.price.as_ref()? {
        Price::UsdPer1mTokens {
            text_input,
            image_input,
            image_output,
            ..
        } => {
            let (text, image_in, out) = match usage {
                Some(u) => {
                    let d = &u.input_tokens_details;
                    let text = if d.text_tokens + d.image_tokens == 0 {
                        u.input_tokens
                    } else {
                        d.text_tokens
                    };
                    (text, d.image_tokens, u.output_tokens)
                }
                None => (
                    image_router::tokens::text_tokens(&req.prompt),
                    0,
                    u64::from(spec.output_image_tokens(req.quality, req.size)) * images as u64,
                ),
            };
            Some(
                (text as f64 * text_input
                    + image_in as f64 * image_input
                    + out as f64 * image_output)
                    / 1_000_000.0,
            )
        }
        Price::UsdPerImage { table } => {
            let q = spec.resolve_quality(req.quality);
            let s = spec.resolve_size(req.size);
            table
                .get(&q)
                .and_then(|t| t.get(&s))
                .map(|p| p * images as f64)
        }
        #[allow(unreachable_patterns)]
        _ => None,
    }
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
