//! The Redis server the shared-store tests use.
//!
//! `.ci/run` starts a throwaway `redis-server` on a free loopback port and exports its URL
//! as `IMAGE_ROUTER_TEST_REDIS_URL`. Without it a test cannot run: in CI (`CI` set) that is
//! a failure with a clear message, since a skipped shared-store test would hide a broken
//! store; on a developer's machine the test says loudly that it was skipped and returns.
//! Each test writes under its own key prefix ([`unique_prefix`]), so tests share one
//! server without seeing each other's keys.

use std::sync::atomic::{AtomicU64, Ordering};

/// The variable holding the test server's URL.
pub const URL_VAR: &str = "IMAGE_ROUTER_TEST_REDIS_URL";

/// The test server's URL; `None` (after a loud note on stderr) when there is none outside
/// CI; a panic naming the variable when there is none in CI.
pub fn url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(u) if !u.trim().is_empty() => Some(u.trim().to_string()),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{test}: {URL_VAR} is not set: CI must run the Redis tests (.ci/run starts redis-server and exports it)"
        ),
        _ => {
            eprintln!(
                "\n*** SKIPPED {test}: no Redis server ({URL_VAR} is not set; `bash .ci/run` starts one) ***\n"
            );
            None
        }
    }
}

/// A key prefix no other test (or earlier run) uses.
pub fn unique_prefix(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("test-{tag}-{}-{nanos}-{n}", std::process::id())
}
