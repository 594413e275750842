//! Reading one TOML value as the type its key wants, in the user's words. Each reader
//! returns the value, or records "KEY: expected WHAT, found WHAT" (pointing at the
//! value) and returns nothing, so that the caller goes on and one pass finds every
//! mistake of a file. No Rust type name ever reaches a message: the words for a TOML
//! value are [`found`]'s.
//!
//! Also here: where a piece of a string value sits in the file ([`content_span`]), for
//! errors about one placeholder inside a longer string.

use crate::diagnostic::Diagnostic;
use std::fmt;
use std::ops::Range;
use toml::de::{DeInteger, DeValue};
use toml::Spanned;

/// A value of the parsed document, with its byte range in the file.
pub type Value<'i> = Spanned<DeValue<'i>>;

/// A key path as the user would write it: `pool`, `jobs.build.timeout`,
/// `jobs.a.needs[1]`, `jobs."a b".env.HOME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath(String);

impl KeyPath {
    pub fn root(key: &str) -> KeyPath {
        KeyPath(quote_key(key))
    }

    pub fn key(&self, key: &str) -> KeyPath {
        KeyPath(format!("{}.{}", self.0, quote_key(key)))
    }

    pub fn index(&self, index: usize) -> KeyPath {
        KeyPath(format!("{}[{index}]", self.0))
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key as TOML needs it written: bare when it can be, else in double quotes.
fn quote_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// The problems found while reading values.
#[derive(Debug, Default)]
pub struct Reader {
    pub diagnostics: Vec<Diagnostic>,
}

impl Reader {
    /// Records that `value` at `path` is not `expected` (words with an article: "an
    /// integer ≥ 1", "true or false").
    pub fn mismatch(&mut self, path: &KeyPath, expected: &str, value: &Value<'_>) {
        let mut d = Diagnostic::at(
            format!(
                "{path}: expected {expected}, found {}",
                found(value.get_ref())
            ),
            value.span(),
        );
        if let Some(note) = hint(expected, value.get_ref()) {
            d = d.with_note(note);
        }
        self.diagnostics.push(d);
    }

    /// An integer. One that does not fit in 64 bits is reported as too large.
    pub fn integer(
        &mut self,
        value: &Value<'_>,
        path: &KeyPath,
        expected: &str,
    ) -> Option<Spanned<i64>> {
        let DeValue::Integer(i) = value.get_ref() else {
            self.mismatch(path, expected, value);
            return None;
        };
        match integer(i) {
            Some(n) => Some(Spanned::new(value.span(), n)),
            None => {
                self.diagnostics.push(Diagnostic::at(
                    format!("{path}: expected {expected}, found {i} (too large)"),
                    value.span(),
                ));
                None
            }
        }
    }

    pub fn boolean(&mut self, value: &Value<'_>, path: &KeyPath) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.mismatch(path, "true or false", value);
                None
            }
        }
    }

    pub fn string(
        &mut self,
        value: &Value<'_>,
        path: &KeyPath,
        expected: &str,
    ) -> Option<Spanned<String>> {
        match value.get_ref() {
            DeValue::String(s) => Some(Spanned::new(value.span(), s.to_string())),
            _ => {
                self.mismatch(path, expected, value);
                None
            }
        }
    }

    /// An array whose elements are each read by `element` (given the element and its
    /// path). Each wrong element is reported; the array is then dropped whole, since
    /// what is left of it (a shell missing a word, no exit codes) would only mislead.
    pub fn array<T>(
        &mut self,
        value: &Value<'_>,
        path: &KeyPath,
        expected: &str,
        mut element: impl FnMut(&mut Reader, &Value<'_>, &KeyPath) -> Option<T>,
    ) -> Option<Spanned<Vec<T>>> {
        let DeValue::Array(values) = value.get_ref() else {
            self.mismatch(path, expected, value);
            return None;
        };
        let before = self.diagnostics.len();
        let items: Vec<T> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| element(self, v, &path.index(i)))
            .collect();
        (self.diagnostics.len() == before).then(|| Spanned::new(value.span(), items))
    }

    /// An array of strings (`shell`).
    pub fn strings(&mut self, value: &Value<'_>, path: &KeyPath) -> Option<Spanned<Vec<String>>> {
        self.array(value, path, "an array of strings", |r, v, p| {
            r.string(v, p, "a string").map(Spanned::into_inner)
        })
    }

    /// A table of strings (`env`): each name (with where it is written) and value.
    pub fn string_table(
        &mut self,
        value: &Value<'_>,
        path: &KeyPath,
    ) -> Vec<(Spanned<String>, Spanned<String>)> {
        let DeValue::Table(table) = value.get_ref() else {
            self.mismatch(path, "a table of strings", value);
            return Vec::new();
        };
        table
            .iter()
            .filter_map(|(name, v)| {
                let s = self.string(v, &path.key(name.get_ref()), "a string")?;
                Some((Spanned::new(name.span(), name.get_ref().to_string()), s))
            })
            .collect()
    }
}

/// A scalar as the text a process is given: a string as is, an integer as its value
/// (`1_000` and `0x10` as `1000` and `16`; one too large for 64 bits as its digits), a
/// decimal number as written (`3.10` stays `3.10`, never `3.1`; only `_` separators are
/// dropped), a boolean as `true`/`false`. Tables, arrays and dates are not scalars.
pub fn scalar(value: &DeValue<'_>) -> Option<String> {
    match value {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) => Some(integer(i).map_or_else(|| i.to_string(), |n| n.to_string())),
        DeValue::Float(f) => Some(f.as_str().replace('_', "")),
        DeValue::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Reader {
    /// A table of scalars (`[vars]`): each name (with where it is written) and its value
    /// as text (see [`scalar`]), with where the value is.
    pub fn scalar_table(
        &mut self,
        value: &Value<'_>,
        path: &KeyPath,
    ) -> Vec<(Spanned<String>, Spanned<String>)> {
        let DeValue::Table(table) = value.get_ref() else {
            self.mismatch(path, "a table of strings, numbers or booleans", value);
            return Vec::new();
        };
        table
            .iter()
            .filter_map(|(name, v)| {
                let Some(text) = scalar(v.get_ref()) else {
                    self.mismatch(
                        &path.key(name.get_ref()),
                        "a string, a number or a boolean",
                        v,
                    );
                    return None;
                };
                Some((
                    Spanned::new(name.span(), name.get_ref().to_string()),
                    Spanned::new(v.span(), text),
                ))
            })
            .collect()
    }
}

/// A TOML value in words, for "found …": `the string "4"`, `an integer`, `an array`.
pub fn found(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) if s.chars().count() > 40 => {
            let start: String = s.chars().take(37).collect();
            format!("the string {:?}", format!("{start}…"))
        }
        DeValue::String(s) => format!("the string {s:?}"),
        DeValue::Integer(_) => "an integer".to_string(),
        DeValue::Float(f) => format!("the decimal number {f}"),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(_) => "a date or time".to_string(),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}

/// A note for the usual slips: a number or a boolean in quotes, one string where a list
/// is wanted, a duration without its unit.
fn hint(expected: &str, value: &DeValue<'_>) -> Option<String> {
    match value {
        DeValue::String(s)
            if expected.starts_with("an integer") && s.trim().parse::<i64>().is_ok() =>
        {
            Some(format!("write the number without quotes: {}", s.trim()))
        }
        DeValue::String(s)
            if expected == "true or false" && matches!(s.as_ref(), "true" | "false") =>
        {
            Some(format!("write it without quotes: {s}"))
        }
        DeValue::String(s)
            if expected.starts_with("an array of") && !expected.contains("integer") =>
        {
            Some(format!("write it as an array: [{s:?}]"))
        }
        DeValue::Integer(i) if expected.starts_with("a duration") => {
            Some(format!("a duration is a string with a unit: \"{i}s\""))
        }
        _ => None,
    }
}

/// The value of a TOML integer, when it fits in 64 bits.
pub fn integer(i: &DeInteger<'_>) -> Option<i64> {
    i64::from_str_radix(i.as_str(), i.radix()).ok()
}

/// Where the bytes `inner` of a string's value are in the file, given the string's
/// `span` (quotes included) and its `value`. Exact when the string is written verbatim
/// between its quotes (any literal string, or a basic string without escapes); else the
/// whole string, which is never wrong, only less precise.
pub fn content_span(
    source: &str,
    span: Range<usize>,
    value: &str,
    inner: Range<usize>,
) -> Range<usize> {
    let Some(written) = source.get(span.clone()) else {
        return span;
    };
    let quotes = ["'''", "\"\"\"", "'", "\""]
        .into_iter()
        .find(|q| written.len() >= 2 * q.len() && written.starts_with(q) && written.ends_with(q));
    let Some(quotes) = quotes else {
        return span;
    };
    let mut start = quotes.len();
    let body = &written[start..written.len() - quotes.len()];
    // A multi-line string drops the newline right after its opening quotes.
    let body = match (quotes.len(), body.strip_prefix('\n')) {
        (3, Some(rest)) => {
            start += 1;
            rest
        }
        _ => body,
    };
    if body == value && inner.end <= value.len() {
        span.start + start + inner.start..span.start + start + inner.end
    } else {
        span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_are_written_as_in_toml() {
        let path = KeyPath::root("jobs").key("a b").key("needs").index(1);
        assert_eq!(path.to_string(), "jobs.\"a b\".needs[1]");
        assert_eq!(KeyPath::root("pool").to_string(), "pool");
    }

    #[test]
    fn a_piece_of_a_string_is_found_in_the_file() {
        let at = |source: &str, value: &str| {
            let span = source.find('=').unwrap() + 2..source.len();
            let inner = value.find("{item}").unwrap();
            let range = content_span(source, span, value, inner..inner + 6);
            source[range].to_string()
        };
        assert_eq!(at("c = 'a {item}'", "a {item}"), "{item}");
        assert_eq!(at("c = \"a '{item}'\"", "a '{item}'"), "{item}");
        assert_eq!(at("c = '''\na {item}'''", "a {item}"), "{item}");
        // An escape before it: the whole string, never the wrong bytes.
        assert_eq!(at("c = \"\\t{item}\"", "\t{item}"), "\"\\t{item}\"");
    }
}
