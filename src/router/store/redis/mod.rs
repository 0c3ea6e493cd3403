//! A state store shared by several router instances through Redis (feature `redis`).
//!
//! TODO(doc): replaced below.

mod config;
mod degraded;
mod factory;
mod heartbeat;
mod scripts;
mod store;

pub use config::{RedisConfig, DEFAULT_HEARTBEAT, DEFAULT_PREFIX, DEFAULT_TIMEOUT};
pub use degraded::{Degraded, DegradedParts, LocalEntry, SharedStore};
pub use factory::{RedisStoreFactory, DEFAULT_RESERVATION_TTL, QUEUE_BOUND};
pub use heartbeat::{Heartbeat, HeartbeatClock, InstanceCount, HEARTBEAT_LIVES};
pub use store::RedisStore;
#[allow(unused_imports)] // for the degraded mode
pub(crate) use store::ReplayEntry;
