//! A bad setting: the one error type of every builder's `build()`, the catalog loader and the
//! config file loader.
//!
//! It is its own module because everything that takes settings reports it (catalog, limits,
//! limiter, budgets, providers, router, config) while it depends on nothing: keeping it apart
//! from the routed-request [`Error`](crate::Error) lets those modules use it without depending
//! on the error of a whole request.

use serde::Serialize;

/// A bad setting, reported by a builder's `build()` or by a catalog/config loader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("invalid configuration: `{field}`{}: {message}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct ConfigError {
    /// The setting at fault, e.g. `"providers[1].deployment"` or `"api_key"`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// Line in the file, when the setting came from a file.
    pub line: Option<usize>,
}

impl ConfigError {
    /// A configuration error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            line: None,
        }
    }

    /// The same error at `line` of a file.
    pub fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    /// Prefixes the field with `scope` (`"openai"` + `"api_key"` → `"openai.api_key"`).
    pub fn scoped(mut self, scope: &str) -> Self {
        self.field = if self.field.is_empty() {
            scope.to_string()
        } else {
            format!("{scope}.{}", self.field)
        };
        self
    }
}
