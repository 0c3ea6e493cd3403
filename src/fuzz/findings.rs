//! Every fuzz finding as a plain test with the smallest input found, so a regression fails
//! in an ordinary `cargo test` run whatever the number of fuzz cases.

use super::mock::{chat_proxy, mock_server, Next};
use super::*;

/// `Usage::add` (src/response.rs) adds with `+=`: two usages a provider reported near
/// `u64::MAX` overflow ("attempt to add with overflow" in debug builds, a wrapped total in
/// release). Expected: saturating totals.
#[test]
fn usage_add_overflow() {
    let parsed =
        serde_json::from_value::<Usage>(json!({"input_tokens": u64::MAX, "total_tokens": 1}));
    let mut a = parsed.unwrap_or_default();
    let b = a;
    a.add(&b);
    assert_eq!(a.input_tokens, u64::MAX);
}

/// Chat mode (src/providers/compatible.rs, `chat_usage`): with no `total_tokens`, the total
/// is `prompt_tokens + completion_tokens`, which overflows for a proxy reporting
/// `prompt_tokens = u64::MAX` ("attempt to add with overflow" in debug builds, so the
/// request's task panics). Expected: a saturated total or a `Decode` error.
#[test]
fn chat_usage_sum_overflow() {
    let (rt, server, next) = mock_server();
    let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\nrest");
    let body = json!({"choices": [{"message": {"role": "assistant",
        "content": format!("![image](data:image/png;base64,{png})")}}],
        "usage": {"prompt_tokens": u64::MAX, "completion_tokens": 1}});
    if let Ok(mut n) = next.lock() {
        *n = Next {
            status: 200,
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        };
    }
    let p = chat_proxy(&server.uri());
    let req = GenerateRequest::new("a lighthouse").model("gpt-image-1");
    let out = rt.block_on(p.generate(&req, &CallContext::new(Duration::from_secs(10))));
    assert!(out.is_ok());
}

/// A TOML syntax error in a value position (`x = `) gives a `ConfigError` whose message is
/// empty (src/config.rs `parse_error` passes on toml's message for this case, which is
/// empty), so the user sees the key and the line but not what is wrong. Expected: a message.
#[test]
fn config_error_message_empty() {
    let e = "x = ".parse::<RouterConfig>().err();
    assert!(
        e.as_ref().is_some_and(|e| !e.message.trim().is_empty()),
        "{e:?}"
    );
}

/// `headers::retry_after` (src/headers.rs) promises "only a delay above zero counts", but a
/// positive value below one nanosecond (`retry-after: 0.0000000001`, `retry-after-ms:
/// 0.0000001`) passes its `> 0.0` check and `Duration::from_secs_f64` rounds it down to
/// zero, so the caller gets `Some(0ns)` and may retry at once. Expected: `None`.
#[test]
fn retry_after_below_a_nanosecond() {
    for (name, value) in [
        ("retry-after", "0.0000000001"),
        ("retry-after-ms", "0.0000001"),
    ] {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        let d = headers::retry_after(&h, fixed_now());
        assert!(d.is_none_or(|d| !d.is_zero()), "{name}: {value} gave {d:?}");
    }
}

/// A table header with no name (`[`, `[]`) gives a `ConfigError` whose `field` is empty
/// (src/config.rs `key_at` returns the empty header name), so the error names no key.
/// Expected: a field such as `config`.
#[test]
fn config_error_field_empty() {
    for text in ["[", "[]", "[router]\n[ ]"] {
        let e = text.parse::<RouterConfig>().err();
        assert!(
            e.as_ref().is_some_and(|e| !e.field.is_empty()),
            "{text:?}: {e:?}"
        );
    }
}
