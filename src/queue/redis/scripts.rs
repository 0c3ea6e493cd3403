//! The Lua scripts (in `*.lua` beside this file, each prefixed with `common.lua`).

use std::sync::LazyLock;

use redis::Script;

const COMMON: &str = include_str!("common.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

/// A new job, or the one its idempotency key names.
pub(super) static SUBMIT: LazyLock<Script> = LazyLock::new(|| script(include_str!("submit.lua")));
/// Lanes with due work.
pub(super) static LANES: LazyLock<Script> = LazyLock::new(|| script(include_str!("lanes.lua")));
/// The next job of the allowed lanes, leased.
pub(super) static CLAIM: LazyLock<Script> = LazyLock::new(|| script(include_str!("claim.lua")));
/// Heartbeat, sent, unsent, complete, fail, retry, release: the steps under a lease.
pub(super) static LEASE: LazyLock<Script> = LazyLock::new(|| script(include_str!("lease.lua")));
/// Cancellation.
pub(super) static CANCEL: LazyLock<Script> = LazyLock::new(|| script(include_str!("cancel.lua")));
/// Leases that ran out and deadlines that passed.
pub(super) static RECLAIM: LazyLock<Script> = LazyLock::new(|| script(include_str!("reclaim.lua")));
/// Lists and figures.
pub(super) static READ: LazyLock<Script> = LazyLock::new(|| script(include_str!("read.lua")));
/// Callback delivery state and due deliveries.
pub(super) static CALLBACK: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("callback.lua")));
