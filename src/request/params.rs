//! The parameter enums of a request (`size`, `quality`, `background`, `output_format`, ...):
//! exact OpenAI wire values, parsed and printed as the API spells them.
//!
//! They live apart from the request types because the capabilities of a model are stated in
//! the same terms: both [`super::types`] and [`super::capabilities`] use them, and neither
//! needs the other for that.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Image size: `auto` or `WIDTHxHEIGHT`.
///
/// ```
/// use image_router::Size;
/// assert_eq!("1536x1024".parse::<Size>().unwrap(), Size::LANDSCAPE);
/// assert_eq!(Size::SQUARE.to_string(), "1024x1024");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Size {
    /// Let the model choose (`"auto"`).
    Auto,
    /// An explicit size.
    Dims {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
}

impl Size {
    /// `1024x1024`.
    pub const SQUARE: Size = Size::Dims {
        width: 1024,
        height: 1024,
    };
    /// `1536x1024`.
    pub const LANDSCAPE: Size = Size::Dims {
        width: 1536,
        height: 1024,
    };
    /// `1024x1536`.
    pub const PORTRAIT: Size = Size::Dims {
        width: 1024,
        height: 1536,
    };

    /// An explicit size.
    pub const fn new(width: u32, height: u32) -> Size {
        Size::Dims { width, height }
    }

    /// Width and height, `None` for `auto`.
    pub fn dims(&self) -> Option<(u32, u32)> {
        match self {
            Size::Auto => None,
            Size::Dims { width, height } => Some((*width, *height)),
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Size::Auto => f.write_str("auto"),
            Size::Dims { width, height } => write!(f, "{width}x{height}"),
        }
    }
}

/// A size string that is neither `auto` nor `WIDTHxHEIGHT`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {0:?}: expected \"auto\" or WIDTHxHEIGHT such as \"1024x1024\"")]
pub struct ParseSizeError(pub String);

impl FromStr for Size {
    type Err = ParseSizeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(Size::Auto);
        }
        let (w, h) = t
            .split_once(['x', 'X'])
            .ok_or_else(|| ParseSizeError(s.to_string()))?;
        let width: u32 = w
            .trim()
            .parse()
            .map_err(|_| ParseSizeError(s.to_string()))?;
        let height: u32 = h
            .trim()
            .parse()
            .map_err(|_| ParseSizeError(s.to_string()))?;
        if width == 0 || height == 0 {
            return Err(ParseSizeError(s.to_string()));
        }
        Ok(Size::Dims { width, height })
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value exactly as sent on the wire.
            pub const fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseEnumError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let t = s.trim();
                $(if t.eq_ignore_ascii_case($wire) { return Ok($name::$variant); })+
                Err(ParseEnumError {
                    kind: stringify!($name),
                    value: s.to_string(),
                    expected: &[$($wire),+],
                })
            }
        }
    };
}

/// A string that is not one of an enum's wire values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}; expected one of {expected:?}")]
pub struct ParseEnumError {
    /// The type being parsed.
    pub kind: &'static str,
    /// What was given.
    pub value: String,
    /// The accepted values.
    pub expected: &'static [&'static str],
}

wire_enum! {
    /// `quality`: `low | medium | high | auto` for GPT image models, `standard | hd` for dall-e-3.
    Quality {
        /// `auto`: the model's default (high for gpt-image-1).
        Auto = "auto",
        /// `low`.
        Low = "low",
        /// `medium`.
        Medium = "medium",
        /// `high`.
        High = "high",
        /// `standard` (dall-e).
        Standard = "standard",
        /// `hd` (dall-e-3).
        Hd = "hd",
    }
}

wire_enum! {
    /// `output_format`.
    OutputFormat {
        /// `png` (the API's default).
        Png = "png",
        /// `jpeg`.
        Jpeg = "jpeg",
        /// `webp`.
        Webp = "webp",
    }
}

impl OutputFormat {
    /// The MIME type of images in this format.
    pub const fn mime(&self) -> &'static str {
        match self {
            OutputFormat::Png => "image/png",
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Webp => "image/webp",
        }
    }

    /// The usual file extension.
    pub const fn extension(&self) -> &'static str {
        match self {
            OutputFormat::Png => "png",
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Webp => "webp",
        }
    }

    /// Recognises a format from an image's first bytes.
    pub fn sniff(bytes: &[u8]) -> Option<OutputFormat> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(OutputFormat::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(OutputFormat::Jpeg)
        } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(OutputFormat::Webp)
        } else {
            None
        }
    }
}

wire_enum! {
    /// `background`: transparency of the generated image (GPT image models).
    Background {
        /// `auto`.
        Auto = "auto",
        /// `opaque`.
        Opaque = "opaque",
        /// `transparent` (needs png or webp output).
        Transparent = "transparent",
    }
}

wire_enum! {
    /// `moderation` (generations only, GPT image models).
    Moderation {
        /// `auto`: standard filtering.
        Auto = "auto",
        /// `low`: less restrictive filtering.
        Low = "low",
    }
}

wire_enum! {
    /// `input_fidelity` (edits; not on gpt-image-1-mini).
    InputFidelity {
        /// `high`: preserve faces and details of the input images.
        High = "high",
        /// `low`.
        Low = "low",
    }
}

wire_enum! {
    /// `style` (dall-e-3 only).
    Style {
        /// `vivid`.
        Vivid = "vivid",
        /// `natural`.
        Natural = "natural",
    }
}

wire_enum! {
    /// `response_format` (dall-e only; GPT image models always return base64).
    ResponseFormat {
        /// `url`: the provider returns a short-lived URL (the router downloads it).
        Url = "url",
        /// `b64_json`: the image inline as base64.
        B64Json = "b64_json",
    }
}
