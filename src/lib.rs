//! image-router (crate docs are written in README / docs; see below).
#![warn(missing_docs)]

#[cfg(feature = "sim")]
pub mod sim;
