//! The providers on the wire: each provider's request and answer shapes against wiremock, and
//! black-box runs of the public API against the real OpenAI and Azure OpenAI bodies
//! (`shared/api-facts.md`), because a provider that compiles but speaks the wrong shape fails
//! only in production.

mod azure;
mod azure_answers;
mod compatible;
mod compatible_answers;
mod error_bodies;
mod helpers;
mod keys;
mod not_success;
mod openai;
mod openai_answers;
