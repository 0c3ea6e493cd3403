//! `Router::forecast` and `image-router plan`: the forecast checked against a simulated run of
//! the same workload, its answers (binding constraint, alternatives, what cannot be served)
//! and the command line.

mod answers;
mod cli;
mod simulated;
