//! Budgets: caps per period and scope that spend must never pass.

mod basics;
mod periods;
