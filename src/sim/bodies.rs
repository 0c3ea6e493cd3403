//! Error bodies exactly as OpenAI and Azure OpenAI send them.
//!
//! Why verbatim: the router classifies errors from these bodies (codes, types and, for the
//! tier denial and Azure's "retry after N seconds", the message text). A simulator that
//! invented its own wording would test a classifier against nothing real. Sources:
//! `shared/api-facts.md` (OpenAI's spec, Azure docs and observed bodies).

use std::time::Duration;

use serde_json::{json, Value};

use super::window::LimitKind;
use crate::quota::headers::format_go_duration;

/// `{"error": {"message", "type", "param", "code"}}`.
pub(crate) fn openai(
    message: &str,
    kind: Option<&str>,
    param: Option<&str>,
    code: Option<&str>,
) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

/// `{"error": {"code", "message"}}`.
pub(crate) fn azure(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

/// Masks a key the way OpenAI does in its 401 message (`sk-zhj0s*****...*****CMuq`: the first
/// eight and last four characters), never showing the whole key: shorter keys show less, and
/// keys under 16 characters are all stars.
pub(crate) fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let len = chars.len();
    let (head, tail) = match len {
        0..=15 => return "*".repeat(len.max(4)),
        16..=23 => (4, 4),
        _ => (8, 4),
    };
    let shown_head: String = chars[..head].iter().collect();
    let shown_tail: String = chars[len - tail..].iter().collect();
    format!("{shown_head}{}{shown_tail}", "*".repeat(len - head - tail))
}

/// 401 for a wrong or missing key (OpenAI).
pub(crate) fn invalid_api_key(sent: Option<&str>) -> Value {
    match sent {
        Some(key) if !key.is_empty() => openai(
            &format!(
                "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                mask_key(key)
            ),
            Some("invalid_request_error"),
            None,
            Some("invalid_api_key"),
        ),
        _ => openai(
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
            Some("invalid_request_error"),
            None,
            None,
        ),
    }
}

/// 401 (Azure).
pub(crate) fn azure_unauthorized() -> Value {
    azure(
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
    )
}

/// 404 `model_not_found`.
pub(crate) fn model_not_found(model: &str) -> Value {
    openai(
        &format!("The model `{model}` does not exist or you do not have access to it."),
        Some("invalid_request_error"),
        None,
        Some("model_not_found"),
    )
}

/// 404 `DeploymentNotFound` (Azure).
pub(crate) fn deployment_not_found() -> Value {
    azure(
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.",
    )
}

/// 404 for an Azure deployments URL without `api-version` (Azure answers "Resource not found").
pub(crate) fn azure_resource_not_found() -> Value {
    azure("404", "Resource not found")
}

/// 404 for a path nothing serves.
pub(crate) fn unknown_url(method: &str, path: &str) -> Value {
    openai(
        &format!("Invalid URL ({method} {path})"),
        Some("invalid_request_error"),
        None,
        None,
    )
}

/// A 400 `invalid_request_error` naming `param`.
pub(crate) fn invalid_request(message: &str, param: Option<&str>, code: Option<&str>) -> Value {
    openai(message, Some("invalid_request_error"), param, code)
}

/// Azure's 400 for `output_format: webp` (Azure produces png and jpeg only).
pub(crate) fn azure_webp() -> Value {
    json!({"error": {
        "code": "invalid_value",
        "message": "Invalid value: 'webp'. Supported values are: 'png' and 'jpeg'.",
        "param": "output_format",
        "type": "invalid_request_error"
    }})
}

fn per_min(kind: LimitKind) -> &'static str {
    match kind {
        LimitKind::Requests => "requests per min (RPM)",
        LimitKind::Tokens => "tokens per min (TPM)",
        LimitKind::Images => "images per min (IPM)",
    }
}

/// 429 for a request with more images (`n`) than the IPM limit: it can never be admitted.
/// Worded like "Request too large" for tokens; the real text for this case was not found.
pub(crate) fn images_too_many(model: &str, org: &str, limit: u64, requested: u64) -> Value {
    openai(
        &format!(
            "Request too large for {model} in organization {org} on images per min (IPM): Limit {limit}, Requested {requested}. Ask for fewer images (`n`) per request. Visit https://platform.openai.com/account/rate-limits to learn more."
        ),
        Some(LimitKind::Images.as_str()),
        None,
        Some("rate_limit_exceeded"),
    )
}

/// 429 from the RPM / TPM window (OpenAI wording).
pub(crate) fn rate_limited(
    model: &str,
    org: &str,
    kind: LimitKind,
    limit: u64,
    used: u64,
    requested: u64,
    retry: Duration,
) -> Value {
    openai(
        &format!(
            "Rate limit reached for {model} in organization {org} on {}: Limit {limit}, Used {used}, Requested {requested}. Please try again in {}. Visit https://platform.openai.com/account/rate-limits to learn more.",
            per_min(kind),
            format_go_duration(retry)
        ),
        Some(kind.as_str()),
        None,
        Some("rate_limit_exceeded"),
    )
}

/// 429 for a request larger than the TPM limit (it can never be admitted).
pub(crate) fn request_too_large(model: &str, org: &str, limit: u64, requested: u64) -> Value {
    openai(
        &format!(
            "Request too large for {model} in organization {org} on tokens per min (TPM): Limit {limit}, Requested {requested}. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more."
        ),
        Some("tokens"),
        None,
        Some("rate_limit_exceeded"),
    )
}

/// 429 from a scripted fault with an optional delay (OpenAI wording). `limit` is the
/// account's limit of that kind when it has one (else a tier-1-like placeholder).
pub(crate) fn scripted_rate_limit(
    model: &str,
    org: &str,
    kind: Option<LimitKind>,
    retry: Option<Duration>,
    limit: Option<u64>,
) -> Value {
    match (kind, retry) {
        (Some(kind), Some(retry)) => {
            let (requested, placeholder) = match kind {
                LimitKind::Requests => (1, 5),
                LimitKind::Tokens => (4160, 250_000),
                LimitKind::Images => (1, 5),
            };
            let limit = limit.unwrap_or(placeholder);
            rate_limited(model, org, kind, limit, limit, requested, retry)
        }
        (Some(kind), None) => openai(
            &format!(
                "Rate limit reached for {model} in organization {org} on {}. Please slow down.",
                per_min(kind)
            ),
            Some(kind.as_str()),
            None,
            Some("rate_limit_exceeded"),
        ),
        (None, Some(retry)) => openai(
            &format!(
                "You've exceeded the rate limit, please slow down and try again after {:.2} seconds.",
                retry.as_secs_f64()
            ),
            None,
            None,
            Some("rate_limit_exceeded"),
        ),
        (None, None) => openai(
            "You've exceeded the rate limit, please slow down and try again later.",
            None,
            None,
            Some("rate_limit_exceeded"),
        ),
    }
}

/// The Azure operation name in 429 messages.
pub(crate) fn azure_operation(edit: bool) -> &'static str {
    if edit {
        "ImageEdits_Create"
    } else {
        "ImageGenerations_Create"
    }
}

/// 429 (Azure). With a delay the message says "Please retry after N seconds."; without, the
/// newer `RateLimitReached` body that names none.
pub(crate) fn azure_rate_limited(
    operation: &str,
    api_version: &str,
    kind: LimitKind,
    retry: Option<Duration>,
) -> Value {
    let what = match kind {
        LimitKind::Requests | LimitKind::Images => "call rate limit",
        LimitKind::Tokens => "token rate limit",
    };
    match retry {
        Some(d) => azure(
            "429",
            &format!(
                "Requests to the {operation} Operation under Azure OpenAI API version {api_version} have exceeded {what} of your current OpenAI S0 pricing tier. Please retry after {} seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.",
                ceil_secs(d)
            ),
        ),
        None => azure(
            "RateLimitReached",
            &format!(
                "Requests to the {operation} Operation under Azure OpenAI API version {api_version} have exceeded {what} of your current OpenAI S0 pricing tier. Please try again later."
            ),
        ),
    }
}

/// Whole seconds, rounded up (the `retry-after` header's unit).
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Whole milliseconds, rounded up (`retry-after-ms`).
pub(crate) fn ceil_millis(d: Duration) -> u128 {
    d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000))
}

/// 429 "try again after 0.0 seconds": the tier-access denial.
pub(crate) fn tier_denied() -> Value {
    openai(
        "You've exceeded the rate limit, please slow down and try again after 0.0 seconds.",
        Some("requests"),
        None,
        Some("rate_limit_exceeded"),
    )
}

/// 429 `insufficient_quota`.
pub(crate) fn insufficient_quota() -> Value {
    openai(
        "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        Some("insufficient_quota"),
        None,
        Some("insufficient_quota"),
    )
}

/// 400 `billing_hard_limit_reached`.
pub(crate) fn billing_hard_limit() -> Value {
    openai(
        "Billing hard limit has been reached",
        Some("invalid_request_error"),
        None,
        Some("billing_hard_limit_reached"),
    )
}

/// 403: organization verification needed (verbatim, `code: null`).
pub(crate) fn org_not_verified(model: &str) -> Value {
    openai(
        &format!("Your organization must be verified to use the model `{model}`. Please go to: https://platform.openai.com/settings/organization/general and click on Verify Organization. If you just verified, it can take up to 15 minutes for access to propagate."),
        Some("invalid_request_error"),
        None,
        None,
    )
}

/// 403: region not supported.
pub(crate) fn region_not_supported() -> Value {
    openai(
        "Country, region, or territory not supported",
        Some("request_forbidden"),
        None,
        Some("unsupported_country_region_territory"),
    )
}

/// A 5xx body (OpenAI).
pub(crate) fn server_error(status: u16) -> Value {
    let msg = match status {
        503 => "The engine is currently overloaded, please try again later.",
        502 => "Bad gateway.",
        504 => "The server had an error processing your request. Gateway timeout.",
        _ => "The server had an error while processing your request. Sorry about that!",
    };
    openai(msg, Some("server_error"), None, None)
}

/// 400 `moderation_blocked` (GPT image models) or `content_policy_violation` (dall-e).
pub(crate) fn content_policy(dalle: bool, request_id: &str) -> Value {
    if dalle {
        openai(
            "Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.",
            Some("invalid_request_error"),
            None,
            Some("content_policy_violation"),
        )
    } else {
        openai(
            &format!("Your request was rejected by the safety system. If you believe this is an error, contact us at help.openai.com and include the request ID {request_id}. safety_violations=[violence]."),
            Some("image_generation_user_error"),
            None,
            Some("moderation_blocked"),
        )
    }
}

/// 400 content filter (Azure).
pub(crate) fn azure_content_filter() -> Value {
    let ok = json!({"filtered": false, "severity": "safe"});
    json!({"error": {
        "code": "content_policy_violation",
        "message": "Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.",
        "param": "prompt",
        "type": "invalid_request_error",
        "inner_error": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_results": {
                "hate": ok,
                "self_harm": ok,
                "sexual": ok,
                "violence": {"filtered": true, "severity": "medium"},
                "jailbreak": {"filtered": false, "detected": false}
            }
        }
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keys() {
        // Built at run time: no key-shaped literal in the source.
        let m = mask_key(&format!("sk-{}", "sim-openai-secret-1234"));
        assert_eq!(m, "sk-sim-o*************1234");
        assert_eq!(mask_key("0123456789abcdefXY"), "0123**********efXY");
        assert_eq!(mask_key("short"), "*****");
        assert_eq!(mask_key("fifteen-chars-x"), "*".repeat(15));
    }

    #[test]
    fn ceil_units() {
        assert_eq!(ceil_secs(Duration::from_millis(11_001)), 12);
        assert_eq!(ceil_secs(Duration::from_secs(12)), 12);
        assert_eq!(ceil_millis(Duration::from_micros(1_500)), 2);
        assert_eq!(ceil_millis(Duration::from_millis(7)), 7);
    }
}
