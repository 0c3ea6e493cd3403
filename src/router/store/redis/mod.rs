//! A state store shared by several router instances through Redis (feature `redis`).
//!
//! Work in progress in this commit: only the connection settings ([`RedisConfig`]) exist;
//! the store itself follows.

mod config;

pub use config::{RedisConfig, DEFAULT_HEARTBEAT, DEFAULT_PREFIX, DEFAULT_TIMEOUT};
