//! A state store shared by several router instances through Redis (feature `redis`).
//!
//! Work in progress in this commit: only the connection settings ([`RedisConfig`]) exist;
//! the store itself follows.

mod config;
mod degraded;
mod heartbeat;

pub use config::{RedisConfig, DEFAULT_HEARTBEAT, DEFAULT_PREFIX, DEFAULT_TIMEOUT};
pub use degraded::{Degraded, DegradedParts, LocalEntry, SharedStore};
pub use heartbeat::{Heartbeat, HeartbeatClock, InstanceCount, HEARTBEAT_LIVES};
