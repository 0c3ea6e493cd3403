//! Parsing one catalog source's text into the raw schema, with errors that name the entry and
//! the line: the typed parser's messages are located in the source text, and misspelt price
//! keys are caught before the typed parse reads them as per-image rows.

use crate::config_error::ConfigError;

use super::raw::RawFile;

pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Token-price keys of a `price` table; any other key is a per-image row (a table).
pub(super) const PRICE_KEYS: [&str; 6] = [
    "unit",
    "text_input",
    "cached_text_input",
    "image_input",
    "cached_image_input",
    "image_output",
];

/// Names a misspelt price key (`text_inptu = 5.0`) instead of the typed parser's "expected a
/// map": a price table's unknown keys are read as per-image rows, so a scalar there is a typo.
pub(super) fn check_price_keys(source: &str, text: &str) -> Result<(), ConfigError> {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Ok(()); // the typed parse reports syntax errors with their line
    };
    let Some(models) = doc.get("models").and_then(toml::Value::as_table) else {
        return Ok(());
    };
    for (name, m) in models {
        let Some(price) = m.get("price").and_then(toml::Value::as_table) else {
            continue;
        };
        for (key, v) in price {
            if PRICE_KEYS.contains(&key.as_str()) || v.is_table() {
                continue;
            }
            let err = ConfigError::new(
                format!("models.{name}.price.{key}"),
                format!(
                    "unknown price field `{key}`; token prices take {} (USD per 1M tokens), \
                     per-image prices are tables such as standard = {{ \"1024x1024\" = 0.04 }}",
                    PRICE_KEYS[1..].join(", ")
                ),
            );
            return Err(locate_in_source(err, source, text));
        }
    }
    Ok(())
}

pub(super) fn parse_source(source: &str, text: &str) -> Result<RawFile, ConfigError> {
    check_price_keys(source, text)?;
    let mut raw: RawFile = toml::from_str(text).map_err(|e| {
        let mut err = ConfigError::new(source.to_string(), e.message().to_string());
        if let Some(span) = e.span() {
            err = err.at_line(line_of(text, span.start));
        }
        err
    })?;
    raw.source = source.to_string();
    raw.text = text.to_string();
    // Checks that need the file's own text for a line number.
    for (name, m) in &raw.models {
        if let Some(p) = &m.price {
            let line = line_of(text, p.span().start);
            let field = format!("{source}: models.{name}.price");
            match p.get_ref().unit.as_deref() {
                None => {
                    return Err(ConfigError::new(
                        field,
                        "a price needs a `unit`: \"usd_per_1m_tokens\" or \"usd_per_image\"",
                    )
                    .at_line(line))
                }
                Some("usd_per_1m_tokens") | Some("usd_per_image") => {}
                Some(other) => {
                    return Err(ConfigError::new(
                        field,
                        format!("unknown price unit {other:?}; expected \"usd_per_1m_tokens\" or \"usd_per_image\""),
                    )
                    .at_line(line))
                }
            }
        }
    }
    for (name, m) in &raw.models {
        for (tier, l) in m.limits.iter().flatten() {
            for (key, v) in [("rpm", &l.rpm), ("tpm", &l.tpm), ("ipm", &l.ipm)] {
                if let Some(v) = v {
                    if *v.get_ref() <= 0 {
                        return Err(ConfigError::new(
                            format!("{source}: models.{name}.limits.{tier}.{key}"),
                            format!(
                                "must be at least 1, got {} (leave it out when no figure is published)",
                                v.get_ref()
                            ),
                        )
                        .at_line(line_of(text, v.span().start)));
                    }
                }
            }
        }
    }
    for (name, t) in &raw.tiers {
        for (key, v) in [("rpm", &t.rpm), ("tpm", &t.tpm)] {
            if let Some(v) = v {
                if *v.get_ref() < 0 {
                    return Err(ConfigError::new(
                        format!("{source}: tiers.{name}.{key}"),
                        format!("must not be negative, got {}", v.get_ref()),
                    )
                    .at_line(line_of(text, v.span().start)));
                }
            }
        }
    }
    if let Some(v) = &raw.default_output_tokens_per_image {
        if *v.get_ref() <= 0 {
            return Err(ConfigError::new(
                format!("{source}: default_output_tokens_per_image"),
                "must be a positive number of tokens",
            )
            .at_line(line_of(text, v.span().start)));
        }
    }
    Ok(raw)
}

/// A table header's path without brackets, quotes and spaces (`[models."x".price]` →
/// `models.x.price`); `None` for other lines.
pub(super) fn header_path(line: &str) -> Option<String> {
    let t = line.trim();
    let inner = t.strip_prefix('[')?;
    let end = inner.rfind(']')?;
    let inner = inner[..end].trim_start_matches('[').trim_end_matches(']');
    Some(
        inner
            .chars()
            .filter(|c| !matches!(c, '"' | '\'' | ' ' | '\t'))
            .collect(),
    )
}

/// Whether `line` assigns `key` (`key = …`, `"key" = …`).
pub(super) fn assigns(line: &str, key: &str) -> bool {
    let t = line.trim_start();
    let t = t
        .strip_prefix('"')
        .or_else(|| t.strip_prefix('\''))
        .unwrap_or(t);
    t.strip_prefix(key).is_some_and(|rest| {
        rest.trim_start_matches(['"', '\''])
            .trim_start()
            .starts_with('=')
    })
}

/// Gives an error found while building the merged catalog the override file's name and the
/// line of the entry at fault, when that entry is in the file (a missing field points at its
/// table, a bad value at its line). Errors about entries the file does not mention are kept as
/// they are.
pub(super) fn locate_in_source(mut err: ConfigError, source: &str, text: &str) -> ConfigError {
    if err.line.is_some() {
        return err;
    }
    let field = err.field.clone();
    let lines: Vec<&str> = text.lines().collect();
    // The deepest table whose path is a prefix of the field.
    let mut best: Option<(usize, usize)> = None; // (index, path length)
    for (i, line) in lines.iter().enumerate() {
        let Some(path) = header_path(line) else {
            continue;
        };
        let prefix = field == path
            || (field.starts_with(&path) && field.as_bytes().get(path.len()) == Some(&b'.'));
        if prefix && best.is_none_or(|(_, len)| path.len() > len) {
            best = Some((i, path.len()));
        }
    }
    let Some((header, len)) = best else {
        // A top-level key (`default_model = ""`): its line before the first table.
        if let Some(i) = lines
            .iter()
            .take_while(|l| header_path(l).is_none())
            .position(|l| assigns(l, &field))
        {
            err.field = format!("{source}: {field}");
            return err.at_line(i + 1);
        }
        return err;
    };
    let mut line = header;
    if let Some(rest) = field.get(len + 1..).filter(|r| !r.is_empty()) {
        let key = rest.split('.').next().unwrap_or(rest);
        if let Some(off) = lines[header + 1..]
            .iter()
            .take_while(|l| header_path(l).is_none())
            .position(|l| assigns(l, key))
        {
            line = header + 1 + off;
        }
    }
    err.field = format!("{source}: {field}");
    err.at_line(line + 1)
}
