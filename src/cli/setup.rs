//! Where the configuration comes from, so a new user needs no file to start.
//!
//! In order: `--config FILE` (or `IMAGE_ROUTER_CONFIG`, which clap reads into the same flag);
//! `image-router.toml` in the working directory; `image-router.toml` in the user's config
//! directory (`$XDG_CONFIG_HOME/image-router/`, else `~/.config/image-router/`, as the XDG
//! base-directory convention says: a relative `XDG_CONFIG_HOME` is ignored); else the
//! providers the conventional environment variables describe
//! ([`image_router::config::EnvSetup`], the library's `Router::from_env`).
//!
//! A found file or the environment's providers are announced on stderr (the variables'
//! names, never their values) unless `--quiet`, so it is never a mystery which providers a
//! command used. Written by hand rather than with the `dirs` / `directories` crates: the
//! rule is two variables, and those crates answer differently on macOS (`~/Library/...`),
//! where people using a command line expect `~/.config`.

use std::path::{Path, PathBuf};

use image_router::config::{EnvSetup, RouterConfig};
use image_router::ConfigError;

/// The configuration file's name, in the working directory and the user's config directory.
pub const FILE_NAME: &str = "image-router.toml";

/// `$XDG_CONFIG_HOME/image-router`, else `$HOME/.config/image-router`.
pub fn user_config_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let non_empty = |v: &str| env(v).filter(|s| !s.trim().is_empty()).map(PathBuf::from);
    let base = non_empty("XDG_CONFIG_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| non_empty("HOME").map(|h| h.join(".config")))?;
    Some(base.join("image-router"))
}

/// The files looked for, in order.
pub fn candidates(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut c = vec![PathBuf::from(FILE_NAME)];
    if let Some(d) = user_config_dir(env) {
        c.push(d.join(FILE_NAME));
    }
    c
}

fn note(msg: &str) {
    if !super::quiet() {
        eprintln!("note: {}", super::redact::text(msg));
    }
}

/// The configuration: the file given, else the first file found, else the environment's
/// providers (announced on stderr).
pub fn load(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RouterConfig, ConfigError> {
    if let Some(p) = explicit {
        return RouterConfig::from_file(p);
    }
    let looked = candidates(env);
    if let Some(found) = looked.iter().find(|p| p.is_file()) {
        note(&format!("using the configuration file {}", found.display()));
        return RouterConfig::from_file(found);
    }
    let places = looked
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" and ");
    let setup = EnvSetup::detect(env)?;
    for n in setup.notes() {
        note(n);
    }
    let cfg = setup.config().map_err(|mut e| {
        e.message = format!(
            "no --config given, IMAGE_ROUTER_CONFIG not set, no {places}, and {}. Run \
             `image-router config init` for a starting file",
            e.message
        );
        e
    })?;
    note(&format!(
        "no configuration file ({places} not found): providers from the environment: {}",
        setup.summary()
    ));
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_dir_follows_xdg_then_home() {
        let env = |v: &str| match v {
            "XDG_CONFIG_HOME" => Some("/xdg".to_string()),
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        assert_eq!(
            user_config_dir(&env),
            Some(PathBuf::from("/xdg/image-router"))
        );
        let env = |v: &str| match v {
            "XDG_CONFIG_HOME" => Some("relative".to_string()),
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        assert_eq!(
            user_config_dir(&env),
            Some(PathBuf::from("/home/u/.config/image-router"))
        );
        assert_eq!(user_config_dir(&|_: &str| None), None);
    }
}
