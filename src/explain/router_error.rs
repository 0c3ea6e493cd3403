//! The texts for what the router and the loader report on their own: configuration and
//! validation errors, skipped providers ([`Skip`]) and the router's [`Error`], which
//! defers to the provider texts for the failures it carries.

use super::{secs, tier_advice, Explanation};
use crate::catalog::Catalog;
use crate::config_error::ConfigError;
use crate::error::{Error, Outcome};
use crate::error::{Skip, SkipReason};
use crate::request::ValidationError;

impl ConfigError {
    /// The cause and the action in plain words.
    ///
    /// ```
    /// use image_router::ConfigError;
    /// let e = ConfigError::new("provider[0].api_key_env", "environment variable OPENAI_API_KEY is not set")
    ///     .at_line(7)
    ///     .explain();
    /// assert!(e.action.contains("line 7"));
    /// ```
    pub fn explain(&self) -> Explanation {
        let at = self
            .line
            .map(|l| format!(" at line {l}"))
            .unwrap_or_default();
        let cause = format!(
            "The configuration is wrong: `{}`{at}: {}",
            self.field, self.message
        );
        let action = if self.field.ends_with("api_key_env")
            || self.message.contains("environment variable")
        {
            format!(
                "Export the environment variable the config names (e.g. `export NAME=...` in the \
                 shell that runs the program), or fix `{}`{at}. Keys are never written in the \
                 config file, only the variable's name.",
                self.field
            )
        } else {
            format!(
                "Fix `{}`{at} as the message says, then run `image-router doctor --config FILE` \
                 to check the providers.",
                self.field
            )
        };
        Explanation::new(cause, action)
    }
}

impl ValidationError {
    /// The cause and the action in plain words.
    pub fn explain(&self) -> Explanation {
        Explanation::new(
            format!(
                "The request is invalid before any provider saw it: `{}`: {}",
                self.field, self.message
            ),
            format!(
                "Change `{}` to a value the model accepts (the catalog lists each model's sizes, \
                 qualities, formats and limits); nothing was sent or billed.",
                self.field
            ),
        )
    }
}

impl Skip {
    /// Why this provider was not called, and what to do about it.
    pub fn explain(&self) -> Explanation {
        let name = &match &self.fallback {
            Some(m) => format!("{} (for fallback model {m})", self.provider),
            None => self.provider.clone(),
        };
        match &self.reason {
            SkipReason::Unsupported { detail } => Explanation::new(
                format!("{name} was not called: it cannot serve this request ({detail})."),
                "Change the request (model, size, format, operation) or add a provider that \
                 supports it; `models` / `rename` / `deployments` in the config say which models \
                 a provider serves."
                    .to_string(),
            ),
            SkipReason::CoolingDown {
                cause,
                message,
                remaining,
            } => Explanation::new(
                format!(
                    "{name} was not called: an earlier request ended in {cause} (\"{message}\") \
                     and it is left alone for {} more.",
                    secs(*remaining)
                ),
                match cause {
                    Outcome::Authentication => "Fix the provider's key; the cool-down then ends \
                                                on its own (or restart the program)."
                        .to_string(),
                    _ => "Fix the cause (run `image-router doctor`), or wait for the cool-down \
                          (`cooldown` in `[router]`)."
                        .to_string(),
                },
            ),
            SkipReason::NoHeadroom { retry_in, message } => Explanation::new(
                format!(
                    "{name} was not called: its rate limit has no room now ({message}){}.",
                    retry_in
                        .map(|d| format!("; room again in {}", secs(d)))
                        .unwrap_or_default()
                ),
                "Wait, send fewer requests at once, raise `deadline` so requests may wait, or add \
                 providers."
                    .to_string(),
            ),
            SkipReason::Budget { message } => Explanation::new(
                format!("{name} was not called: its spend budget cannot cover the request ({message})."),
                "Raise the provider's budget in the config, wait for it to reset, or route to \
                 another provider."
                    .to_string(),
            ),
            SkipReason::Tier { message } => Explanation::new(
                format!("{name} was not called: its usage tier gives no access to this model ({message})."),
                tier_advice(Catalog::builtin(), None),
            ),
            SkipReason::Reserved { message } => Explanation::new(
                format!("{name} was not called: it is reserved for other request classes ({message})."),
                "Send the request with a class the provider admits (`reserved_for` in its config), \
                 or add a provider open to this class."
                    .to_string(),
            ),
            SkipReason::CircuitOpen { message } => Explanation::new(
                format!("{name} was not called: it failed repeatedly and its circuit breaker is open ({message})."),
                "Wait for the breaker to probe it again; check the provider with `image-router \
                 doctor`."
                    .to_string(),
            ),
        }
    }
}

impl Error {
    /// The cause and the action in plain words: for a failed routed request, the most telling
    /// provider error's explanation (or why no provider was called).
    ///
    /// ```
    /// use image_router::{Error, ValidationError};
    /// let e = Error::from(ValidationError::new("n", "must be between 1 and 10")).explain();
    /// assert!(e.cause.contains("`n`"));
    /// ```
    pub fn explain(&self) -> Explanation {
        let mut e = self.explain_cause();
        let tried = crate::error::fallbacks_tried(self.attempts(), self.skipped());
        if !tried.is_empty() {
            e.cause.push_str(&format!(
                " No provider served the requested model, so the router fell back to {} \
                 (the error's attempts and skips each name the model they were for).",
                tried.join(", then ")
            ));
        }
        e
    }

    fn explain_cause(&self) -> Explanation {
        match self {
            Error::Config(c) => c.explain(),
            Error::Invalid(v) => v.explain(),
            Error::Rejected { error, .. } => error.explain(),
            Error::StreamInterrupted {
                error,
                partials_delivered,
                ..
            } => {
                let mut e = error.explain();
                e.cause = format!(
                    "The stream ended after {partials_delivered} partial image(s) without the final \
                     image: {}",
                    e.cause
                );
                e
            }
            Error::Exhausted {
                attempts,
                skipped,
                deadline_exceeded,
            } => {
                if let Some(cause) = self.cause() {
                    let e = cause.explain();
                    let prefix = if *deadline_exceeded {
                        format!(
                            "The request's deadline passed after {} attempt(s). Most telling failure: ",
                            attempts.len()
                        )
                    } else {
                        format!(
                            "All providers failed ({} attempt(s)). Most telling failure: ",
                            attempts.len()
                        )
                    };
                    Explanation::new(format!("{prefix}{}", e.cause), e.action)
                } else if let Some(first) = skipped.first() {
                    let list = skipped
                        .iter()
                        .map(|s| s.explain().cause)
                        .collect::<Vec<_>>()
                        .join(" ");
                    Explanation::new(
                        format!("No provider could serve this request. {list}"),
                        first.explain().action,
                    )
                } else if *deadline_exceeded {
                    Explanation::new(
                        "The request's deadline passed before any provider answered.",
                        "Raise `deadline` and `timeout` in `[router]`.",
                    )
                } else {
                    Explanation::new(
                        "No provider could serve this request.",
                        "Add a provider that serves the requested model.",
                    )
                }
            }
        }
    }
}
