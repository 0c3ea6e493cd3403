//! A state store shared by several router instances through Redis (feature `redis`).
//!
//! TODO(doc): replaced below.

mod config;
mod factory;
mod scripts;
mod store;

pub use config::{RedisConfig, DEFAULT_HEARTBEAT, DEFAULT_PREFIX, DEFAULT_TIMEOUT};
pub use factory::{RedisStoreFactory, DEFAULT_RESERVATION_TTL, QUEUE_BOUND};
pub use store::RedisStore;
#[allow(unused_imports)] // for the degraded mode
pub(crate) use store::ReplayEntry;
