//! Routing: which provider a request goes to and what happens when it fails — rules,
//! strategies, scores, quota routing, scenarios, faults, request classes, reload, timeouts and
//! billing.

mod classes;
mod connect_timeout;
mod faults;
mod latency_defaults;
mod quota;
mod quota_end_to_end;
mod reload;
mod router_core;
mod rules;
mod scenarios;
mod score;
mod score_latency;
mod scored;
mod strategy;
mod strategy_failover;
