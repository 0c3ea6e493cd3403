//! Credential redaction for everything the crate prints: status text and JSON, doctor reports,
//! configuration errors and the command line.
//!
//! Why one home: credentials reach output by two roads. A URL may carry them in its user-info
//! (`https://user:pass@proxy`) or in a query parameter (`?api-key=…`), and a key may be pasted
//! into a field that is echoed back (`sk-…` in `api_key_env`). Each printer calling the same
//! helpers means a new printer cannot forget one road.
//!
//! Why hand-written rather than a crate: the `url` crate (already a dependency) parses a whole
//! URL, and [`url`] uses it; but free text (an error message with a URL inside) needs the URL
//! found first, and the crates that scrub secrets from text match vendor key patterns, not
//! URL user-info. The scanner in [`text`] is a few lines over `url::Url`.

/// What a redacted credential is replaced with.
pub(crate) const MASK: &str = "***";

/// Query parameters whose values are credentials (compared case-insensitively, `-`/`_` alike).
const SECRET_PARAMS: &[&str] = &[
    "api_key",
    "apikey",
    "key",
    "token",
    "access_token",
    "secret",
    "password",
    "sig",
    "signature",
    "code",
];

/// `s` with any user name, password and credential-bearing query values replaced by `***`.
/// Text that does not parse as a URL is returned unchanged except that a user-info part
/// before `@` is still masked (a malformed URL can still hold a password).
pub(crate) fn url(s: &str) -> String {
    let Ok(mut u) = url::Url::parse(s) else {
        return mask_userinfo_raw(s);
    };
    if !u.username().is_empty() || u.password().is_some() {
        // Setting the user name fails only for URLs that cannot have one (`mailto:`), which
        // then have none to hide.
        let _ = u.set_username(MASK);
        let _ = u.set_password(None);
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let secret = SECRET_PARAMS
                    .iter()
                    .any(|p| k.to_ascii_lowercase().replace('-', "_") == *p);
                (
                    k.into_owned(),
                    if secret { MASK.into() } else { v.into_owned() },
                )
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    let out = u.to_string();
    // `Url` adds a trailing `/` to a bare host; keep the caller's spelling otherwise.
    if !s.ends_with('/') && out.ends_with('/') && u.path() == "/" && u.query().is_none() {
        out[..out.len() - 1].to_string()
    } else {
        out
    }
}

/// Masks `user[:pass]@` after `://` in a string that is not a parseable URL.
fn mask_userinfo_raw(s: &str) -> String {
    let Some(start) = s.find("://").map(|i| i + 3) else {
        return s.to_string();
    };
    let rest = &s[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{}{MASK}{}", &s[..start], &rest[at..]),
        None => s.to_string(),
    }
}

/// Free text with every `http://` / `https://` URL in it passed through [`url`] and every
/// `sk-…` key masked (see [`keys`]).
pub(crate) fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = find_scheme(rest) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | ')'))
            .unwrap_or(tail.len());
        out.push_str(&url(&tail[..end]));
        rest = &tail[end..];
    }
    out.push_str(rest);
    keys(&out)
}

fn find_scheme(s: &str) -> Option<usize> {
    match (s.find("http://"), s.find("https://")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Replaces every `sk-…` token of 12 characters or more with `sk-…(redacted)`.
pub(crate) fn keys(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("sk-") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(tail.len());
        if len >= 12 {
            out.push_str("sk-…(redacted)");
        } else {
            out.push_str(&tail[..len]);
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// Whether `s` is a usable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`, at most 64
/// characters, and not shaped like a key (see [`looks_like_key`]).
pub(crate) fn is_env_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !looks_like_key(s)
}

/// Whether a value given where an environment variable's *name* belongs looks like a
/// credential itself: `sk-…`, anything with `-`, `.`, `=`, `/`, `+` or `:` (base64, JWTs,
/// Azure and proxy keys), anything long, or a long run of letters and digits without `_`
/// that mixes both (a 32-hex-digit Azure key). Names people give variables
/// (`AZURE_OPENAI_API_KEY`, `KEY2`) are short, or split by `_`.
pub(crate) fn looks_like_key(s: &str) -> bool {
    let s = s.trim();
    if s.starts_with("sk-") || s.len() > 64 {
        return true;
    }
    if s.contains(['-', '.', '=', '/', '+', ':']) {
        return true;
    }
    let digits = s.chars().filter(char::is_ascii_digit).count();
    let letters = s.chars().filter(char::is_ascii_alphabetic).count();
    let longest_run = s.split('_').map(str::len).max().unwrap_or(0);
    longest_run >= 20 && digits >= 4 && letters >= 4
}

/// The variable name as it may be printed: itself, or a placeholder when it looks like a key.
pub(crate) fn env_var_name(s: &str) -> String {
    if looks_like_key(s) {
        "(a value that looks like a key, not shown)".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials() {
        let pw = ["hun", "ter2"].concat();
        assert_eq!(
            url(&format!("https://user:{pw}@proxy.example/v1")),
            "https://***@proxy.example/v1"
        );
        assert_eq!(url("https://proxy.example/v1"), "https://proxy.example/v1");
        assert_eq!(url("https://proxy.example"), "https://proxy.example");
        let q = url(&format!("https://x.example/v1?api-key={pw}&a=b"));
        assert!(!q.contains(&pw), "{q}");
        assert!(q.contains("a=b"), "{q}");
        assert_eq!(
            url(&format!("not a url://u:{pw}@h/x")),
            "not a url://***@h/x"
        );
        let t = text(&format!(
            "cannot reach https://u:{pw}@h.example/v1/models (refused)"
        ));
        assert_eq!(t, "cannot reach https://***@h.example/v1/models (refused)");
    }

    #[test]
    fn keys_in_text_are_masked() {
        let key = format!("sk-{}", "x".repeat(30));
        assert_eq!(
            keys(&format!("{key:?} is not a duration")),
            "\"sk-…(redacted)\" is not a duration"
        );
        assert_eq!(keys("sk-short"), "sk-short");
    }

    #[test]
    fn env_names_and_pasted_keys() {
        for ok in [
            "OPENAI_API_KEY",
            "AZURE_OPENAI_API_KEY",
            "K",
            "_X1",
            "PROXY_KEY_2024",
        ] {
            assert!(is_env_var_name(ok), "{ok}");
        }
        let hex = "0123456789abcdef".repeat(2);
        for bad in [
            hex.as_str(),
            "sk-abc",
            "abc-def",
            "a.b",
            "a=b",
            "1ABC",
            "",
            &"A".repeat(65),
        ] {
            assert!(!is_env_var_name(bad), "{bad}");
        }
        assert!(looks_like_key(&hex));
        assert!(!env_var_name(&hex).contains(&hex));
        assert_eq!(env_var_name("OPENAI_API_KEY"), "OPENAI_API_KEY");
    }
}
