//! The integration tests, one binary (one link step) with one module per concept.

mod breaker; // circuit breaker states, probes and the cheap probe
mod budget; // budget caps per period and scope
mod cache; // the response cache: single-flight, tiers, key, policy
mod catalog; // token estimates, tiers and prices
mod check; // the capability check: Router::check, check_on_start, doctor on the same check
mod classify; // provider answers classified into error kinds
mod cli; // the command line, batch, doctor, quickstart and README examples
mod config; // the config file: parsing, errors naming key and line, rules
mod explain; // explain(): every error in plain words
mod fallback; // model fallback: when no provider can serve the model, the next model, translated
mod forecast; // Router::forecast and `image-router plan`, checked against a simulated run
mod health; // availability and latency estimates
mod hostile; // hostile provider answers and inputs never panic
mod keys; // several keys behind one provider: combined limit, room, denial, outputs
mod limiter; // RPM/TPM limiter, its properties and live headers
mod preview; // preview mode: every request in its cheapest faithful form; the README cost table
mod queue; // durable jobs: backend contract, SQLite, workers, callbacks, crash and restart
mod routing; // rules, strategies, scoring, quota routing, scenarios, faults, reload
mod shared; // several instances, one account: the Redis store's proofs
mod sim; // the embedded simulator
mod status_metrics; // metrics, status and tracing
mod store; // the Redis state store shared by several instances
mod store_degraded; // the shared store when Redis is slow or gone: heartbeats, outages
mod stream; // streamed partial images: events, failover rules, stalls, cuts, cancellation
mod support; // the one scripted fake provider and shared helpers
mod wire; // providers on the wire against wiremock
