//! Durable image jobs: the backend contract (shared by every backend), the SQLite backend,
//! workers on the simulator, callbacks and the command line.

mod callbacks;
mod cli;
pub mod conformance;
pub(crate) mod crash;
pub(crate) mod drain;
mod processes;
mod redis;
mod sqlite;
mod worker;
