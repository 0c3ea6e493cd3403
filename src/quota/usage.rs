//! Token usage as a provider reports it (the `usage` object of an images answer).
//!
//! It sits with the quota because the limiter reconciles a permit with it and the cost of a
//! request is computed from it; responses carry it.

use serde::{Deserialize, Serialize};

/// Token usage as reported by GPT image models.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// Input tokens (text + image).
    #[serde(default)]
    pub input_tokens: u64,
    /// Split of the input tokens.
    #[serde(default)]
    pub input_tokens_details: TokenDetails,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Split of the output tokens (absent on older responses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_details: Option<TokenDetails>,
    /// Total tokens.
    #[serde(default)]
    pub total_tokens: u64,
}

impl Usage {
    /// A usage of `input_tokens` in and `output_tokens` out, without details and with a
    /// `total_tokens` of 0 (set it with [`with_total_tokens`](Self::with_total_tokens)).
    /// Outside this crate the struct is built this way: it may gain fields.
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            output_tokens,
            ..Self::default()
        }
    }

    /// Sets `total_tokens`.
    pub fn with_total_tokens(mut self, total_tokens: u64) -> Self {
        self.total_tokens = total_tokens;
        self
    }

    /// Sets `input_tokens_details`.
    pub fn with_input_tokens_details(mut self, details: TokenDetails) -> Self {
        self.input_tokens_details = details;
        self
    }

    /// Sets `output_tokens_details`.
    pub fn with_output_tokens_details(mut self, details: Option<TokenDetails>) -> Self {
        self.output_tokens_details = details;
        self
    }

    /// Output image tokens: from the details when present, else all output tokens.
    pub fn output_image_tokens(&self) -> u64 {
        self.output_tokens_details
            .map(|d| d.image_tokens)
            .unwrap_or(self.output_tokens)
    }

    /// Adds another usage (for totals). Saturating: the numbers come from providers.
    pub fn add(&mut self, other: &Usage) {
        fn sum(a: &mut u64, b: u64) {
            *a = a.saturating_add(b);
        }
        sum(&mut self.input_tokens, other.input_tokens);
        sum(
            &mut self.input_tokens_details.text_tokens,
            other.input_tokens_details.text_tokens,
        );
        sum(
            &mut self.input_tokens_details.image_tokens,
            other.input_tokens_details.image_tokens,
        );
        sum(&mut self.output_tokens, other.output_tokens);
        if let Some(o) = other.output_tokens_details {
            let d = self
                .output_tokens_details
                .get_or_insert_with(TokenDetails::default);
            sum(&mut d.text_tokens, o.text_tokens);
            sum(&mut d.image_tokens, o.image_tokens);
        }
        sum(&mut self.total_tokens, other.total_tokens);
    }
}

/// Text / image token split.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenDetails {
    /// Text tokens.
    #[serde(default)]
    pub text_tokens: u64,
    /// Image tokens.
    #[serde(default)]
    pub image_tokens: u64,
}

impl TokenDetails {
    /// A split of `text_tokens` and `image_tokens`.
    pub fn new(text_tokens: u64, image_tokens: u64) -> Self {
        Self {
            text_tokens,
            image_tokens,
        }
    }
}
