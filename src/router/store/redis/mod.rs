//! A state store shared by several router instances through Redis (feature `redis`).
//!
//! Several replicas of an application (or a web tier and a worker pool) that use one
//! provider account must share that account's limits: each with its own in-process
//! limiter, four replicas send four times the allowed requests and spend four budgets.
//! [`RedisStoreFactory`] makes a [`RedisStore`] for each provider slot, all on one
//! connection; `RouterBuilder::store(Arc::new(factory))` is the only change in application
//! code (the config's `[store]` table does the same).
//!
//! ```no_run
//! use std::sync::Arc;
//! use image_router::store::redis::{RedisConfig, RedisStoreFactory};
//! # fn main() -> Result<(), image_router::ConfigError> {
//! let store = RedisStoreFactory::new(RedisConfig::from_env("REDIS_URL")?)?;
//! let router = image_router::Router::builder()
//!     // ... providers, with `ProviderOptions::account("org-…")` where two share one account
//!     .store(Arc::new(store));
//! # let _ = router; Ok(()) }
//! ```
//!
//! # Key layout
//!
//! Every key of one provider account starts with the hash tag `{prefix:account}` (prefix:
//! [`RedisConfig::prefix`], default `image-router`; account: the provider's `account`
//! option, else its name), so all of them live in one hash slot and one script can touch
//! them atomically on a single server, on Redis Cluster and on Valkey alike:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p:a}:w:<model>` | sorted set | the model's sliding-window log: members `id:images:tokens:admitted`, scored by settlement time once settled, and while in flight by the end of the reservation's time-to-live (µs; see "The window's edge") |
//! | `{p:a}:m:<model>` | hash | the log's running sums, server-reported limits, held capacity and blocks from headers, the 429 back-off |
//! | `{p:a}:deny` | hash, TTL | a provider-wide denial: reason code, message, end |
//! | `{p:a}:cool:<model>` | hash, TTL | a model's cool-down (not found): cause, message, end |
//! | `{p:a}:b:<period>:<index>` | hash, TTL past the period's end | one budget period: `spent`, `reserved`, `held` (nano-USD) |
//! | `{p:a}:rd` / `{p:a}:rz` | hash / sorted set | open reservations (amount, budget keys, window member) and their expiry |
//! | `{p:a}:spend` | hash | lifetime spend and committed count |
//! | `{p:router}:…` | same `b:`, `rd:<account>`, `rz:<account>`, `spend` | the router-wide budgets |
//!
//! The router-wide budgets are under their own tag (another slot) since every account
//! reserves on them, and a Lua script cannot span slots. An admission therefore reserves
//! on them first in a separate atomic step and, if the account's script refuses (or does
//! not answer), releases that reservation again (compensation). Between the two steps the
//! router-wide budget counts a reservation that may be given back: conservative, never an
//! overspend. The account name `"router"` is refused for that reason.
//!
//! # Redis Cluster
//!
//! With [`RedisConfig::cluster`] (config `cluster = true`) the URL holds one or several node
//! URLs of a Redis Cluster and every store, heartbeat and degraded-mode call goes through the
//! redis crate's cluster connection (`redis::cluster_async::ClusterConnection`, behind the
//! crate's one connection type in `src/redis_conn.rs`), which sends a script to the primary
//! owning the slot of its first declared key. Every script here declares all the keys it
//! touches, and they share one tag: the account's (`admit`, `settle`, `mark`, `replay`, the
//! heartbeat) or the router's (`budget`); a reservation's budget keys read back from its
//! record are the same tag's. The degraded mode's `INFO server` (the server's identity, to
//! learn whether it restarted) goes to the node owning the account's slot. Slots that move
//! (resharding, failover) are followed by the client (`MOVED`/`ASK`); a call that fails
//! meanwhile is a store error like any other, which the degraded mode absorbs.
//!
//! # Scripts
//!
//! The scripts are `*.lua` files beside this module, each prefixed with `common.lua`, run
//! with `EVALSHA` (`redis::Script`, which loads them on a `NOSCRIPT` answer):
//!
//! * `admit.lua` — one step per admission: expired reservations swept (held), the denial
//!   and the model's cool-down checked ([`Refusal::Unavailable`](crate::store::Refusal)),
//!   the window pruned and checked on every dimension — requests weigh 1, images `n`,
//!   tokens the estimate — at the limits × margin × back-off the router passes as
//!   arguments (from [`LimitSettings::limiter_config`](crate::store::LimitSettings::limiter_config),
//!   so a reload applies at once), refusing exactly as the in-process limiter does
//!   (`NeverFits*`, `Blocked`, `NoRoom` with the exact retry time), then every budget of
//!   the current period, all or nothing. It answers with the window's figures, the marks
//!   and the budgets, which the store caches. With `dry` set it only looks (the refresh).
//! * `settle.lua` — refund, usage reconciliation (the estimate replaced), the entry moved to
//!   the settlement time (see "The window's edge"), the answer's `x-ratelimit-*` figures applied to the shared window
//!   (held capacity and `remaining: 0` blocks, counting only the entries admitted up to the
//!   answered request, as the limiter does), a 429's back-off and `retry-after` block, and
//!   the budget's commit, release or hold. Without a reservation id it applies headers only
//!   ([`StateStore::observe`](crate::store::StateStore::observe)).
//! * `mark.lua` — a denial or a model cool-down; `budget.lua` — the router-wide budgets;
//!   `replay.lua` — admissions made locally while the store was unreachable.
//!
//! Pruning (every script prunes the log before it looks) writes the log's running sums
//! back in the same step, and the request count is the log's size: a look that pruned the
//! log without saving the sums (the dry refresh did, once) left them counting requests that
//! were gone, and the window never had room again.
//!
//! The semantics are the in-process limiter's ([`crate::quota::limiter`]) and ledger's
//! ([`crate::budget`]); the scripts reimplement them in Lua because Redis runs Lua, not
//! Rust. Checked before writing them (docs.rs, 2026-12): `trypema`, `allframe-core`'s
//! `RedisRateLimiter` and `sentinel-proxy` keep Redis sliding windows, but each counts one
//! dimension per key; none admits one request against requests, images and tokens at once
//! together with budget reservations, header corrections and shared denials in one atomic
//! step, which is what "no interleaving of instances passes any limit" needs.
//!
//! Money is integer nano-USD as in the ledger; Lua numbers are doubles, exact to 2^53, so
//! sums are exact below about $9 million per period.
//!
//! # Time
//!
//! One clock decides windows. By default it is the **Redis server's** (`TIME` inside the
//! scripts): instances' clocks drift, the server's is one. With
//! [`RedisStoreFactory::router_clock`] the router's injected clock is passed as an argument
//! instead, so tests with a [`ManualClock`](crate::clock::ManualClock) shared by several
//! routers stay deterministic; every instance of an account must then share that clock.
//! Budget periods (UTC days and months) come from the router's wall clock; custom periods
//! count from the Unix epoch (every instance agrees on it; an in-process ledger counts from
//! its creation). TTLs are real server time (a key outlives its logical end a little).
//!
//! # The window's edge
//!
//! The provider counts a request when it reaches it, which the store cannot see; it only
//! knows when it admitted the request and when the answer came back. Counting from the
//! admission is not safe at the window's edge: a slot used at `t` is free again at `t + 60 s`
//! on the store's clock, but if that request reached the provider later than the new one
//! does (a slow path, a busy machine: 4 upstream 429s of 60 were seen with answers that
//! take seconds), the provider's window still holds it. So an entry is timed by what is
//! certain:
//!
//! * **while the request is in flight** its entry never leaves the window, however long it
//!   takes (it might reach the provider at any moment); computing when room comes back, it
//!   counts as leaving no earlier than 60 s from now. It is scored at the end of its
//!   reservation's time-to-live, a time in the future: "in flight" is "scored after now", so
//!   no script needs another key to tell, and the log's order is the order entries leave in;
//! * **when it is settled** (answered, or held because its outcome is unknown) its entry is
//!   moved to the settlement time: the provider counted it before its answer, so the
//!   provider lets go of it no later than 60 s after the settlement, and the store frees the
//!   slot exactly then. A refund (never sent, or not counted) removes it.
//!
//! This is exact in the sense that matters: it needs no guard constant to tune, and no delay
//! on either request's way can make the store admit while the provider still counts the slot.
//! What it costs is each request's latency (a slot is busy for its answer time plus 60 s,
//! where the provider needs 60 s from receipt); with answers of 3 s and 30 RPM that is at
//! most 3 s of every 63, and the proofs still turn 100 % of the two-minute limit into
//! images. A reservation nobody ends (a crashed instance, or a release dropped because the
//! background queue was full) keeps its slot until its time-to-live has passed, and 60 s
//! more ([`RedisStoreFactory::reservation_ttl`], default 10 minutes): conservative, never a
//! 429.
//!
//! # What is shared and what stays in each instance
//!
//! Shared: the windows, budgets, denials (an instance that meets a tier denial records it
//! and every other instance's admission refuses, so they send nothing for the cool-down),
//! model cool-downs, 429 blocks and back-off, header corrections. Per instance: health
//! (latency, availability) and the breaker's fault counting. Latency depends on the
//! instance's own network path and load, and a fault streak is a local observation; sharing
//! them would cost a write per request for figures that are only advisory in ranking. A
//! shared denial opens the local breaker too, so status pages show it.
//!
//! # Synchronous calls
//!
//! Ranking reads (`headroom`, `windows`, `budget_left`, `unavailable`, `spend`,
//! `spent_usd`, `breaker`, `rate_limit_check`) never wait on the network: they answer from
//! a cache of the last answer about each model, refreshed by every admission and
//! settlement, by a background dry admission when a read finds the cache older than one
//! second of router time, and every second (real time) by the background task, which
//! refreshes each store's least recently answered window (at most one refresh in flight
//! per store: one script call per store per second at most, bounded). Before
//! any answer the configured limits are shown. A cached answer does not advance by itself,
//! so two rules bound what it can say later: an answer that showed the window full until
//! `T` (its `room_at`: when one request of one image fits again) reads as room once the
//! router clock passes `T` — the time is carried over as the time elapsed since the answer,
//! so the server's and the router's clocks need not agree — and an answer older than the
//! refresh interval never refuses (`rate_limit_check` answers "no objection" and asks for a
//! fresh look): only an admission, on the server, refuses then. `release` and `hold` run in `Drop`, so they
//! are queued to one background task per factory (a channel of [`QUEUE_BOUND`] jobs);
//! when it is full the job is dropped with a warning and the reservation's time-to-live
//! ([`RedisStoreFactory::reservation_ttl`], default 10 minutes) ends it, as held: the
//! same backstop that ends the reservations of an instance that crashed.
//!
//! # Cancellation
//!
//! An admission's future can be dropped while its scripts run (the request was cancelled,
//! or the degraded mode's time-out gave up on the call): the script may still run on the
//! server and reserve. The reservation id is made on the client before the first script, so
//! a drop guard (`EndOnDrop` in `store.rs`) queues the release of that id on the same
//! bounded queue; a settlement dropped midway queues the rest of its work the same way
//! (without its headers and 429, which must not apply twice). Ending an id that holds
//! nothing is a no-op on the server, so a guard that fires after a refusal or before any
//! script ran costs one call and changes nothing.
//!
//! # Time-outs and errors
//!
//! No connection is made while building a router; the first call connects, within the
//! time-out ([`RedisConfig::timeout`], default 50 ms), and every call is bounded by it. A
//! failure is a [`StoreError`](crate::store::StoreError): the router skips the provider for
//! that attempt (the degraded mode then serves from local state).
//!
//! # No secrets
//!
//! Nothing but counts, ids, times, costs, model names, reason codes and the provider's
//! messages (passed through the crate's redaction, which masks `sk-…` keys and URL
//! credentials) is written. The URL is a secret and never shown.

mod config;
mod degraded;
mod factory;
mod heartbeat;
mod link;
mod scripts;
mod store;
#[cfg(test)]
mod tests;

pub use config::{RedisConfig, DEFAULT_HEARTBEAT, DEFAULT_PREFIX, DEFAULT_TIMEOUT};
pub use degraded::{Degraded, DegradedParts, LocalEntry, SharedStore};
pub use factory::{RedisStoreFactory, DEFAULT_RESERVATION_TTL};
pub use heartbeat::{Heartbeat, HeartbeatClock, InstanceCount, HEARTBEAT_LIVES};
pub use link::QUEUE_BOUND;
pub use store::RedisStore;
#[allow(unused_imports)] // for the degraded mode
pub(crate) use store::ReplayEntry;
