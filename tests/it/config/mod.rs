//! The config file: parsing, typed errors naming key and line, rules, and the tables that must
//! reach the router.

mod errors;
pub(crate) mod file;
mod input;
mod rules;
mod sections;
mod settings;
mod store;
mod timeout_policy;
