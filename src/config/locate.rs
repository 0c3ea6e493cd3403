//! Where things are in the configuration text: the line of a byte offset, the key written at
//! it, the table it belongs to, and the `[[provider]]` it is in. Every [`ConfigError`] from
//! the file carries the line and a field named the way the typed configuration names it.
//!
//! Why an index: each provider records the line of every key it has and its header line. A
//! scan of the text from its start per lookup made loading quadratic in the number of
//! providers; [`Locator`] indexes line starts and table headers once, so a lookup is a binary
//! search and loading stays linear.

use toml::Spanned;

use crate::config_error::ConfigError;

/// Line and table index of one configuration text.
pub(super) struct Locator<'a> {
    text: &'a str,
    /// Byte offset where each line starts (line 1 at index 0).
    line_starts: Vec<usize>,
    /// Table headers in order: (line, name without brackets, whether `[[…]]`).
    headers: Vec<(usize, String, bool)>,
}

impl<'a> Locator<'a> {
    /// Indexes `text` (one pass).
    pub(super) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        let mut headers = Vec::new();
        let mut start = 0;
        for (n, line) in text.split_inclusive('\n').enumerate() {
            let t = line.trim();
            if t.starts_with('[') && !t.contains('=') {
                let array = t.starts_with("[[");
                let name = t.trim_start_matches('[');
                let name = name.split(']').next().unwrap_or_default().trim();
                headers.push((n + 1, name.to_string(), array));
            }
            start += line.len();
            if line.ends_with('\n') {
                line_starts.push(start);
            }
        }
        Self {
            text,
            line_starts,
            headers,
        }
    }

    /// The 1-based line containing byte `offset`.
    pub(super) fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset).max(1)
    }

    /// The line of a spanned value.
    pub(super) fn line_of<T>(&self, s: &Spanned<T>) -> usize {
        self.line(s.span().start)
    }

    /// An error for `field` at the line of `s`.
    pub(super) fn err<T>(
        &self,
        field: String,
        s: &Spanned<T>,
        msg: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(field, msg).at_line(self.line_of(s))
    }

    /// The index of the last header at or before `line`.
    fn header_index(&self, line: usize) -> Option<usize> {
        self.headers.partition_point(|h| h.0 <= line).checked_sub(1)
    }

    /// The line of the `[[provider]]` header at or before `line` (the table's first key's
    /// line), or `line` itself when there is none.
    pub(super) fn provider_header(&self, line: usize) -> usize {
        let n = self.headers.partition_point(|h| h.0 <= line);
        self.headers[..n]
            .iter()
            .rev()
            .find(|h| h.2 && h.1 == "provider")
            .map_or(line, |h| h.0)
    }

    /// How many `[[provider]]` headers come before or at `offset`, minus one: the index of
    /// the provider a key at `offset` belongs to.
    fn provider_index_at(&self, offset: usize) -> Option<usize> {
        let line = self.line(offset);
        let n = self.headers.partition_point(|h| h.0 <= line);
        self.headers[..n]
            .iter()
            .filter(|h| h.2 && h.1 == "provider")
            .count()
            .checked_sub(1)
    }

    /// The name of the single table header (`[router]`, `[router.breaker]`) whose keys
    /// include the one at `offset`, unless the last header is an array of tables. An offset on
    /// a header line belongs to no table (the header itself is the thing at fault).
    fn table_at(&self, offset: usize) -> Option<String> {
        let line = self.line(offset);
        let (at, name, array) = &self.headers[self.header_index(line)?];
        (*at != line && !array && !name.is_empty()).then(|| name.clone())
    }

    /// The key written on the line containing `offset` (`timeout = …` → `timeout`), or the
    /// table header (`[[provider]]` → `provider`). Inside a value that spans lines it is the
    /// key that opened the value, found on an earlier line of the same table.
    fn key_at(&self, offset: usize) -> Option<String> {
        let line = self.line(offset);
        let first = self
            .header_index(line)
            .map_or(1, |i| self.headers[i].0)
            .min(line);
        for n in (first..=line).rev() {
            let start = self.line_starts[n - 1];
            let end = self.line_starts.get(n).copied().unwrap_or(self.text.len());
            let l = self.text[start..end].trim();
            if l.starts_with('[') && (n == line || !l.contains('=')) {
                return (n == line)
                    .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
            }
            if let Some((k, _)) = l.split_once('=') {
                let k = k.trim().trim_matches('"');
                let bare = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"'));
                if bare {
                    return Some(k.to_string());
                }
            }
        }
        None
    }

    /// A TOML parse error as a [`ConfigError`] naming the key the way the typed config does
    /// (`router.timeout`, `provider[1].rpm`) and its line, without string values (which may
    /// be a secret pasted into the wrong field).
    pub(super) fn parse_error(&self, e: toml::de::Error) -> ConfigError {
        let msg = without_string_values(e.message().trim());
        // toml gives some syntax errors (a key with no value: `x = `) an empty message.
        let msg = if msg.is_empty() {
            "invalid TOML syntax here (a key with no value, or an unclosed table header?)"
                .to_string()
        } else {
            msg
        };
        let Some(span) = e.span() else {
            return ConfigError::new("config", msg);
        };
        let at = span.start.min(self.text.len());
        let key = self.key_at(at);
        let table = self.table_at(at);
        let field = match (&key, self.provider_index_at(at)) {
            // A header with no name (`[`, `[]`): no key to name.
            (Some(k), _) if k.is_empty() => "config".to_string(),
            (Some(k), _) if k == "router" || k == "provider" => k.clone(),
            (Some(k), _) if table.is_some() && !k.starts_with("router") => {
                format!("{}.{k}", table.unwrap_or_default())
            }
            (Some(k), Some(i)) => format!("provider[{i}].{k}"),
            (Some(k), None) => k.clone(),
            (None, _) => "config".to_string(),
        };
        ConfigError::new(field, msg).at_line(self.line(at))
    }
}

/// Drops the quoted value from serde's `invalid type: string "…"` messages: the value may be
/// a secret pasted into the wrong field, and the line number already shows where it is.
pub(super) fn without_string_values(msg: &str) -> String {
    let Some(start) = msg.find("string \"") else {
        return msg.to_string();
    };
    let value_start = start + "string \"".len();
    let mut escaped = false;
    for (j, c) in msg[value_start..].char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => {
                let end = value_start + j + 1;
                return format!("{}a string{}", &msg[..start], &msg[end..]);
            }
            _ => escaped = false,
        }
    }
    msg.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_values_are_dropped_from_messages() {
        let key = format!("sk-{}", "x".repeat(30));
        let m = format!("invalid type: string \"{key}\", expected i64");
        assert_eq!(
            without_string_values(&m),
            "invalid type: a string, expected i64"
        );
    }

    #[test]
    fn key_at_finds_key_and_header() {
        let t = "[router]\ntimeout = 5\n[[provider]]\n";
        let l = Locator::new(t);
        assert_eq!(l.key_at(12).as_deref(), Some("timeout"));
        assert_eq!(l.key_at(24).as_deref(), Some("provider"));
        assert_eq!(l.table_at(12).as_deref(), Some("router"));
        assert_eq!(l.table_at(1), None, "a header line is no table's key");
        assert_eq!(
            Locator::new("[router.breaker]\nx = 1\n")
                .table_at(18)
                .as_deref(),
            Some("router.breaker")
        );
        assert_eq!(l.provider_index_at(t.len()), Some(0));
        assert_eq!(l.line(0), 1);
        assert_eq!(l.line(9), 2);
        assert_eq!(l.line(t.len()), 4);
        assert_eq!(l.provider_header(4), 3);
    }
}
