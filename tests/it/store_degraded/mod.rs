//! The shared store when Redis is slow or gone: heartbeats that count the live instances of
//! an account (against the test server), and an outage of a real server killed with SIGKILL
//! and restarted. The degraded wrapper's own rules (the share, one warning, re-joining,
//! replay, deadlines) are unit tests in `src/router/store/redis/degraded.rs`, with a fake
//! primary that fails or hangs on command.

mod heartbeat;
mod outage;
mod saturating;
mod slow_settle;

/// The outage tests share one server port: one at a time.
static SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
