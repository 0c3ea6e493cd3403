//! Rate limiting: the RPM/TPM limiter on a manual clock, its properties, live rate-limit
//! headers and the simulator's window; admitting one request too many costs a 429.

mod basics;
mod full_limit;
mod images;
mod live_headers;
mod per_model;
mod props;
mod rpm_tpm;
mod sim_window;
