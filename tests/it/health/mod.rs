//! Health: availability and latency estimates that feed the score.

mod basics;
mod ewma;
mod first_partial;
