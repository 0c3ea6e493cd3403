//! The circuit breaker: when a provider is left alone, how it is probed back, and the cheap
//! probe that checks it without buying an image.

mod basics;
mod cheap_probe;
mod dynamics;
mod probes;
mod states;
