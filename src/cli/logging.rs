//! `-v` / `-vv` / `RUST_LOG`: the library's tracing on stderr, through `tracing-subscriber`'s
//! formatter (the maintained subscriber; nothing here formats events by hand).
//!
//! Without `-v` and without `RUST_LOG` no subscriber is installed, so the output is exactly
//! the command's own. `-v` shows the router's `image_router.request` and
//! `image_router.attempt` spans as they close (provider, model, retry, time taken); `-vv`
//! adds its debug events (the ranking, skipped providers, waits for rate-limit room);
//! `-vvv` everything the crate traces. All of these select the `image_router` target only:
//! other crates (reqwest, hyper) log only when `RUST_LOG` asks for them. `RUST_LOG`, when
//! set, is the filter itself (`RUST_LOG=image_router=debug`), and spans are shown as they
//! close then too.
//!
//! Keys: the library never puts a key in a span field or an event (providers hold them as
//! `SecretString`, request headers carrying them are marked sensitive, URLs and messages are
//! redacted); a test runs `generate -vv` and checks that no key appears in any output.

use std::io::IsTerminal;

use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::EnvFilter;

/// The filter `-v` given `count` times selects (`None`: no logging).
fn level_filter(count: u8) -> Option<&'static str> {
    match count {
        0 => None,
        1 => Some("image_router=info"),
        2 => Some("image_router=debug"),
        _ => Some("image_router=trace"),
    }
}

/// Installs the subscriber the flags and `RUST_LOG` ask for, writing to stderr.
pub fn init(verbose: u8, quiet: bool) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let filter = match (from_env, level_filter(verbose)) {
        (Some(spec), flag) => match EnvFilter::try_new(&spec) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("warning: RUST_LOG={spec:?} is not a valid filter ({e}); ignored");
                match flag {
                    Some(f) => EnvFilter::new(f),
                    None => return,
                }
            }
        },
        (None, Some(f)) if !quiet => EnvFilter::new(f),
        (None, _) => return,
    };
    // A second subscriber cannot be installed; there is none before this one.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_span_events(FmtSpan::CLOSE)
        .with_target(verbose >= 2)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_v_selects_more_of_the_library_only() {
        assert_eq!(level_filter(0), None);
        assert_eq!(level_filter(1), Some("image_router=info"));
        assert_eq!(level_filter(2), Some("image_router=debug"));
        assert_eq!(level_filter(7), Some("image_router=trace"));
        for n in 1..4 {
            EnvFilter::try_new(level_filter(n).unwrap()).unwrap();
        }
    }
}
